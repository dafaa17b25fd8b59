"""Analysis status: one enum for ``/healthz``, the PO, the hub and the SDK's run state.

Source: PrivateAIM/node-pod-orchestration ``src/status/constants.py`` (``AnalysisStatus``: the values below,
``stuck`` only ever seen on the analysis' health endpoint); the partner status sync order is that of
PrivateAIM/python-sdk ``flamesdk/resources/rest_api.py`` (``apply_partner_status_to_self``).
"""

from __future__ import annotations

from enum import Enum


class AnalysisStatus(str, Enum):
    """Run status as reported on ``/healthz`` and streamed with logs (the PO's values)."""

    STARTING = "starting"
    STARTED = "started"
    STUCK = "stuck"
    STOPPING = "stopping"
    STOPPED = "stopped"
    EXECUTING = "executing"
    EXECUTED = "executed"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


#: Statuses a run never leaves once reached: the PO stops watching a node that reports one.
FINAL_STATUSES: frozenset[AnalysisStatus] = frozenset(
    {AnalysisStatus.EXECUTED, AnalysisStatus.STOPPED, AnalysisStatus.FAILED}
)

#: Final statuses that mean the run did not succeed.
UNSUCCESSFUL_STATUSES: frozenset[AnalysisStatus] = frozenset({AnalysisStatus.STOPPED, AnalysisStatus.FAILED})

#: Partner statuses a node may adopt through status sync, in the order they take precedence.
SYNCABLE_STATUSES: tuple[AnalysisStatus, ...] = (
    AnalysisStatus.EXECUTED, AnalysisStatus.STOPPED, AnalysisStatus.FAILED,
)

#: Every status value, as plain strings (for validating what arrives on the wire).
STATUS_VALUES: tuple[str, ...] = tuple(status.value for status in AnalysisStatus)


def is_final(status: str) -> bool:
    """True for ``executed``, ``stopped`` and ``failed`` (as enum members or plain strings)."""
    return status in FINAL_STATUSES
