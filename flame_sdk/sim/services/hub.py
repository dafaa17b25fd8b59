"""The simulated FLAME hub: nodes and their public keys, analyses, message relay, statuses and logs.

The hub is a hop the SDK never sees (node services talk to it), so its routes are written once as plain
handlers over ``HubCall`` -> ``HubAnswer`` (they copy what they keep of a body and build every answer afresh,
so in process no side holds on to the other's objects) and reached two ways: in process (``Hub.call``, what the node
services of a ``Simulation`` use through ``hub_link.LocalHubLink``) and over HTTP (``Hub.create_app``, for
node stacks in other processes: ``flame-sim serve``). Both check the caller (``X-Node-Id``) the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from flame_sdk.protocol.status import AnalysisStatus
from flame_sdk.sim.common.platform_model import NODE_HEADER, HubAnalysis, HubNode
from flame_sdk.sim.services.hub_calls import Content, HubAnswer, HubCall, HubError, HubRoute, joined
from flame_sdk.sim.services.hub_storage import HubStore, storage_routes

#: Request paths whose route the hub remembers (cleared when full).
ROUTES_KEPT = 4096


async def _outcome(delivery: Awaitable[None]) -> BaseException | None:
    """What ``gather(..., return_exceptions=True)`` gives for one awaitable."""
    try:
        await delivery
    except Exception as exc:  # noqa: BLE001 - reported as the gather would
        return exc
    return None


class Hub:
    """State plus its routes. Node services call it as themselves (``caller`` / the ``X-Node-Id`` header)."""

    def __init__(self, store_root: Path | None = None) -> None:
        self.nodes: dict[str, HubNode] = {}
        self.analyses: dict[str, HubAnalysis] = {}
        self.store = HubStore.create(store_root)
        #: In-process deliveries to a node's broker (node id -> callable taking the relay envelope).
        self.local_inboxes: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.routes = [
            HubRoute("GET", "/healthz", self.healthz, open=True),
            HubRoute("POST", "/nodes", self.register_node, "json", open=True),
            HubRoute("GET", "/nodes/{node_id}", self.get_node),
            HubRoute("POST", "/analyses", self.create_analysis, "json", open=True),
            HubRoute("GET", "/analyses/{analysis_id}", self.get_analysis),
            HubRoute("POST", "/analyses/{analysis_id}/messages", self.relay_message, "json"),
            HubRoute("POST", "/analyses/{analysis_id}/nodes/{node_id}/status", self.post_status, "json"),
            HubRoute("POST", "/analyses/{analysis_id}/nodes/{node_id}/logs", self.post_log, "json"),
            HubRoute("GET", "/analyses/{analysis_id}/nodes/{node_id}/logs", self.get_logs),
            *storage_routes(self, self.store),
        ]
        self._patterns = [(route, route.pattern()) for route in self.routes]
        self._routed: dict[tuple[str, str], tuple[HubRoute, dict[str, str]]] = {}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        await asyncio.to_thread(self.store.remove)

    # -- dispatch ---------------------------------------------------------------------------------------
    async def call(self, caller: str, method: str, path: str, query: Mapping[str, str] | None = None,
                   body: Any = None, content: Content | None = None) -> HubAnswer:
        """Answer one request in process (what ``create_app`` does for HTTP requests)."""
        found = self._routed.get((method, path))
        if found is None:
            found = next(((route, match.groupdict()) for route, pattern in self._patterns
                          if route.method == method and (match := pattern.match(path))), None)
            if found is None:
                return HubAnswer(404, {"error": f"no hub route {method} {path}"})
            if len(self._routed) >= ROUTES_KEPT:
                self._routed.clear()
            self._routed[(method, path)] = found  # node services call the same few paths again and again
        route, params = found
        return await self._answer(route, HubCall(caller, dict(params), query or {}, body, content))

    async def _answer(self, route: HubRoute, call: HubCall) -> HubAnswer:
        if not route.open and call.caller not in self.nodes:
            return HubAnswer(401, {"error": f"unknown or missing {NODE_HEADER} header"})
        try:
            return await route.handler(call)
        except HubError as exc:
            return HubAnswer(exc.status, {"error": exc.reason})

    def create_app(self) -> web.Application:
        """The hub's routes over HTTP."""
        app = web.Application(client_max_size=1024**3)
        for route in self.routes:
            app.router.add_route(route.method, route.template, self._adapter(route))
        return app

    def _adapter(self, route: HubRoute) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            body, content = None, None
            if route.takes == "json":
                try:
                    body = await request.json()
                except ValueError:
                    return web.json_response({"error": "the body is not JSON"}, status=400)
            elif route.takes == "content":
                content = request.content.iter_chunked(256 * 1024)
            call = HubCall(request.headers.get(NODE_HEADER, ""), dict(request.match_info), request.query, body,
                           content)
            answer = await self._answer(route, call)
            if answer.content is not None:
                return web.Response(body=joined(answer.content), status=answer.status, headers=answer.headers)
            if answer.file is not None:
                return web.FileResponse(answer.file, status=answer.status, headers=answer.headers)
            return web.json_response(answer.body, status=answer.status, headers=answer.headers)

        return handle

    def analysis(self, call: HubCall) -> HubAnalysis:
        """The analysis the call names; HubError 404 when unknown."""
        analysis = self.analyses.get(call.params["analysis_id"])
        if analysis is None:
            raise HubError(404, f"no analysis {call.params['analysis_id']}")
        return analysis

    # -- registry ---------------------------------------------------------------------------------
    def add_analysis(self, analysis_id: str, project_id: str, participants: dict[str, str]) -> HubAnalysis:
        analysis = HubAnalysis(analysis_id, project_id, dict(participants))
        for node_id in participants:
            analysis.statuses[node_id] = {"status": AnalysisStatus.STARTING.value, "progress": 0}
            analysis.logs[node_id] = []
        self.analyses[analysis_id] = analysis
        return analysis

    async def healthz(self, _: HubCall) -> HubAnswer:
        return HubAnswer(200, {"status": "ok"})

    async def register_node(self, call: HubCall) -> HubAnswer:
        body = call.body
        node = HubNode(str(body["node_id"]), str(body["name"]), str(body["public_key"]), str(body["inbox_url"]))
        self.nodes[node.node_id] = node
        return HubAnswer(201, {"id": node.node_id})

    async def create_analysis(self, call: HubCall) -> HubAnswer:
        self.add_analysis(call.body["analysis_id"], call.body["project_id"], dict(call.body["participants"]))
        return HubAnswer(201, {"id": call.body["analysis_id"]})

    async def get_node(self, call: HubCall) -> HubAnswer:
        node = self.nodes.get(call.params["node_id"])
        if node is None:
            raise HubError(404, f"node {call.params['node_id']} does not exist")
        return HubAnswer(200, {"id": node.node_id, "name": node.name, "public_key": node.public_key_hex})

    async def get_analysis(self, call: HubCall) -> HubAnswer:
        analysis = self.analysis(call)
        nodes = [{"node_id": n, "role": r, **analysis.statuses[n]} for n, r in analysis.participants.items()]
        return HubAnswer(200, {"id": analysis.analysis_id, "project_id": analysis.project_id, "nodes": nodes})

    # -- messages ---------------------------------------------------------------------------------
    async def relay_message(self, call: HubCall) -> HubAnswer:
        analysis = self.analysis(call)
        body, sender = call.body, call.caller
        recipients = body["recipients"]
        strangers = [r for r in recipients if r not in analysis.participants]
        if strangers:
            raise HubError(400, f"recipients {strangers} are not participants of analysis {analysis.analysis_id}")
        absent = [r for r in recipients if r not in self.nodes]
        if absent:  # a node stack that is still starting (separate processes): worth a retry
            raise HubError(503, f"recipients {absent} have not registered at the hub yet")
        envelope = {"analysis_id": analysis.analysis_id, "sender": sender, "payload": body["payload"],
                    "message_id": body.get("message_id")}  # the payload is passed on, never changed
        if len(recipients) == 1:  # the common case: no gather task around one delivery
            outcomes: list[BaseException | None] = [await _outcome(self._deliver(recipients[0], envelope))]
        else:
            outcomes = await asyncio.gather(*(self._deliver(r, envelope) for r in recipients), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise HubError(502, f"delivery to a node failed: {outcome!r}")
        return HubAnswer(202, {"delivered": len(recipients)})

    async def _deliver(self, node_id: str, envelope: dict[str, Any]) -> None:
        local = self.local_inboxes.get(node_id)
        if local is not None:  # the recipient's broker only reads the envelope (and sends its payload on)
            await local(envelope)
            return
        assert self._session is not None
        async with self._session.post(f"{self.nodes[node_id].inbox_url}/hub/messages", json=envelope) as response:
            await response.read()

    # -- statuses and logs --------------------------------------------------------------------------
    async def post_status(self, call: HubCall) -> HubAnswer:
        analysis = self.analysis(call)
        node = call.params["node_id"]
        progress = call.body.get("progress", analysis.statuses.get(node, {}).get("progress", 0))  # optional, as for the PO
        analysis.statuses[node] = {"status": call.body["status"], "progress": progress}
        return HubAnswer(200, {})

    async def post_log(self, call: HubCall) -> HubAnswer:
        analysis = self.analysis(call)
        analysis.logs.setdefault(call.params["node_id"], []).append(dict(call.body))
        return HubAnswer(201, {})

    async def get_logs(self, call: HubCall) -> HubAnswer:
        analysis = self.analysis(call)
        return HubAnswer(200, list(analysis.logs.get(call.params["node_id"], [])))
