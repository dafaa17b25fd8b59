"""What the per-source data clients share: identity, and running their work on the SDK loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from flame_sdk.clients.data import DataApiClient

T = TypeVar("T")


class SourceClient:
    """One data source (a Kong service) of the project."""

    kind = ""

    def __init__(self, api: DataApiClient, source: dict[str, Any]) -> None:
        self.api = api
        self.source = source
        self.id: str = str(source.get("id"))
        self.name: str = str(source.get("name"))

    async def _home(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the SDK loop, awaiting it from whichever loop the caller uses."""
        home = self.api.loop
        if home is None or asyncio.get_running_loop() is home:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, home))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} id={self.id}>"
