"""Simulated pod orchestration: log intake, and the status loop that polls each analysis' ``/healthz``.

Per deployment the loop pushes partner statuses (``/analysis/partner_status``), reads ``/analysis/healthz``,
refreshes the analysis token before it expires (``/analysis/token_refresh``), reports the status to the hub and
removes the deployment once it reached a final status, deciding as the real PO does (``po_lifecycle``). Removal
calls ``on_removed`` listeners: ``flame-sim run`` ends the node's process there, as Kubernetes would. The PO
calls its own node's gateways in process (``gateway.GatewayIngress``: a hop the SDK never sees, with the same
rules and faults as over HTTP); the analysis gets real HTTP requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from flame_sdk.protocol import analysis_api, po_api
from flame_sdk.protocol.po_api import LOG_LEVELS
from flame_sdk.protocol.status import AnalysisStatus
from flame_sdk.sim.common.platform_model import Deployment
from flame_sdk.sim.common.web import fixed_json
from flame_sdk.sim.services.po_lifecycle import (
    EXECUTED,
    FAILED,
    REAL_MAX_RESTARTS,
    STARTED,
    STUCK,
    Action,
    PoLimits,
    decide,
    finished_status,
    hub_status,
)

if TYPE_CHECKING:
    from flame_sdk.sim.services.service_interfaces import IngressReply, NodeContext

#: Refresh the token when less than this many seconds remain (the real PO: two loop intervals + 1 s).
REFRESH_MARGIN = 2.0
#: Bound on one ``/healthz`` request (the real PO uses httpx's default of 5 s).
REQUEST_TIMEOUT = 5.0

RemovalListener = Callable[[Deployment, AnalysisStatus], None]


@dataclass
class DeploymentRecord:
    """The PO's view of one deployment: its database status, and why the PO failed it (if it did)."""

    db_status: AnalysisStatus = STARTED
    deployed_at: float = field(default_factory=time.monotonic)
    #: Set when the deployment was removed (its final database status).
    removed: AnalysisStatus | None = None
    #: Why the PO itself failed the node (no answer, stuck, process gone); None when the node said ``failed``.
    reason: str | None = None
    #: Set by ``pod_terminated``: the node's process is gone, for this reason.
    terminated: str | None = None
    #: The highest progress the node's logs carried (the real PO forwards only increases, up to 100).
    progress: int = 0


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"detail": reason}, status=status)


class POService:
    """Node-level PO: received log records per analysis and one status watcher task per deployment."""

    def __init__(self, node: NodeContext, limits: PoLimits | None = None) -> None:
        self.node = node
        self.limits = limits or PoLimits()
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.records: dict[str, DeploymentRecord] = {}  # deployment name -> the PO's view of it
        self.on_removed: list[RemovalListener] = []
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
        status: dict[str, Any] = {"status": body["status"]}
        known = self.records.get(deployment.deployment_name)
        if known is not None and known.progress < body["progress"] <= 100:  # as the real PO: only forward
            known.progress = status["progress"] = body["progress"]
        await self.node.hub_json("POST", path + "/status", json=status)
        return web.json_response(None)

    # -- status loop ----------------------------------------------------------------------------------
    def watch(self, deployment: Deployment) -> None:
        self.records[deployment.deployment_name] = DeploymentRecord()
        self._watchers[deployment.deployment_name] = asyncio.ensure_future(self._watch(deployment))

    def pod_terminated(self, deployment_name: str, reason: str) -> None:
        """The deployment's process is gone (simulator extension: Kubernetes would restart the container; the
        simulator instead has the PO fail the node at its next look, with ``reason``)."""
        record = self.records.get(deployment_name)
        if record is not None and record.removed is None:
            record.terminated = reason

    async def stop(self) -> None:
        for task in self._watchers.values():
            task.cancel()
        await asyncio.gather(*self._watchers.values(), return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _watch(self, deployment: Deployment) -> None:
        self._session = self._session or aiohttp.ClientSession(headers=self.node.peer_headers)
        record = self.records[deployment.deployment_name]
        await self._report(deployment, STARTED)
        while record.removed is None:
            await asyncio.sleep(self.node.status_interval)
            await self._inform_partners(deployment)
            internal, silence = (EXECUTED, None) if record.db_status == EXECUTED else \
                await self._internal_status(deployment, record)
            action = decide(record.db_status, internal)
            if action is Action.UNSTUCK:
                slow_start = silence is not None and record.terminated is None and \
                    time.monotonic() - record.deployed_at < self.limits.startup_limit
                if slow_start:  # the real PO would restart it; the simulator waits
                    action = None
                else:
                    record.reason = record.terminated or self._unstuck_reason(internal, silence)
                    internal, action = FAILED, Action.FINISHING
            elif internal == FAILED:
                record.reason = silence
            if action is Action.RUNNING:
                record.db_status = AnalysisStatus.EXECUTING
            elif action is Action.FINISHING:
                record.db_status = finished_status(internal)
            await self._report(deployment, hub_status(record.db_status, internal))
            if action is Action.FINISHING:
                record.removed = record.db_status
                for listener in list(self.on_removed):
                    listener(deployment, record.db_status)

    def _unstuck_reason(self, internal: AnalysisStatus, silence: str | None) -> str | None:
        """Where the real PO would restart the deployment, the simulator fails it; this says why."""
        restarts = f"a real PO restarts such a deployment up to {REAL_MAX_RESTARTS} times, then marks it failed"
        if internal == STUCK:
            return f"the node reported stuck: its SDK could not connect every node service at startup ({restarts})"
        if silence is not None:
            return f"its API did not answer /healthz within {self.limits.startup_limit:g} s of its deployment " \
                   f"({restarts})"
        return None  # it answered failed itself: its logs say why

    async def _internal_status(self, deployment: Deployment,
                               record: DeploymentRecord) -> tuple[AnalysisStatus, str | None]:
        """``/analysis/healthz`` as the PO maps it, retried for ``health_timeout`` s; then ``failed``, with why."""
        url = deployment.gateway_url + analysis_api.PREFIX + analysis_api.HEALTH
        deadline = time.monotonic() + self.limits.health_timeout
        while record.terminated is None:
            remaining = deadline - time.monotonic()
            try:
                async with self._call("GET", url, max(0.1, min(REQUEST_TIMEOUT, remaining))) as resp:
                    resp.raise_for_status()
                    health = await resp.json()
                status, remaining_token = health[analysis_api.STATUS], health[analysis_api.TOKEN_REMAINING_TIME]
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError):
                if time.monotonic() + self.limits.retry_interval > deadline:
                    return FAILED, f"its API did not answer /healthz for {self.limits.health_timeout:g} s"
                await asyncio.sleep(self.limits.retry_interval)
                continue
            await self._refresh_token(deployment, remaining_token)
            return po_api.health_as_seen_by_po(status), None
        return FAILED, record.terminated

    async def _refresh_token(self, deployment: Deployment, remaining: object) -> None:
        if isinstance(remaining, (int, float)) and remaining < REFRESH_MARGIN + self.node.status_interval * 2:
            token = self.node.tokens.issue(deployment.analysis_id)
            deployment.keycloak_token = token
            await self._post(deployment, analysis_api.TOKEN_REFRESH, {analysis_api.TOKEN: token})

    async def _inform_partners(self, deployment: Deployment) -> None:
        """Push the partners' hub statuses to ``/analysis/partner_status``; failures do not stop the loop (the real
        PO logs them and goes on)."""
        try:
            analysis = await self.node.hub_json("GET", f"/analyses/{deployment.analysis_id}")
        except (aiohttp.ClientError, RuntimeError):
            return
        partners = {n["node_id"]: n["status"] for n in analysis["nodes"] if n["node_id"] != self.node.node_id}
        await self._post(deployment, analysis_api.PARTNER_STATUS, {analysis_api.PARTNER_STATUS_FIELD: partners})

    async def _report(self, deployment: Deployment, status: AnalysisStatus) -> None:
        """Set this node's status on the hub (the progress comes with the logs). A hub that does not answer (e.g.
        the compose hub after it exited) is skipped."""
        path = f"/analyses/{deployment.analysis_id}/nodes/{self.node.node_id}/status"
        try:
            await self.node.hub_json("POST", path, json={"status": status.value})
        except (aiohttp.ClientError, RuntimeError):
            pass

    async def _post(self, deployment: Deployment, route: str, body: dict[str, Any]) -> None:
        url = deployment.gateway_url + analysis_api.PREFIX + route
        try:
            async with self._call("POST", url, 10.0, body) as resp:
                await resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass  # the real PO logs and goes on; the next iteration tries again

    @asynccontextmanager
    async def _call(self, method: str, url: str, timeout: float, body: Any = None) -> AsyncIterator[IngressReply]:
        """A request to an analysis through its gateway: in process when the gateway is this node's (a hop the SDK
        never sees; the same rules and faults), else over HTTP with the node's peer header."""
        local = self.node.ingress(url)
        if local is not None:
            ingress, path = local
            async with ingress.request(method, path, json_body=body, timeout=timeout) as reply:
                yield reply
            return
        assert self._session is not None
        async with self._session.request(method, url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            yield resp
