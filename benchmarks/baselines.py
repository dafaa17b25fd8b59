"""The bare operations targets are measured against, on loopback with plain aiohttp (no SDK, no simulator).

* ``BareTwoPost``: A POSTs a message to B, B answers 202 and POSTs an acknowledgement back to A; the time until
  A holds the acknowledgement, in blocks of round trips meant to be interleaved with the SDK's. The receiver
  runs in a child process, as the receiving node's SDK does in the messaging benchmark (two nodes are two
  processes).
* ``BareTwoPost.throughputs``: the same exchange, acknowledged round trips per second with 1 and with ``senders``
  concurrent senders (coroutines on A's loop): how much concurrency gains on this machine at all.
* ``BarePutGet``: a PUT of ``size`` bytes then a GET of them, to a server in a child process (it consumes the
  upload as a stream and answers the GET from memory), one round at a time to interleave with the SDK's.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from benchmarks.processes import ChildProcess
from flame_sdk.runtime import EventLoopThread

CHUNK = 256 * 1024
T = TypeVar("T")


async def _listen(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on a loopback port of the running loop: its runner (to clean up) and base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


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
        self._runner, base = await _listen(app)
        self.url = base + "/webhook"

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


class _BareClient:
    """This process's side of a bare baseline: a server in a child process (``ChildProcess``), a loop thread of
    its own with one aiohttp session, timed there; ``_open``/``_close`` add what a baseline needs beside them."""

    def __init__(self, server: ChildProcess, loop_name: str) -> None:
        self._server = server
        self._loop_name = loop_name
        self._loop: EventLoopThread | None = None
        self._session: aiohttp.ClientSession | None = None

    def __enter__(self: _Client) -> _Client:
        self._server.__enter__()
        self._loop = EventLoopThread(self._loop_name)
        try:
            self._loop.run(self._start(), 60)
        except BaseException:
            self.__exit__()
            raise
        return self

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession()  # its pool (100 connections) is never the limit here
        await self._open(self._session)

    async def _open(self, session: aiohttp.ClientSession) -> None:
        """What the baseline sets up on its loop once the server runs (its URL: ``self._server.info``)."""

    async def _close(self) -> None:
        """What the baseline tears down on its loop before the session closes."""

    async def _stop(self) -> None:
        await self._close()
        if self._session is not None:
            await self._session.close()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        assert self._loop is not None
        return self._loop.run(coro, timeout)

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            try:
                self._loop.run(self._stop(), 30)
            finally:
                self._loop.stop()
        self._server.__exit__()


_Client = TypeVar("_Client", bound=_BareClient)


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


class BareTwoPost(_BareClient):
    """``with BareTwoPost(payload) as bare: bare.round_trips(n)``: seconds of ``n`` message + acknowledgement
    round trips in a row, from this process (a loop thread of its own, timed there) to a receiver in a child
    process. Blocks are meant to be interleaved with the SDK's, so both meet the same machine state: on a
    shared machine the bare figure alone swings by half between runs."""

    def __init__(self, payload: dict[str, object]) -> None:
        super().__init__(ChildProcess(_start_receiver, teardown=_stop_receiver), "bare-two-post-sender")
        self._payload = payload
        self._runner: web.AppRunner | None = None
        self._sender: _Sender | None = None

    async def _open(self, session: aiohttp.ClientSession) -> None:
        self._sender = _Sender(session, self._server.info, self._payload)
        app = web.Application()
        app.router.add_post("/webhook", self._sender.ack)
        self._runner, url = await _listen(app)
        await asyncio.to_thread(self._server.call, _set_ack_url, url + "/webhook")
        for _ in range(20):  # warm up connections
            await self._sender.round_trip()

    async def _in_a_row(self, count: int) -> list[float]:
        assert self._sender is not None
        return [await self._sender.round_trip() for _ in range(count)]

    def round_trips(self, count: int) -> list[float]:
        """Seconds of each of ``count`` round trips in a row."""
        return self._run(self._in_a_row(count), 120)

    async def _rate(self, concurrent: int, count: int) -> float:
        sender = self._sender
        assert sender is not None
        left = iter(range(count))

        async def loop() -> None:
            for _ in left:
                await sender.round_trip()

        start = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrent)))
        return count / (time.perf_counter() - start)

    async def _rates(self, count: int, senders: int, rounds: int) -> tuple[float, float]:
        await self._rate(senders, 100)  # warm up at that concurrency
        ones, manys = [], []
        for _ in range(rounds):
            ones.append(await self._rate(1, count))
            manys.append(await self._rate(senders, count))
        return statistics.median(ones), statistics.median(manys)

    def throughputs(self, count: int, senders: int, rounds: int) -> tuple[float, float]:
        """Median round trips per second with one sender and with ``senders`` concurrent ones (coroutines on
        this side's loop; ``count`` round trips each time, ``rounds`` times alternately after a warm-up)."""
        return self._run(self._rates(count, senders, rounds), 600)

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class _BlobServer:
    """The bare storage service: consumes a PUT as a stream, answers a GET of ``size`` bytes from memory."""

    def __init__(self, sizes: list[int]) -> None:
        self.blobs = {size: os.urandom(size) for size in sizes}
        self.runner: web.AppRunner | None = None

    async def put(self, request: web.Request) -> web.Response:
        async for _ in request.content.iter_chunked(CHUNK):
            pass
        return web.Response(status=204)

    async def get(self, request: web.Request) -> web.Response:
        return web.Response(body=self.blobs[int(request.match_info["size"])])

    async def start(self) -> str:
        app = web.Application(client_max_size=1024**3)
        app.router.add_put("/blob", self.put)
        app.router.add_get("/blob/{size}", self.get)
        self.runner, url = await _listen(app)
        return url


def _start_blob_server(sizes: list[int]) -> tuple[tuple[EventLoopThread, _BlobServer], str]:
    loop, server = EventLoopThread("bare-storage"), _BlobServer(sizes)
    return (loop, server), loop.run(server.start(), 30)


def _stop_blob_server(state: tuple[EventLoopThread, _BlobServer]) -> None:
    loop, server = state
    try:
        if server.runner is not None:
            loop.run(server.runner.cleanup(), 30)
    finally:
        loop.stop()


class BarePutGet(_BareClient):
    """``with BarePutGet(sizes) as bare: bare.round(size)``: seconds of one PUT then GET of ``size`` bytes, from
    this process to a minimal server in a child process (the SDK's storage service is another process too).
    Rounds are meant to be interleaved with the SDK's, so both meet the same machine state (allocator, page
    cache, neighbours)."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__(ChildProcess(_start_blob_server, sizes, teardown=_stop_blob_server), "bare-storage-client")
        self._blobs = {size: os.urandom(size) for size in sizes}

    async def _round(self, size: int) -> float:
        assert self._session is not None
        url = self._server.info
        start = time.perf_counter()
        async with self._session.put(f"{url}/blob", data=self._blobs[size]) as resp:
            await resp.read()
        async with self._session.get(f"{url}/blob/{size}") as resp:
            assert len(await resp.read()) == size
        return time.perf_counter() - start

    def round(self, size: int) -> float:
        """Seconds of one PUT+GET of ``size`` bytes (one of the sizes given)."""
        return self._run(self._round(size), 120)
