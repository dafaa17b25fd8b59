"""Pod orchestration client: streams log records (with status and progress) to ``/po/stream_logs``."""

from __future__ import annotations

import asyncio
import contextlib

from flame_sdk.errors import FlameError, ServiceHTTPError, TokenExpiredError
from flame_sdk.http import ServiceClient
from flame_sdk.logs import LogRecord
from flame_sdk.protocol import po_api
from flame_sdk.runtime import bounded, call_soon_on

#: Pause before re-sending a record after the PO service stayed unreachable for a whole retry deadline.
RESEND_PAUSE = 2.0


class POClient:
    """Sends records in order from a queue on the SDK loop; records survive PO outages."""

    def __init__(self, service: ServiceClient, analysis_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.service = service
        self.analysis_id = analysis_id
        self._loop = loop
        self._queue: asyncio.Queue[LogRecord] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self.last_error: Exception | None = None

    def start(self) -> None:
        """Start the sender task (call on the SDK loop)."""
        self._sender = asyncio.ensure_future(self._run())

    def submit(self, record: LogRecord) -> None:
        """Thread-safe: queue a record for streaming."""
        call_soon_on(self._loop, self._queue.put_nowait, record)

    async def _run(self) -> None:
        while True:
            record = await self._queue.get()
            while True:
                try:
                    await self.service.send("POST", po_api.STREAM_LOGS, json={
                        "log": record.log,
                        "log_type": record.log_type,
                        "analysis_id": self.analysis_id,
                        "status": record.status,
                        "progress": record.progress,
                    })
                    self.last_error = None
                    break
                except ServiceHTTPError as exc:
                    if isinstance(exc, TokenExpiredError):  # wait for /token_refresh, then resend
                        self.last_error = exc
                        await asyncio.sleep(RESEND_PAUSE)
                        continue
                    self.last_error = exc  # the PO refused this record itself: resending cannot help
                    break
                except FlameError as exc:
                    self.last_error = exc
                    await asyncio.sleep(RESEND_PAUSE)
            self._queue.task_done()

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued record was sent; False if ``timeout`` passed first."""
        with contextlib.suppress(asyncio.TimeoutError):
            await bounded(self._queue.join(), timeout)
            return True
        return False
