"""The run's state as the node sees it on ``/healthz``: status, progress, finish flags, partner status sync.

``RunState`` is the one owner of these facts. The logger reads status and progress from it when it builds a
record; the API server, the core and the message broker client ask it whether the run has ended.

Unlike the reference SDK, ``/healthz`` does not answer ``failed`` as soon as the analyst's main thread has ended
unfinished: the node keeps serving and may still be finished by a partner's ``analysis_finished``
(``flame_sdk.after_main`` decides when waiting is pointless and fails the run).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable

from flame_sdk.protocol.status import SYNCABLE_STATUSES, UNSUCCESSFUL_STATUSES, AnalysisStatus, is_final


class RunState:
    """Status, progress and the finish flags of one analysis run (thread-safe).

    ``status_sync`` lists the partner statuses this node adopts (see ``apply_partner_statuses``), which are
    ignored for ``sync_grace_seconds`` after start (they are still recorded in ``partner_statuses``).
    """

    def __init__(
        self,
        status_sync: Iterable[str] | None = SYNCABLE_STATUSES,
        sync_grace_seconds: float = 0.0,
    ) -> None:
        syncable = [s.value for s in SYNCABLE_STATUSES]
        unknown = [s for s in (status_sync or ()) if s not in syncable]
        if unknown:
            raise ValueError(f"status_sync may only contain {tuple(syncable)}, got {unknown}")
        self.status_sync = tuple(AnalysisStatus(s) for s in (status_sync or ()))
        self.sync_not_before = time.monotonic() + sync_grace_seconds
        self._lock = threading.RLock()
        self._status = AnalysisStatus.STARTING
        self._progress = 0
        #: The SDK could not connect every node service at startup (``/healthz`` answers ``stuck``).
        self.init_failed = False
        #: The analysis finished (``analysis_finished``, a partner's, or an adopted ``executed``).
        self.finished = False
        #: Set once ``/healthz`` served a final status.
        self.reported = asyncio.Event()
        #: The partners' statuses as the PO last pushed them (``/partner_status``), grace period or not.
        self.partner_statuses: dict[str, str] = {}
        #: Partners whose main() returned before the run ended (their ``main_returned`` message).
        self.returned_partners: set[str] = set()
        #: Called after every status change (the core wakes waiters on the inbox with it).
        self.on_change: Callable[[], None] = lambda: None

    @property
    def status(self) -> AnalysisStatus:
        return self._status

    @property
    def progress(self) -> int:
        return self._progress

    def set_status(self, status: AnalysisStatus | str) -> bool:
        """Move to ``status`` unless a final status was already reached; return whether it changed.

        An unknown status value counts as ``failed``.
        """
        try:
            new = AnalysisStatus(status)
        except ValueError:
            new = AnalysisStatus.FAILED
        with self._lock:
            if is_final(self._status) or self._status == new:
                return False
            self._status = new
        self.on_change()
        return True

    def set_progress(self, progress: object) -> str | None:
        """Accept only increasing numbers in [0, 100] (floats truncated); else return why it was ignored."""
        if isinstance(progress, bool) or not isinstance(progress, (int, float)):
            return f"progress must be a number between 0 and 100, got {progress!r}"
        value = int(progress)
        with self._lock:
            if not 0 <= value <= 100:
                return f"progress {progress} is outside 0..100 and was ignored"
            if value <= self._progress:
                return f"progress only increases: {value} <= current {self._progress}, ignored"
            self._progress = value
        return None

    def finish(self) -> bool:
        """Finish the run (progress 100, status executed) unless it failed or was stopped.

        Returns True only for the call that finished it.
        """
        with self._lock:
            if self.ended() in UNSUCCESSFUL_STATUSES or self.finished:
                return False
            self._progress = max(self._progress, 100)
            self.finished = True
        self.set_status(AnalysisStatus.EXECUTED)
        return True

    def ended(self) -> AnalysisStatus | None:
        """The final status once the run is over, else None."""
        status = self._status
        if status in UNSUCCESSFUL_STATUSES:
            return status  # a failed or stopped run stays so, even if a partner finishes later
        if self.finished or status == AnalysisStatus.EXECUTED:
            return AnalysisStatus.EXECUTED
        return None

    def interrupted(self) -> AnalysisStatus | None:
        """Like ``ended``, except that a node whose startup already failed is not interrupted again."""
        return None if self.init_failed else self.ended()

    def health_status(self) -> AnalysisStatus:
        """Status for ``/healthz`` with the node's mapping (anything unknown there counts as failed)."""
        if self.init_failed:
            return AnalysisStatus.STUCK
        ended = self.ended()
        return AnalysisStatus.EXECUTING if ended is None else ended

    def partner_returned(self, node_id: str) -> None:
        """Record that a partner's main() returned before the run ended."""
        if node_id not in self.returned_partners:
            self.returned_partners.add(node_id)
            self.on_change()

    def apply_partner_statuses(self, partner_status: dict[str, str]) -> tuple[AnalysisStatus, list[str]] | None:
        """Adopt a partner's final status if ``status_sync`` asks for it.

        Returns the adopted status and the partners that have it, or None when nothing was adopted.
        """
        if partner_status != self.partner_statuses:
            self.partner_statuses = dict(partner_status)
            self.on_change()
        if time.monotonic() < self.sync_not_before or self.ended() is not None:
            return None
        seen = set(partner_status.values())
        for status in SYNCABLE_STATUSES:  # in order of precedence
            if status in self.status_sync and status in seen:
                senders = sorted(node for node, s in partner_status.items() if s == status)
                if status == AnalysisStatus.EXECUTED:
                    self.finished = True
                self.set_status(status)
                return status, senders
        return None
