"""The real PO's status decisions, without I/O, and the simulator's limits where it cannot do what the PO does.

Source: PrivateAIM/node-pod-orchestration ``src/status/status.py`` (``status_loop``, ``_decide_status_action``,
``_get_internal_deployment_status``, ``_update_finished_status``, ``_set_analysis_hub_status``),
``src/status/constants.py`` (``_INTERNAL_STATUS_TIMEOUT``, ``_MAX_RESTARTS``) and ``src/resources/utils.py``
(``create_analysis`` records ``started``; ``delete_analysis`` / ``stop_analysis`` remove the deployment).

Per deployment the PO keeps a database status: ``started`` when deployed, ``executing`` once ``/healthz`` said so,
then final. Every loop iteration it reads the internal status from ``/analysis/healthz`` (retrying once a
second for up to 10 s, then counting it as ``failed``) and acts on the pair:

* ``unstuck``: ``stuck`` (while not failed), or ``failed`` while still ``started``: the PO deletes and re-creates
  the deployment (up to 10 times, then ``failed``);
* ``running``: ``started`` and ``executing``: the database status becomes ``executing``;
* ``finishing``: a final internal status (``stuck`` counts as ``failed``) becomes the database status;
  ``executed`` deletes the deployment, anything else stops it. Either way the pod is gone.

The simulator restarts nothing: a ``stuck`` node, or one that answers ``failed`` before it was ever
``executing``, is failed at once (a restart would meet the same analysis and data again); a node whose API does
not answer while ``started`` is given ``PoLimits.startup_limit`` seconds, about what ten restarts take.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from flame_sdk.protocol.status import AnalysisStatus

STARTED, EXECUTING, EXECUTED = AnalysisStatus.STARTED, AnalysisStatus.EXECUTING, AnalysisStatus.EXECUTED
FAILED, STUCK, STOPPED = AnalysisStatus.FAILED, AnalysisStatus.STUCK, AnalysisStatus.STOPPED

#: The real PO's bound on one ``/healthz`` read, retried once a second (``_INTERNAL_STATUS_TIMEOUT``).
REAL_HEALTH_TIMEOUT = 10.0
#: How often the real PO restarts a stuck or slow deployment before it marks it failed (``_MAX_RESTARTS``).
REAL_MAX_RESTARTS = 10


@dataclass(frozen=True)
class PoLimits:
    """How long the simulated PO waits for a node's ``/healthz``.

    ``health_timeout``: one read, retried every ``retry_interval`` s, before the node counts as failed (the real
    PO: 10 s). The simulator's default is 30 s because every node of a run shares one machine: a healthy node
    on a busy laptop must not be failed. ``startup_limit``: how long a node may take until its API answers at
    all.
    """

    health_timeout: float = 30.0
    startup_limit: float = 180.0
    retry_interval: float = 1.0

    def __post_init__(self) -> None:
        for name in ("health_timeout", "startup_limit", "retry_interval"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {getattr(self, name)!r}")


class Action(Enum):
    UNSTUCK = "unstuck"
    RUNNING = "running"
    FINISHING = "finishing"


def decide(db_status: AnalysisStatus, internal: AnalysisStatus) -> Action | None:
    """The action for a (database status, internal status) pair, as ``_decide_status_action`` picks it."""
    is_stuck = db_status != FAILED and internal == STUCK
    is_slow = db_status == STARTED and internal == FAILED
    if is_stuck or is_slow:
        return Action.UNSTUCK
    if db_status == STARTED and internal == EXECUTING:
        return Action.RUNNING
    speedy_finished = db_status == STARTED and internal == EXECUTED
    newly_ended = db_status in (EXECUTING, FAILED) and internal in (EXECUTED, FAILED)
    firmly_stuck = db_status == FAILED and internal == STUCK
    if speedy_finished or newly_ended or firmly_stuck or internal == STOPPED:
        return Action.FINISHING
    return None


def finished_status(internal: AnalysisStatus) -> AnalysisStatus:
    """The database status a finishing deployment gets (``stuck`` is recorded as ``failed``)."""
    return FAILED if internal == STUCK else internal


def hub_status(db_status: AnalysisStatus, internal: AnalysisStatus) -> AnalysisStatus:
    """What the PO reports to the hub for the pair (``_set_analysis_hub_status``)."""
    if db_status in (STARTED, FAILED, EXECUTED):
        return db_status
    if internal in (FAILED, EXECUTED, EXECUTING):
        return internal
    return db_status
