"""Node result service (``/storage`` prefix): final, intermediate (global) and local results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from flame_sdk.sim.model import Deployment
    from flame_sdk.sim.node import SimNode


class StorageService:
    """Per-node storage service; ``create_app`` gives the routes one deployment sees."""

    def __init__(self, node: SimNode) -> None:
        self.node = node

    async def start(self) -> None:
        """Open node-local stores."""

    async def stop(self) -> None:
        """Close node-local stores."""

    def create_app(self, deployment: Deployment) -> web.Application:
        return web.Application()
