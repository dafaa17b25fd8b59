"""The pod orchestration (PO): log intake from the analysis, and how it reads the analysis' ``/healthz``.

Sources (PrivateAIM/node-pod-orchestration): ``src/api/api.py`` (``POST /po/stream_logs``),
``src/resources/log/entity.py`` (``CreateLogEntity``: the body fields and the ``log_type`` literals),
``src/status/status.py`` (the status loop: ``/analysis/healthz`` answers other than executed, executing or
stuck count as failed; the token is refreshed through ``/analysis/token_refresh`` when less than two loop
intervals plus one second remain; partner statuses go to ``/analysis/partner_status``), and
``src/k8s/kubernetes.py`` (the gateway forwards ``/po/stream_logs`` with its path kept).
"""

from __future__ import annotations

from flame_sdk.protocol.status import AnalysisStatus

#: Gateway prefix of the PO; the gateway keeps it when forwarding.
PREFIX = "/po"
STREAM_LOGS = "/stream_logs"
HEALTH = "/healthz"

#: Fields of a ``/po/stream_logs`` body: ``{"log": str, "log_type": str, "analysis_id": str, "status": str,
#: "progress": int}``; the PO answers 200 ``null``, 422 for an invalid body.
LOG_FIELDS: tuple[str, ...] = ("log", "log_type", "analysis_id", "status", "progress")
INVALID_BODY = 422

#: ``log_type`` literal -> numeric level (the FLAME Core SDK docs' ``flame_log`` table); the PO accepts
#: exactly these literals.
LOG_LEVELS: dict[str, int] = {
    "debug": 10,
    "info": 20,
    "notice": 25,
    "warn": 30,
    "alert": 33,
    "emerg": 36,
    "error": 40,
    "crit": 50,
}

#: Health answers the PO keeps as they are; everything else (and no answer) it records as failed.
KEPT_HEALTH_STATUSES: frozenset[AnalysisStatus] = frozenset(
    {AnalysisStatus.EXECUTED, AnalysisStatus.EXECUTING, AnalysisStatus.STUCK}
)

def health_as_seen_by_po(status: object) -> AnalysisStatus:
    """The status the PO records for a ``/healthz`` answer's ``status`` (whatever JSON value it is)."""
    if isinstance(status, str) and status in KEPT_HEALTH_STATUSES:
        return AnalysisStatus(status)
    return AnalysisStatus.FAILED
