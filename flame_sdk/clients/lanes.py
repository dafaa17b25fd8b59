"""One request in flight per destination: what is sent to a destination while a request to it is in flight waits,
then goes out together with the next one (the message broker client's messages and acknowledgements).

With one caller nothing ever waits, so a lone request goes out at once; under load fewer, fuller requests carry
the same items. A request still in flight after ``stall`` seconds no longer holds up those queued behind it:
they go out in a request of their own meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from flame_sdk.runtime import bounded

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

#: ``post(destination, items, bound)`` sends ``items`` in one request, within ``bound`` seconds.
Post = Callable[[K, list[T], float], Awaitable[None]]


@dataclass(eq=False)
class _Item(Generic[T]):
    value: T
    size: int
    deadline: float
    #: Set once the request carrying the item ended; None when nobody waits for it.
    outcome: asyncio.Future[None] | None = None

    @property
    def abandoned(self) -> bool:
        """The caller stopped waiting (timed out or cancelled) before the item went out."""
        return self.outcome is not None and self.outcome.done()


#: The queue of one destination while a request to it is in flight (its identity tells a lane handed on apart).
_Lane = deque


class Lanes(Generic[K, T]):
    """Per destination at most one request in flight (but see ``stall``); items arriving meanwhile queue and go out
    together with the next request, in order, at most ``max_items`` items and ``max_bytes`` of their sizes (None:
    no limit) per request (a single item larger than that goes alone)."""

    def __init__(self, post: Post[K, T], *, stall: float, max_items: int, max_bytes: int | None = None,
                 spawn: Callable[[Coroutine[Any, Any, None]], None]) -> None:
        self._post = post
        self.stall = stall
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._spawn = spawn
        self._lanes: dict[K, _Lane[_Item[T]]] = {}

    async def send(self, key: K, value: T, size: int, bound: float) -> None:
        """Send ``value`` and return once the request carrying it succeeded; raises what that request raised, or
        ``asyncio.TimeoutError`` after ``bound`` seconds. Goes out at once unless a request to ``key`` is in
        flight, else with the next one."""
        lane = self._lanes.get(key)
        if lane is not None:
            outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            lane.append(_Item(value, size, time.monotonic() + bound, outcome))
            await bounded(outcome, bound)  # giving up cancels ``outcome``: the item is skipped if still queued
            return
        lane = self._lanes[key] = _Lane()
        try:
            await self._request(key, lane, [value], bound)
        finally:
            self._after_request(key, lane)

    def submit(self, key: K, value: T, size: int, bound: float) -> None:
        """Send ``value`` in the background (nobody waits for the outcome: ``post`` deals with failures). Queued
        items go out with it: what arrives before the request starts rides along."""
        lane = self._lanes.get(key)
        idle = lane is None
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.append(_Item(value, size, time.monotonic() + bound))
        if idle:
            self._spawn(self._flush(key, lane))

    async def _request(self, key: K, lane: _Lane[_Item[T]], values: list[T], bound: float) -> None:
        stall = asyncio.get_running_loop().call_later(self.stall, self._hand_on, key, lane)
        try:
            await self._post(key, values, bound)
        finally:
            stall.cancel()

    def _after_request(self, key: K, lane: _Lane[_Item[T]]) -> None:
        """The request in flight on ``lane`` ended: what queued behind it goes out next, else the lane closes."""
        if self._lanes.get(key) is not lane:
            return  # handed on meanwhile
        if any(not item.abandoned for item in lane):
            self._spawn(self._flush(key, lane))
        else:
            del self._lanes[key]

    def _hand_on(self, key: K, lane: _Lane[_Item[T]]) -> None:
        """The request on ``lane`` is in flight for ``stall`` seconds: the queue goes out on a lane of its own."""
        if self._lanes.get(key) is not lane:
            return
        del self._lanes[key]
        if lane:
            fresh = self._lanes[key] = _Lane(lane)
            lane.clear()
            self._spawn(self._flush(key, fresh))

    def _take(self, lane: _Lane[_Item[T]]) -> list[_Item[T]]:
        """The next request's items: queued ones in order, within ``max_items`` and ``max_bytes``."""
        taken: list[_Item[T]] = []
        total = 0
        while lane:
            item = lane[0]
            if item.abandoned:
                lane.popleft()
                continue
            if taken and (len(taken) >= self.max_items
                          or self.max_bytes is not None and total + item.size > self.max_bytes):
                break
            taken.append(lane.popleft())
            total += item.size
        return taken

    async def _flush(self, key: K, lane: _Lane[_Item[T]]) -> None:
        """Send what queues on ``lane`` until it stays empty or the lane was handed on."""
        try:
            while self._lanes.get(key) is lane and (batch := self._take(lane)):
                bound = max(0.0, max(item.deadline for item in batch) - time.monotonic())
                try:
                    await self._request(key, lane, [item.value for item in batch], bound)
                except Exception as exc:  # noqa: BLE001 - handed to each waiting caller
                    _settle(batch, exc)
                except BaseException:
                    _settle(batch, asyncio.CancelledError())
                    raise
                else:
                    _settle(batch, None)
        finally:
            if self._lanes.get(key) is lane:
                del self._lanes[key]
                _settle(list(lane), asyncio.CancelledError())


def _settle(items: list[_Item[Any]], error: BaseException | None) -> None:
    for item in items:
        if item.outcome is None or item.outcome.done():
            continue
        if error is None:
            item.outcome.set_result(None)
        elif isinstance(error, asyncio.CancelledError):
            item.outcome.cancel()
        else:
            item.outcome.set_exception(error)
