"""Simulated pod orchestration: log intake, and the status loop that polls each analysis' ``/healthz``.

Per deployment the loop reports status/progress to the hub, refreshes the analysis token before it
expires (``/analysis/token_refresh``) and pushes partner statuses (``/analysis/partner_status``),
as the real PO does. It stops polling once a terminal status was reported.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from flame_sdk.protocol import analysis_api, po_api
from flame_sdk.protocol.po_api import LOG_LEVELS
from flame_sdk.protocol.status import AnalysisStatus, is_final
from flame_sdk.sim.common.platform_model import Deployment
from flame_sdk.sim.common.web import fixed_json

if TYPE_CHECKING:
    from flame_sdk.sim.services.service_interfaces import NodeContext

#: Refresh the token when less than this many seconds remain (the real PO: two loop intervals + 1 s).
REFRESH_MARGIN = 2.0
#: A deployment whose API never answered within this time is reported failed.
STARTUP_LIMIT = 180.0
#: A deployment whose API stopped answering for this long is reported failed.
LOST_LIMIT = 10.0


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"detail": reason}, status=status)


class POService:
    """Node-level PO: received log records per analysis and one status watcher task per deployment."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.statuses: dict[str, str] = {}  # deployment name -> last status seen on /healthz
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    def create_app(self, deployment: Deployment) -> web.Application:
        app = web.Application()
        async def stream_logs(request: web.Request) -> web.Response:
            return await self.stream_logs(request, deployment)

        app.router.add_post(po_api.STREAM_LOGS, stream_logs)
        app.router.add_get(po_api.HEALTH, fixed_json({"status": "ok"}))
        return app

    async def stream_logs(self, request: web.Request, deployment: Deployment) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(po_api.INVALID_BODY, "body is not valid JSON")
        problems = []
        if not isinstance(body, dict):
            return _error(po_api.INVALID_BODY, "body must be an object")
        if not isinstance(body.get("log"), str):
            problems.append("log must be a string")
        if body.get("log_type") not in LOG_LEVELS:
            problems.append(f"log_type must be one of {list(LOG_LEVELS)}")
        if body.get("analysis_id") != deployment.analysis_id:
            problems.append(f"analysis_id must be {deployment.analysis_id}")
        if not isinstance(body.get("status"), str):
            problems.append("status must be a string")
        if not isinstance(body.get("progress"), int):
            problems.append("progress must be an integer")
        if problems:
            return _error(po_api.INVALID_BODY, "; ".join(problems))
        record = {k: body[k] for k in ("log", "log_type", "status", "progress")}
        record["created_at"] = time.time()
        self.logs.setdefault(deployment.analysis_id, []).append(record)
        path = f"/analyses/{deployment.analysis_id}/nodes/{self.node.node_id}"
        await self.node.hub_json("POST", path + "/logs", json=record)
        await self.node.hub_json("POST", path + "/status", json={"status": body["status"], "progress": body["progress"]})
        return web.json_response(None)

    # -- status loop ----------------------------------------------------------------------------------
    def watch(self, deployment: Deployment) -> None:
        self._watchers[deployment.deployment_name] = asyncio.ensure_future(self._watch(deployment))

    async def stop(self) -> None:
        for task in self._watchers.values():
            task.cancel()
        await asyncio.gather(*self._watchers.values(), return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _watch(self, deployment: Deployment) -> None:
        self._session = self._session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10),
                                                               headers=self.node.peer_headers)
        analysis_url = deployment.gateway_url + analysis_api.PREFIX
        started, last_seen, progress = time.monotonic(), None, 0
        path = f"/analyses/{deployment.analysis_id}/nodes/{self.node.node_id}"
        while True:
            await asyncio.sleep(self.node.status_interval)
            try:
                async with self._session.get(analysis_url + analysis_api.HEALTH) as resp:
                    health = await resp.json()
                status, remaining = health[analysis_api.STATUS], health[analysis_api.TOKEN_REMAINING_TIME]
                last_seen = time.monotonic()
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError):
                limit, since = (LOST_LIMIT, last_seen) if last_seen else (STARTUP_LIMIT, started)
                if time.monotonic() - since < limit:
                    continue
                status, remaining = AnalysisStatus.FAILED.value, None
            status = po_api.health_as_seen_by_po(status).value
            self.statuses[deployment.deployment_name] = status
            analysis = await self.node.hub_json("GET", f"/analyses/{deployment.analysis_id}")
            mine = next(n for n in analysis["nodes"] if n["node_id"] == self.node.node_id)
            progress = mine.get("progress", progress)
            await self.node.hub_json("POST", path + "/status", json={"status": status, "progress": progress})
            if is_final(status):
                return
            if remaining is not None and remaining < REFRESH_MARGIN + self.node.status_interval * 2:
                token = self.node.tokens.issue(deployment.analysis_id)
                deployment.keycloak_token = token
                await self._post(analysis_url + analysis_api.TOKEN_REFRESH, {analysis_api.TOKEN: token})
            partners = {n["node_id"]: n["status"] for n in analysis["nodes"] if n["node_id"] != self.node.node_id}
            await self._post(analysis_url + analysis_api.PARTNER_STATUS, {analysis_api.PARTNER_STATUS_FIELD: partners})

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        try:
            async with self._session.post(url, json=body) as resp:  # type: ignore[union-attr]
                await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass  # the next loop iteration tries again
