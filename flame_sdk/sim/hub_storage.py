"""Hub-side storage: the global intermediate bucket and final results."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from flame_sdk.sim.hub import Hub


def add_hub_storage_routes(app: web.Application, hub: Hub) -> None:
    """Register the hub's storage routes on ``app``."""


def final_results(hub: Hub, analysis_id: str) -> list[tuple[str, bytes]]:
    """Final result files stored for an analysis: (filename, content)."""
    return []
