"""Lanes: one request in flight per destination, what arrives meanwhile goes out together with the next."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from flame_sdk.clients.lanes import Lanes

GENEROUS = 60.0


class _Destination:
    """Records each request; with ``hold_first`` the first one waits until ``release`` is set."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.requests: list[list[str]] = []
        self.hold_first = False
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.fail = fail

    async def post(self, key: str, items: list[str], bound: float) -> None:
        self.requests.append(items)
        if self.hold_first and len(self.requests) == 1:
            self.held.set()
            await self.release.wait()
        if self.fail is not None:
            raise self.fail


def _lanes(destination: _Destination, **limits: Any) -> tuple[Lanes[str, str], set[asyncio.Task[None]]]:
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        tasks.add(asyncio.ensure_future(coro))

    limits = {"stall": GENEROUS, "max_items": 100, **limits}
    return Lanes(destination.post, spawn=spawn, **limits), tasks


async def _holding(destination: _Destination, lanes: Lanes[str, str], value: str = "m0") -> asyncio.Future[None]:
    """Send ``value`` to "b"; return (its send running) once the destination holds that request."""
    destination.hold_first = True
    first = asyncio.ensure_future(lanes.send("b", value, 1, GENEROUS))
    await destination.held.wait()
    return first


def _run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, GENEROUS))


def test_a_lone_item_goes_out_at_once_and_those_sent_meanwhile_together_next() -> None:
    async def scenario() -> None:
        destination = _Destination()
        lanes, _ = _lanes(destination)
        first = await _holding(destination, lanes)
        others = [asyncio.ensure_future(lanes.send("b", f"m{n}", 1, GENEROUS)) for n in range(1, 5)]
        elsewhere = asyncio.ensure_future(lanes.send("c", "c0", 1, GENEROUS))  # another destination: not held up
        await elsewhere
        await asyncio.sleep(0)
        assert not any(task.done() for task in others)
        destination.release.set()
        await asyncio.gather(first, *others)
        assert destination.requests == [["m0"], ["c0"], ["m1", "m2", "m3", "m4"]]
        assert not lanes._lanes

    _run(scenario())


def test_requests_carry_at_most_max_items_and_max_bytes() -> None:
    async def scenario() -> None:
        destination = _Destination()
        lanes, _ = _lanes(destination, max_items=3, max_bytes=10)
        first = await _holding(destination, lanes, "first")
        sizes = {"a": 4, "b": 4, "c": 4, "d": 1, "e": 1, "f": 1, "g": 1, "huge": 50, "h": 1}
        sends = [asyncio.ensure_future(lanes.send("b", name, size, GENEROUS)) for name, size in sizes.items()]
        await asyncio.sleep(0)
        destination.release.set()
        await asyncio.gather(first, *sends)
        assert destination.requests == [["first"], ["a", "b"], ["c", "d", "e"], ["f", "g"], ["huge"], ["h"]]

    _run(scenario())


def test_submitted_items_go_out_in_the_background_with_those_queued_before_it_started() -> None:
    async def scenario() -> None:
        destination = _Destination()
        lanes, tasks = _lanes(destination)
        for n in range(3):
            lanes.submit("b", f"ack{n}", 0, GENEROUS)  # all before the background request starts
        await asyncio.gather(*tasks)
        assert destination.requests == [["ack0", "ack1", "ack2"]]
        assert not lanes._lanes

    _run(scenario())


def test_a_stalled_request_hands_the_queue_on() -> None:
    async def scenario() -> None:
        destination = _Destination()
        lanes, tasks = _lanes(destination, stall=0.05)
        first = await _holding(destination, lanes, "stuck")
        queued = [asyncio.ensure_future(lanes.send("b", f"m{n}", 1, GENEROUS)) for n in range(2)]
        await asyncio.gather(*queued)  # went out while the first still hangs
        assert not first.done()
        assert await asyncio.wait_for(lanes.send("b", "later", 1, GENEROUS), GENEROUS) is None
        destination.release.set()
        await first
        assert destination.requests == [["stuck"], ["m0", "m1"], ["later"]]
        await asyncio.gather(*tasks)
        assert not lanes._lanes

    _run(scenario())


def test_a_failed_request_fails_every_item_it_carried() -> None:
    async def scenario() -> None:
        destination = _Destination(fail=ConnectionError("broker gone"))
        lanes, tasks = _lanes(destination)
        first = await _holding(destination, lanes)
        queued = [asyncio.ensure_future(lanes.send("b", f"m{n}", 1, GENEROUS)) for n in (1, 2)]
        await asyncio.sleep(0)
        destination.release.set()
        results = await asyncio.gather(first, *queued, return_exceptions=True)
        assert [type(r) for r in results] == [ConnectionError] * 3
        assert destination.requests == [["m0"], ["m1", "m2"]]
        await asyncio.gather(*tasks)
        assert not lanes._lanes

    _run(scenario())


def test_an_item_whose_caller_gave_up_while_queued_is_not_sent() -> None:
    async def scenario() -> None:
        destination = _Destination()
        lanes, _ = _lanes(destination)
        first = await _holding(destination, lanes)
        with pytest.raises(asyncio.TimeoutError):
            await lanes.send("b", "gave-up", 1, 0.01)
        cancelled = asyncio.ensure_future(lanes.send("b", "cancelled", 1, GENEROUS))
        await asyncio.sleep(0)
        cancelled.cancel()
        kept = asyncio.ensure_future(lanes.send("b", "kept", 1, GENEROUS))
        await asyncio.sleep(0)
        destination.release.set()
        await asyncio.gather(first, kept)
        assert destination.requests == [["m0"], ["kept"]]

    _run(scenario())


def test_only_abandoned_items_behind_a_request_close_the_lane() -> None:
    async def scenario() -> None:
        destination = _Destination()
        lanes, _ = _lanes(destination)
        first = await _holding(destination, lanes)
        with pytest.raises(asyncio.TimeoutError):
            await lanes.send("b", "gave-up", 1, 0.01)
        destination.release.set()
        await first
        assert not lanes._lanes and destination.requests == [["m0"]]

    _run(scenario())
