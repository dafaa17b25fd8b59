"""Simulated node message broker: subscriptions, discovery, relay through the hub, webhook delivery."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from flame_sdk.protocol import broker_api as api
from flame_sdk.protocol.envelope import MAX_MESSAGE_BYTES
from flame_sdk.sim.common.platform_model import Deployment
from flame_sdk.sim.common.web import fixed_json, json_error

if TYPE_CHECKING:
    from flame_sdk.sim.services.service_interfaces import NodeContext



class _DeliveryFailed(Exception):
    pass



class BrokerService:
    """Node-level broker state: webhook subscriptions per analysis."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.subscriptions: dict[str, dict[str, str]] = {}  # analysis id -> {subscription id: webhook url}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.delivered = 0
        self._analyses: dict[str, dict[str, Any]] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def create_app(self, deployment: Deployment) -> web.Application:
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES + 64 * 1024)
        app.router.add_get(api.HEALTH, fixed_json({"status": "UP"}))
        app.router.add_get(api.PARTICIPANTS, self.participants)
        app.router.add_get(api.PARTICIPANTS_SELF, self.participants_self)
        app.router.add_post(api.SUBSCRIPTIONS, self.subscribe)
        app.router.add_get(api.SUBSCRIPTIONS, self.list_subscriptions)
        app.router.add_post(api.MESSAGES, self.send)
        app.router.add_post(api.BROADCAST, self.broadcast)
        return app

    async def _analysis(self, analysis_id: str) -> dict[str, Any]:
        """The analysis' participants as registered on the hub (fixed for its lifetime, so cached)."""
        if analysis_id not in self._analyses:
            self._analyses[analysis_id] = await self.node.hub_json("GET", f"/analyses/{analysis_id}")
        return self._analyses[analysis_id]

    @staticmethod
    def _participant(entry: dict[str, Any]) -> dict[str, str]:
        return {api.NODE_ID: entry["node_id"], api.NODE_TYPE: entry["role"]}

    async def participants(self, request: web.Request) -> web.Response:
        analysis = await self._analysis(request.match_info["analysis_id"])
        return web.json_response([self._participant(n) for n in analysis["nodes"]])

    async def participants_self(self, request: web.Request) -> web.Response:
        analysis = await self._analysis(request.match_info["analysis_id"])
        me = [n for n in analysis["nodes"] if n["node_id"] == self.node.node_id]
        if not me:
            return json_error(404, "this node does not participate in the analysis")
        return web.json_response(self._participant(me[0]))

    async def subscribe(self, request: web.Request) -> web.Response:
        analysis_id = request.match_info["analysis_id"]
        try:
            body = await request.json()
            url = body[api.WEBHOOK_URL]
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return json_error(400, 'expected {"webhookUrl": "http://..."}')
        subscription_id = str(uuid.uuid4())
        self.subscriptions.setdefault(analysis_id, {})[subscription_id] = url
        return web.json_response({api.SUBSCRIPTION_ID: subscription_id, api.ANALYSIS_ID: analysis_id,
                                  api.WEBHOOK_URL: url}, status=api.SUBSCRIBED)

    async def list_subscriptions(self, request: web.Request) -> web.Response:
        analysis_id = request.match_info["analysis_id"]
        subs = self.subscriptions.get(analysis_id, {})
        return web.json_response([{api.SUBSCRIPTION_ID: s, api.ANALYSIS_ID: analysis_id, api.WEBHOOK_URL: u}
                                  for s, u in subs.items()])

    async def _relay(self, analysis_id: str, recipients: list[str], message: Any) -> web.Response:
        await self.node.hub_json("POST", f"/analyses/{analysis_id}/messages",
                                 json={"recipients": recipients, "payload": message})
        return web.Response(status=api.ACCEPTED)

    async def _read_message(self, request: web.Request) -> tuple[dict[str, Any] | None, str | None]:
        raw = await request.read()
        if len(raw) > MAX_MESSAGE_BYTES:
            return None, f"message of {len(raw)} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit"
        try:
            body = json.loads(raw)
        except ValueError:
            return None, "body is not valid JSON"
        if not isinstance(body, dict) or api.MESSAGE not in body:
            return None, 'expected {"recipients": [...], "message": {...}}'
        return body, None

    async def send(self, request: web.Request) -> web.Response:
        analysis_id = request.match_info["analysis_id"]
        body, error = await self._read_message(request)
        if error or body is None:
            return json_error(api.TOO_LARGE if "exceeds" in str(error) else 400, str(error))
        recipients = body.get(api.RECIPIENTS)
        if not isinstance(recipients, list) or not recipients or not all(isinstance(r, str) for r in recipients):
            return json_error(400, "recipients must be a non-empty list of node ids")
        analysis = await self._analysis(analysis_id)
        others = {n["node_id"] for n in analysis["nodes"] if n["node_id"] != self.node.node_id}
        strangers = [r for r in recipients if r not in others]
        if strangers:
            return json_error(400, f"recipients {strangers} are not other participants of analysis {analysis_id}")
        return await self._relay(analysis_id, recipients, body[api.MESSAGE])

    async def broadcast(self, request: web.Request) -> web.Response:
        analysis_id = request.match_info["analysis_id"]
        body, error = await self._read_message(request)
        if error or body is None:
            return json_error(api.TOO_LARGE if "exceeds" in str(error) else 400, str(error))
        analysis = await self._analysis(analysis_id)
        others = [n["node_id"] for n in analysis["nodes"] if n["node_id"] != self.node.node_id]
        return await self._relay(analysis_id, others, body[api.MESSAGE])

    # -- inbound from the hub -------------------------------------------------------------------------
    async def from_hub(self, request: web.Request) -> web.Response:
        envelope = await request.json()
        for url in self.subscriptions.get(envelope["analysis_id"], {}).values():
            task = asyncio.ensure_future(self._deliver(url, envelope["payload"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.Response(status=202)

    async def _deliver(self, url: str, payload: Any) -> None:
        try:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(api.DELIVERY_ATTEMPTS),
                                               wait=wait_random_exponential(multiplier=0.1, max=2.0),
                                               retry=retry_if_exception_type((_DeliveryFailed, aiohttp.ClientError,
                                                                              asyncio.TimeoutError))):
                with attempt:
                    async with self.session.post(url, json=payload) as resp:
                        if resp.status >= 500:
                            raise _DeliveryFailed(f"HTTP {resp.status}")
                        self.delivered += 1
        except Exception:  # noqa: BLE001 - an undeliverable message is dropped, as by the real broker
            return
