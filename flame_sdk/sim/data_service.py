"""Node data API: Kong routes to FHIR and S3 sources, and the hub adapter's datastore listing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from flame_sdk.sim.model import Deployment
    from flame_sdk.sim.node import SimNode


class DataService:
    """Per-node data service; ``create_*_app`` give the routes one deployment sees."""

    def __init__(self, node: SimNode) -> None:
        self.node = node

    async def start(self) -> None:
        """Start data backends (FHIR store, S3 endpoint)."""

    async def stop(self) -> None:
        """Stop data backends."""

    def create_kong_app(self, deployment: Deployment) -> web.Application:
        return web.Application()

    def create_hub_adapter_app(self, deployment: Deployment) -> web.Application:
        return web.Application()
