"""One background asyncio event loop per SDK object; sync callers submit coroutines to it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def call_soon_on(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Call ``fn`` on ``loop`` from any thread: at once when already on it, else scheduled thread-safely."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        fn(*args)
    elif not loop.is_closed():
        loop.call_soon_threadsafe(fn, *args)


class EventLoopThread:
    """An asyncio loop running forever in a daemon thread.

    ``run`` blocks the calling thread until the coroutine finishes; it must not be
    called from the loop's own thread (that would deadlock), which it detects.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    @property
    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and return its result (exceptions propagate)."""
        if self.in_loop_thread:
            raise RuntimeError("EventLoopThread.run called from its own loop thread; await the coroutine instead")
        if self.loop.is_closed() or not self._thread.is_alive():
            raise RuntimeError("the SDK event loop is closed; create a new FlameCoreSDK object")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule a plain callback on the loop from any thread."""
        call_soon_on(self.loop, fn, *args)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel pending tasks, stop the loop and join the thread."""
        if self.loop.is_closed():
            return

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive() and not self.in_loop_thread:
            try:
                self.run(_cancel_all(), timeout)
            except Exception:  # noqa: BLE001 - best effort during shutdown
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
