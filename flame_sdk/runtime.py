"""One background asyncio event loop per SDK object; sync callers submit coroutines to it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

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


#: ``asyncio.timeout`` (Python 3.11+), else None.
_TIMEOUT: Callable[[float], Any] | None = getattr(asyncio, "timeout", None)


async def bounded(awaitable: Awaitable[T], bound: float | None) -> T:
    """``await awaitable``, raising ``asyncio.TimeoutError`` after ``bound`` seconds (None: no bound). On Python
    3.11+ with ``asyncio.timeout`` in the awaiting task itself: ``wait_for`` there runs a coroutine as a task of its
    own and a future through an extra callback (a loop iteration each on every message's path), and on 3.11 it
    swallows a cancellation that arrives as the awaited thing finishes (CPython gh-86296: a simulated PO watch
    loop kept running and stopping the simulator hung)."""
    if bound is None:
        return await awaitable
    if _TIMEOUT is None:  # Python 3.10
        return await asyncio.wait_for(awaitable, bound)
    async with _TIMEOUT(bound):
        return await awaitable


async def all_or_none(coros: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """The results of ``coros`` run concurrently, in order; the first failure cancels the others and is raised."""
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Call(Generic[T]):
    """One coroutine a foreign thread runs on the loop. The thread sleeps on a plain lock that the task releases
    when it is done: one wake-up, where ``run_coroutine_threadsafe``'s future takes a condition variable and two
    callback hops (about a fifth of the cost of a call when several threads call at once)."""

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self.coro = coro
        self.done = threading.Lock()
        self.done.acquire()
        self.task: asyncio.Task[T] | None = None
        self.cancelled = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: start the task (unless the caller gave up meanwhile)."""
        if self.cancelled:
            self.coro.close()
            self.done.release()
            return
        self.task = loop.create_task(self.coro)
        self.task.add_done_callback(self._finished)

    def _finished(self, _: asyncio.Task[Any]) -> None:
        self.done.release()

    def cancel(self) -> None:
        """On the loop: the caller gave up waiting."""
        if self.task is None:
            self.cancelled = True
        else:
            self.task.cancel()

    def result(self) -> T:
        """The finished task's result or exception."""
        if self.task is None or self.task.cancelled():
            raise concurrent.futures.CancelledError()
        return self.task.result()


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
        """Run ``coro`` on the loop and return its result (exceptions propagate; a task cancelled on the loop
        raises ``concurrent.futures.CancelledError``, an expired ``timeout`` ``TimeoutError`` and cancels it)."""
        if self.in_loop_thread:
            raise RuntimeError("EventLoopThread.run called from its own loop thread; await the coroutine instead")
        if self.loop.is_closed() or not self._thread.is_alive():
            raise RuntimeError("the SDK event loop is closed; create a new FlameCoreSDK object")
        call = _Call(coro)
        try:
            self.loop.call_soon_threadsafe(call.start, self.loop)
        except RuntimeError:  # closed meanwhile
            coro.close()
            raise RuntimeError("the SDK event loop is closed; create a new FlameCoreSDK object") from None
        try:
            if not call.done.acquire(timeout=-1 if timeout is None else timeout):
                raise TimeoutError(f"the SDK call did not finish within {timeout} s")
        except BaseException:
            call_soon_on(self.loop, call.cancel)
            raise
        return call.result()

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
