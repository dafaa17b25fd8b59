"""The simulated FLAME hub: nodes and their public keys, analyses, message relay, statuses and logs."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from flame_sdk.protocol.status import AnalysisStatus
from flame_sdk.sim.common.platform_model import NODE_HEADER, HubAnalysis, HubNode
from flame_sdk.sim.common.web import fixed_json, json_error
from flame_sdk.sim.services.hub_storage import add_hub_storage_routes


class Hub:
    """State plus the aiohttp app serving it. Node services call it with the ``X-Node-Id`` header."""

    def __init__(self) -> None:
        self.nodes: dict[str, HubNode] = {}
        self.analyses: dict[str, HubAnalysis] = {}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    def create_app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3, middlewares=[self._node_auth])
        app.router.add_get("/healthz", fixed_json({"status": "ok"}))
        app.router.add_post("/nodes", self.register_node)
        app.router.add_get("/nodes/{node_id}", self.get_node)
        app.router.add_post("/analyses", self.create_analysis)
        app.router.add_get("/analyses/{analysis_id}", self.get_analysis)
        app.router.add_post("/analyses/{analysis_id}/messages", self.relay_message)
        app.router.add_post("/analyses/{analysis_id}/nodes/{node_id}/status", self.post_status)
        app.router.add_post("/analyses/{analysis_id}/nodes/{node_id}/logs", self.post_log)
        app.router.add_get("/analyses/{analysis_id}/nodes/{node_id}/logs", self.get_logs)
        add_hub_storage_routes(app, self)
        return app

    @web.middleware
    async def _node_auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        open_paths = request.path == "/healthz" or (request.method == "POST" and request.path in ("/nodes", "/analyses"))
        if not open_paths and request.headers.get(NODE_HEADER) not in self.nodes:
            return json_error(401, f"unknown or missing {NODE_HEADER} header")
        return await handler(request)

    def analysis(self, request: web.Request) -> HubAnalysis:
        analysis = self.analyses.get(request.match_info["analysis_id"])
        if analysis is None:
            raise web.HTTPNotFound(text=f"no analysis {request.match_info['analysis_id']}")
        return analysis

    # -- registry ---------------------------------------------------------------------------------
    def add_analysis(self, analysis_id: str, project_id: str, participants: dict[str, str]) -> HubAnalysis:
        analysis = HubAnalysis(analysis_id, project_id, dict(participants))
        for node_id in participants:
            analysis.statuses[node_id] = {"status": AnalysisStatus.STARTING.value, "progress": 0}
            analysis.logs[node_id] = []
        self.analyses[analysis_id] = analysis
        return analysis

    async def register_node(self, request: web.Request) -> web.Response:
        body = await request.json()
        node = HubNode(body["node_id"], body["name"], body["public_key"], body["inbox_url"])
        self.nodes[node.node_id] = node
        return web.json_response({"id": node.node_id}, status=201)

    async def create_analysis(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.add_analysis(body["analysis_id"], body["project_id"], body["participants"])
        return web.json_response({"id": body["analysis_id"]}, status=201)

    async def get_node(self, request: web.Request) -> web.Response:
        node = self.nodes.get(request.match_info["node_id"])
        if node is None:
            return json_error(404, f"node {request.match_info['node_id']} does not exist")
        return web.json_response({"id": node.node_id, "name": node.name, "public_key": node.public_key_hex})

    async def get_analysis(self, request: web.Request) -> web.Response:
        analysis = self.analysis(request)
        nodes = [{"node_id": n, "role": r, **analysis.statuses[n]} for n, r in analysis.participants.items()]
        return web.json_response({"id": analysis.analysis_id, "project_id": analysis.project_id, "nodes": nodes})

    # -- messages ---------------------------------------------------------------------------------
    async def relay_message(self, request: web.Request) -> web.Response:
        analysis = self.analysis(request)
        body = await request.json()
        sender, recipients = request.headers[NODE_HEADER], body["recipients"]
        strangers = [r for r in recipients if r not in analysis.participants]
        if strangers:
            return json_error(400, f"recipients {strangers} are not participants of analysis {analysis.analysis_id}")
        absent = [r for r in recipients if r not in self.nodes]
        if absent:  # a node stack that is still starting (separate processes): worth a retry
            return json_error(503, f"recipients {absent} have not registered at the hub yet")
        assert self._session is not None
        deliveries = [
            self._session.post(f"{self.nodes[r].inbox_url}/hub/messages",
                               json={"analysis_id": analysis.analysis_id, "sender": sender, "payload": body["payload"],
                                     "message_id": body.get("message_id")})
            for r in recipients
        ]
        for response in await asyncio.gather(*deliveries, return_exceptions=True):
            if isinstance(response, BaseException):
                return json_error(502, f"delivery to a node failed: {response!r}")
            response.release()
        return web.json_response({"delivered": len(recipients)}, status=202)

    # -- statuses and logs --------------------------------------------------------------------------
    async def post_status(self, request: web.Request) -> web.Response:
        analysis = self.analysis(request)
        body = await request.json()
        analysis.statuses[request.match_info["node_id"]] = {"status": body["status"], "progress": body["progress"]}
        return web.json_response({}, status=200)

    async def post_log(self, request: web.Request) -> web.Response:
        analysis = self.analysis(request)
        analysis.logs.setdefault(request.match_info["node_id"], []).append(await request.json())
        return web.json_response({}, status=201)

    async def get_logs(self, request: web.Request) -> web.Response:
        analysis = self.analysis(request)
        return web.json_response(analysis.logs.get(request.match_info["node_id"], []))
