"""Requests to the simulated hub and its answers, independent of how they travel (in process or HTTP)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BytesLike = bytes | bytearray | memoryview
#: A body kept as the pieces it arrived in (bytes, or read-only views of bytes), never joined into one copy.
Pieces = tuple[bytes | memoryview, ...]
#: The body of an upload: the bytes themselves or their pieces (in process), or a stream of chunks (over HTTP).
Content = BytesLike | Pieces | AsyncIterator[bytes]


def content_size(content: BytesLike | Pieces) -> int:
    """Bytes of a body held in memory."""
    if isinstance(content, tuple):
        return sum(len(piece) for piece in content)
    return memoryview(content).nbytes


def joined(content: BytesLike | Pieces) -> bytes:
    """A body held in memory as one bytes object (a copy unless it is bytes already)."""
    return b"".join(content) if isinstance(content, tuple) else bytes(content)


class HubError(Exception):
    """An error answer of the hub: ``{"error": reason}`` with an HTTP status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class HubCall:
    """One request to the hub, whichever way it came: caller, path parameters, query, JSON body or content."""

    caller: str
    params: dict[str, str]
    query: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    content: Content | None = None


@dataclass
class HubAnswer:
    """The hub's answer: a status and a JSON body, or bytes (``content``, never changed afterwards) or a file to
    send."""

    status: int = 200
    body: Any = None
    file: Path | None = None
    content: bytes | Pieces | None = None
    headers: dict[str, str] = field(default_factory=dict)


HubHandler = Callable[[HubCall], Awaitable[HubAnswer]]


@dataclass(frozen=True)
class HubRoute:
    """A route of the hub; ``takes``: what its handler reads from the request (``json``, ``content`` or nothing)."""

    method: str
    template: str
    handler: HubHandler
    takes: str = ""
    open: bool = False  # callable without a registered X-Node-Id

    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template) + "$")
