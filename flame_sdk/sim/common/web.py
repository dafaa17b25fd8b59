"""Small aiohttp helpers shared by the simulated services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web


def fixed_json(payload: Any, status: int = 200) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler that always answers ``payload`` (health endpoints)."""

    async def handler(_: web.Request) -> web.Response:
        return web.json_response(payload, status=status)

    return handler


def json_error(status: int, reason: str) -> web.Response:
    """An error answer with a reason a developer can act on."""
    return web.json_response({"error": reason}, status=status)
