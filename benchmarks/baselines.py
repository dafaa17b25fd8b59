"""The bare operations targets are measured against, on loopback with plain aiohttp (no SDK, no simulator).

* ``two_post_round_trips``: A POSTs a message to B, B answers 202 and POSTs an acknowledgement back to A; the
  time until A holds the acknowledgement. The receiver runs in a child process, as the receiving node's SDK
  does in the messaging benchmark (two nodes are two processes).
* ``two_post_throughput``: the same exchange, acknowledged round trips per second with 1 and with ``senders``
  concurrent senders (coroutines on A's loop): how much concurrency gains on this machine at all.
* ``put_get``: a PUT of ``size`` bytes then a GET of them (the server consumes the upload as a stream and
  answers the GET from memory).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import aiohttp
from aiohttp import web

from benchmarks.processes import ChildProcess
from flame_sdk.runtime import EventLoopThread

CHUNK = 256 * 1024
T = TypeVar("T")


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a loopback port of the running loop; yield its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


class _Receiver:
    """B: answers a message with 202, then POSTs its acknowledgement to ``ack_url``."""

    def __init__(self) -> None:
        self.url = ""
        self.ack_url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/webhook", self._message)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/webhook"  # type: ignore[union-attr]

    async def _message(self, request: web.Request) -> web.Response:
        body = await request.json()
        task = asyncio.ensure_future(self._ack(body["meta"]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response({"status": "received"}, status=202)

    async def _ack(self, meta: dict[str, str]) -> None:
        assert self._session is not None
        async with self._session.post(self.ack_url, json={"meta": meta}) as resp:
            await resp.read()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


def _start_receiver() -> tuple[tuple[EventLoopThread, _Receiver], str]:
    loop, receiver = EventLoopThread("bare-receiver"), _Receiver()
    loop.run(receiver.start(), 30)
    return (loop, receiver), receiver.url


def _set_ack_url(state: tuple[EventLoopThread, _Receiver], url: str) -> None:
    state[1].ack_url = url


def _stop_receiver(state: tuple[EventLoopThread, _Receiver]) -> None:
    loop, receiver = state
    try:
        loop.run(receiver.stop(), 30)
    finally:
        loop.stop()


class _Sender:
    """A: POSTs messages to B and waits for each acknowledgement on its own webhook."""

    def __init__(self, session: aiohttp.ClientSession, receiver_url: str, payload: dict[str, object]) -> None:
        self.session, self.receiver_url, self.payload = session, receiver_url, payload
        self.acked: dict[str, asyncio.Future[None]] = {}
        self._numbers = iter(range(1 << 62))

    async def ack(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.acked.pop(body["meta"]["id"]).set_result(None)
        return web.json_response({"status": "received"})

    async def round_trip(self) -> float:
        """Seconds until one message is acknowledged."""
        message_id = f"m{next(self._numbers)}"
        arrived = self.acked[message_id] = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        async with self.session.post(self.receiver_url, json={**self.payload, "meta": {"id": message_id}}) as resp:
            await resp.read()
        await asyncio.wait_for(arrived, 10)
        return time.perf_counter() - start


async def _with_sender(receiver: ChildProcess, payload: dict[str, object],
                       work: Callable[[_Sender], Awaitable[T]]) -> T:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        sender = _Sender(session, receiver.info, payload)
        app = web.Application()
        app.router.add_post("/webhook", sender.ack)
        async with serve(app) as url:
            await asyncio.to_thread(receiver.call, _set_ack_url, url + "/webhook")
            for _ in range(20):  # warm up connections
                await sender.round_trip()
            return await work(sender)


def two_post_round_trips(count: int, payload: dict[str, object]) -> list[float]:
    """Seconds per message + acknowledgement round trip, ``count`` times in a row (after a warm-up); the
    receiver runs in a child process, as the receiving node's SDK does in the messaging benchmark."""

    async def in_a_row(sender: _Sender) -> list[float]:
        return [await sender.round_trip() for _ in range(count)]

    with ChildProcess(_start_receiver, teardown=_stop_receiver) as receiver:
        return asyncio.run(_with_sender(receiver, payload, in_a_row))


def two_post_throughput(count: int, senders: int, payload: dict[str, object]) -> tuple[float, float]:
    """Acknowledged round trips per second with one sender, then with ``senders`` concurrent ones (``count``
    round trips each time), between the same two processes."""

    async def rates(sender: _Sender) -> tuple[float, float]:
        async def rate(concurrent: int) -> float:
            left = iter(range(count))

            async def loop() -> None:
                for _ in left:
                    await sender.round_trip()

            start = time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(concurrent)))
            return count / (time.perf_counter() - start)

        return await rate(1), await rate(senders)

    with ChildProcess(_start_receiver, teardown=_stop_receiver) as receiver:
        return asyncio.run(_with_sender(receiver, payload, rates))


def put_get(sizes: list[int], repeats: int) -> dict[int, float]:
    """Median seconds of a PUT then a GET of each size against a minimal loopback server."""
    blobs = {size: os.urandom(size) for size in sizes}

    async def put(request: web.Request) -> web.Response:
        async for _ in request.content.iter_chunked(CHUNK):
            pass
        return web.Response(status=204)

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=blobs[int(request.match_info["size"])])

    async def main() -> dict[int, float]:
        app = web.Application(client_max_size=1024**3)
        app.router.add_put("/blob", put)
        app.router.add_get("/blob/{size}", get)
        timings: dict[int, float] = {}
        async with serve(app) as url, aiohttp.ClientSession() as session:
            for size in sizes:
                samples = []
                for _ in range(repeats + 1):
                    start = time.perf_counter()
                    async with session.put(f"{url}/blob", data=blobs[size]) as resp:
                        await resp.read()
                    async with session.get(f"{url}/blob/{size}") as resp:
                        assert len(await resp.read()) == size
                    samples.append(time.perf_counter() - start)
                timings[size] = statistics.median(samples[1:])
        return timings

    return asyncio.run(main())
