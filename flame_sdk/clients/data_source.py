"""What the per-source data clients share: identity, the data API they belong to, running on the SDK loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from flame_sdk.config import NodeConfig
from flame_sdk.http import ServiceClient
from flame_sdk.logs import FlameLogger

T = TypeVar("T")


class DataContext(Protocol):
    """The data API as its source clients see it (``DataApiClient``)."""

    loop: asyncio.AbstractEventLoop | None
    kong: ServiceClient
    config: NodeConfig
    logger: FlameLogger
    max_pages: int
    concurrency: int
    s3_part_size: int

    def remember_link(self, url: str, client: SourceClient) -> None:
        """Note which source gave a page link."""
        ...


class SourceClient:
    """One data source (a Kong service) of the project."""

    kind = ""

    def __init__(self, api: DataContext, source: dict[str, Any]) -> None:
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
