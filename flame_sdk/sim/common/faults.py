"""Seeded fault injection for the simulated node gateways (``flame-sim run --faults RATE --fault-seed N``).

Every HTTP request that passes a node's gateway, in both directions (the analysis calling its node services,
and the broker and the PO calling the analysis, deliveries included), gets a fault with probability
``rate``: the request dropped before it is processed, the response dropped after it was processed, an
answer 500, 502, 503 or 429 instead of processing, or a delay of up to 2 s before processing. Which request
gets which fault is drawn from a random generator per gateway, seeded from the fault seed and the gateway's
name, so the same seed makes the same decisions for the same sequence of requests.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass
from enum import Enum

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

#: Longest delay a ``delay`` fault adds (seconds).
MAX_DELAY = 2.0


class Fault(Enum):
    DROP_REQUEST = "drop request"
    DROP_RESPONSE = "drop response"
    HTTP_500 = "500"
    HTTP_502 = "502"
    HTTP_503 = "503"
    HTTP_429 = "429"
    DELAY = "delay"


_STATUS = {Fault.HTTP_500: 500, Fault.HTTP_502: 502, Fault.HTTP_503: 503, Fault.HTTP_429: 429}


def fault_status(fault: Fault) -> int:
    """The HTTP status a fault answers with (for the faults that answer one)."""
    return _STATUS[fault]


@dataclass(frozen=True)
class FaultPlan:
    """A fault rate in [0, 1) and the seed its decisions are drawn from."""

    rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"the fault rate must be at least 0 and below 1, got {self.rate}")

    @property
    def active(self) -> bool:
        return self.rate > 0

    def injector(self, stream: str) -> FaultInjector:
        """The injector of one gateway (``stream`` names it, e.g. the deployment name)."""
        return FaultInjector(self.rate, random.Random(f"{self.seed}:{stream}"))


class FaultInjector:
    """Decides and applies the faults of one gateway; ``counts`` tells how many of each it injected."""

    def __init__(self, rate: float, rng: random.Random) -> None:
        self.rate = rate
        self._rng = rng
        self.counts: Counter[Fault] = Counter()

    def draw(self) -> tuple[Fault | None, float]:
        """The fault for the next request (None: none) and, for a delay, its length."""
        if self._rng.random() >= self.rate:
            return None, 0.0
        fault = self._rng.choice(list(Fault))
        self.counts[fault] += 1
        return fault, self._rng.uniform(0.0, MAX_DELAY) if fault is Fault.DELAY else 0.0

    def middleware(self) -> Middleware:
        @web.middleware
        async def inject(request: web.Request, handler: Handler) -> web.StreamResponse:
            fault, delay = self.draw()
            if fault is None:
                return await handler(request)
            if fault is Fault.DELAY:
                await asyncio.sleep(delay)
                return await handler(request)
            if fault is Fault.DROP_REQUEST:
                _drop(request)
                return web.Response(status=500)  # never sent: the connection is gone
            if fault is Fault.DROP_RESPONSE:
                response = await handler(request)
                _drop(request)
                return response
            return web.json_response({"error": f"injected fault: HTTP {_STATUS[fault]}"}, status=_STATUS[fault])

        return inject


def _drop(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()
