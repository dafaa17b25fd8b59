"""Status values and log levels shared with the FLAME node services."""

from __future__ import annotations

from enum import Enum


class AnalysisStatus(str, Enum):
    """Run status as reported on ``/healthz`` and streamed with logs (PO service values)."""

    STARTING = "starting"
    STARTED = "started"
    STUCK = "stuck"
    STOPPING = "stopping"
    STOPPED = "stopped"
    EXECUTING = "executing"
    EXECUTED = "executed"
    FAILED = "failed"


TERMINAL_STATUSES = frozenset({AnalysisStatus.EXECUTED, AnalysisStatus.STOPPED, AnalysisStatus.FAILED})

#: ``log_type`` literal -> numeric level, as in the docs' ``flame_log`` table.
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

#: Largest JSON message body the message broker accepts (the docs: "around 2 MB").
MAX_MESSAGE_BYTES = 2 * 1024 * 1024

#: Port of the embedded analysis API on a real node (nginx forwards ``/analysis`` here).
DEFAULT_API_PORT = 8000
