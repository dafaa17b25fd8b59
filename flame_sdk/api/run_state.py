"""Run status as the node sees it on ``/healthz``, and the partner status sync rules."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from flame_sdk.logs import FlameLogger
from flame_sdk.protocol.status import AnalysisStatus

SYNCABLE = ("executed", "stopped", "failed")


class RunState:
    """Owns the facts behind the health status: startup result, finish flag, the analyst's thread."""

    def __init__(
        self,
        logger: FlameLogger,
        status_sync: tuple[str, ...] | None,
        sync_grace_seconds: float,
        owner: threading.Thread | None = None,
    ) -> None:
        unknown = [s for s in (status_sync or ()) if s not in SYNCABLE]
        if unknown:
            raise ValueError(f"status_sync may only contain {SYNCABLE}, got {unknown}")
        self.logger = logger
        self.status_sync = tuple(status_sync or ())
        self.sync_not_before = time.monotonic() + sync_grace_seconds
        self.owner = owner or threading.main_thread()
        self.init_failed = False
        self.finished = False
        self.reported = asyncio.Event()  # set once /healthz served a terminal status
        self.on_change: Callable[[], None] = lambda: None

    def set_status(self, status: AnalysisStatus) -> None:
        if self.logger.set_status(status):
            self.on_change()

    def ended(self) -> str | None:
        """The terminal status once the run is over, else None."""
        status = self.logger.status
        if status in (AnalysisStatus.FAILED, AnalysisStatus.STOPPED):
            return status.value  # a failed or stopped run stays so, even if a partner finishes later
        if self.finished or status == AnalysisStatus.EXECUTED:
            return AnalysisStatus.EXECUTED.value
        return None

    def interrupted(self) -> str | None:
        """Like ``ended``, except that a node whose startup already failed is not interrupted again."""
        return None if self.init_failed else self.ended()

    def health_status(self) -> str:
        """Status for ``/healthz`` with the node's mapping (anything unknown there counts as failed)."""
        if self.init_failed:
            return AnalysisStatus.STUCK.value
        ended = self.ended()
        if ended is not None:
            return ended
        if not self.owner.is_alive():
            self.set_status(AnalysisStatus.FAILED)
            return AnalysisStatus.FAILED.value
        return AnalysisStatus.EXECUTING.value

    def apply_partner_statuses(self, partner_status: dict[str, str]) -> str | None:
        """Adopt a partner's terminal status if ``status_sync`` asks for it; return the adopted one."""
        if time.monotonic() < self.sync_not_before or self.ended() is not None:
            return None
        seen = set(partner_status.values())
        for status in SYNCABLE:  # precedence: executed, stopped, failed
            if status in self.status_sync and status in seen:
                senders = sorted(node for node, s in partner_status.items() if s == status)
                self.logger.log(f"setting status to {status} because partner node(s) {senders} are {status}")
                if status == "executed":
                    self.finished = True
                self.set_status(AnalysisStatus(status))
                return status
        return None
