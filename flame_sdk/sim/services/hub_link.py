"""How a node's services reach the hub: a hop the SDK never sees, so in process when the hub is.

* ``LocalHubLink``: calls ``Hub.call`` directly (a ``Simulation``: hub and nodes on one loop); no HTTP,
  no JSON round trip, uploads handed over as they are;
* ``HttpHubLink``: the hub's HTTP routes (``flame-sim serve``: hub and node stacks in other processes).

Both answer ``request(...)`` with a ``HubReply`` (status, JSON body, body chunks) and ``json(...)`` with the
JSON body of a successful answer (``RuntimeError`` naming the status otherwise): the ``HubLink`` protocol of
``service_interfaces``.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import aiohttp

from flame_sdk.sim.common.platform_model import NODE_HEADER
from flame_sdk.sim.services.hub_calls import BytesLike, HubAnswer, Pieces
from flame_sdk.sim.services.service_interfaces import HubReply

if TYPE_CHECKING:
    from flame_sdk.sim.services.hub import Hub

CHUNK = 256 * 1024
#: Files up to this size are read in one go (one worker-thread hop).
WHOLE_READ = 4 * 1024 * 1024


def _failed(method: str, path: str, status: int, text: str) -> RuntimeError:
    return RuntimeError(f"hub {method} {path} -> HTTP {status}: {text}")


def _read_chunk(source: BinaryIO) -> bytes:
    return source.read(CHUNK)


def _open_and_read(path: Path) -> tuple[BinaryIO | None, bytes]:
    """Open ``path`` and read its first ``WHOLE_READ`` bytes; the file is closed (None) when that was all."""
    source = path.open("rb")
    try:
        first = source.read(WHOLE_READ + 1)
    except BaseException:
        source.close()
        raise
    if len(first) <= WHOLE_READ:
        source.close()
        return None, first
    return source, first


class _LocalReply:
    def __init__(self, answer: HubAnswer) -> None:
        self._answer = answer
        self.status = answer.status

    async def json(self) -> Any:
        return self._answer.body

    async def chunks(self) -> AsyncIterator[BytesLike]:
        content = self._answer.content
        if content is not None:  # immutable bytes, or read-only pieces: handed over as they are
            for piece in content if isinstance(content, tuple) else (content,):
                yield piece
            return
        if self._answer.file is None:
            yield jsonlib.dumps(self._answer.body).encode()
            return
        source, first = await asyncio.to_thread(_open_and_read, Path(self._answer.file))
        yield first  # a small file in one hop to the worker thread, a large one in chunks after its head
        if source is None:
            return
        try:
            while chunk := await asyncio.to_thread(_read_chunk, source):
                yield chunk
        finally:
            await asyncio.to_thread(source.close)


class LocalHubLink:
    """The hub in this process, called directly as ``node_id``."""

    def __init__(self, hub: Hub, node_id: str) -> None:
        self._hub = hub
        self._node_id = node_id

    @asynccontextmanager
    async def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None,
                      content: BytesLike | Pieces | None = None) -> AsyncIterator[HubReply]:
        # JSON bodies are handed over as they are: the hub copies what it keeps and builds every answer afresh
        yield _LocalReply(await self._hub.call(self._node_id, method, path, params, json, content))

    async def json(self, method: str, path: str, *, json: Any = None,
                   params: Mapping[str, str] | None = None) -> Any:
        async with self.request(method, path, json=json, params=params) as reply:
            if reply.status >= 400:
                raise _failed(method, path, reply.status, str(await reply.json()))
            return await reply.json()

    def deliver_locally(self, inbox: Callable[[dict[str, Any]], Awaitable[None]]) -> bool:
        self._hub.local_inboxes[self._node_id] = inbox
        return True

    async def close(self) -> None:
        self._hub.local_inboxes.pop(self._node_id, None)


class _HttpReply:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status

    async def json(self) -> Any:
        return await self._response.json(content_type=None)

    async def chunks(self) -> AsyncIterator[BytesLike]:
        async for chunk in self._response.content.iter_chunked(CHUNK):
            yield chunk


async def _slices(content: BytesLike | Pieces) -> AsyncIterator[memoryview]:
    """Flow-controlled pieces of an upload (no second copy in the transport)."""
    for piece in content if isinstance(content, tuple) else (content,):
        with memoryview(piece) as view, view.cast("B") as flat:
            for start in range(0, len(flat), CHUNK):
                yield flat[start : start + CHUNK]


class HttpHubLink:
    """The hub's HTTP routes at ``hub_url``, as ``node_id`` (the ``X-Node-Id`` header)."""

    def __init__(self, hub_url: str, node_id: str) -> None:
        self.hub_url = hub_url.rstrip("/")
        self._session = aiohttp.ClientSession(headers={NODE_HEADER: node_id}, cookie_jar=aiohttp.DummyCookieJar())

    @asynccontextmanager
    async def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None,
                      content: BytesLike | Pieces | None = None) -> AsyncIterator[HubReply]:
        data = None if content is None else _slices(content)
        async with self._session.request(method, self.hub_url + path, json=json, params=params,
                                         data=data) as response:
            yield _HttpReply(response)

    async def json(self, method: str, path: str, *, json: Any = None,
                   params: Mapping[str, str] | None = None) -> Any:
        async with self._session.request(method, self.hub_url + path, json=json, params=params) as response:
            if response.status >= 400:
                raise _failed(method, path, response.status, await response.text())
            return await response.json(content_type=None)

    def deliver_locally(self, inbox: Callable[[dict[str, Any]], Awaitable[None]]) -> bool:
        return False

    async def close(self) -> None:
        await self._session.close()
