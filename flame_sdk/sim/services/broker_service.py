"""Simulated node message broker: subscriptions, discovery, relay through the hub, webhook delivery.

It does what PrivateAIM/node-message-broker does (facts and sources in ``flame_sdk.protocol.broker_api``):

* every API route needs a valid bearer token (401, empty body, ``WWW-Authenticate``);
* subscriptions are kept per analysis, one per POST (subscribing twice means two deliveries per message);
* ``POST .../messages`` answers 202 once the message is handed to the hub; a message the hub does not take
  is logged and dropped, never retried;
* a message from the hub goes to every subscription of its analysis; only 5xx answers are retried
  (5 times, backoff from 1 s doubling, jitter 75%); a 4xx answer (429 included) or a connection error ends
  the delivery; an undelivered message is logged (``flame_sdk.sim.message_broker``) and dropped.

Webhook hosts ``nginx-<DEPLOYMENT_NAME>`` resolve to that deployment's gateway on this node, as the
cluster's DNS resolves them on a real node. The broker-to-gateway hop is one the SDK never sees, so it is made
in process (``gateway.GatewayIngress``: nginx's rules and the fault plan as over HTTP, then the real HTTP
request to the analysis); a webhook elsewhere gets an HTTP request with the node's peer header, by which a
gateway recognises the broker (the stand-in for nginx's ``allow <message broker ip>``). Messages from the hub
arrive in process too when the hub runs in this process (``accept``), else on the node's inbox route.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from flame_sdk.protocol import broker_api as api
from flame_sdk.protocol.envelope import MAX_MESSAGE_BYTES
from flame_sdk.sim.common.platform_model import Deployment
from flame_sdk.sim.common.web import json_error
from flame_sdk.sim.services.service_auth import message_broker_auth

if TYPE_CHECKING:
    from flame_sdk.sim.services.service_interfaces import NodeContext

log = logging.getLogger("flame_sdk.sim.message_broker")

#: Connect timeout of the webhook client (Reactor Netty's default); the broker sets no response timeout.
CONNECT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Undelivered:
    """A message the broker gave up on: for which subscription and why."""

    message_id: str
    analysis_id: str
    webhook_url: str
    reason: str


class _Retryable(Exception):
    """A 5xx answer of the webhook (the only answer the real broker retries)."""


def _spring_error(status: int, error: str, path: str, message: str = "") -> web.Response:
    return web.json_response({"status": status, "error": error, "message": message, "path": path}, status=status)


class BrokerService:
    """Node-level broker state: webhook subscriptions per analysis, deliveries in flight, what was dropped."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.subscriptions: dict[str, dict[str, str]] = {}  # analysis id -> {subscription id: webhook url}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._relays: asyncio.Queue[tuple[str, str, list[str], Any]] | None = None
        self.delivered = 0
        #: Every message this broker gave up on (also logged).
        self.undelivered: list[Undelivered] = []
        self._analyses: dict[str, dict[str, Any]] = {}
        self._rng = random.Random(f"broker:{node.seed}:{node.node_id}")

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
                headers=self.node.peer_headers, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def create_app(self, deployment: Deployment) -> web.Application:
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES + 64 * 1024,
                              middlewares=[message_broker_auth(self.node.tokens)])
        app.router.add_get(api.HEALTH, self.no_such_route)
        app.router.add_get(api.PARTICIPANTS, self.participants)
        app.router.add_get(api.PARTICIPANTS_SELF, self.participants_self)
        app.router.add_post(api.SUBSCRIPTIONS, self.subscribe)
        app.router.add_get(api.SUBSCRIPTIONS, self.list_subscriptions)
        app.router.add_get(api.SUBSCRIPTION, self.get_subscription)
        app.router.add_delete(api.SUBSCRIPTION, self.delete_subscription)
        app.router.add_post(api.MESSAGES, self.send)
        app.router.add_post(api.BROADCAST, self.broadcast)
        return app

    async def no_such_route(self, request: web.Request) -> web.Response:
        """The broker's API port has no ``/healthz`` (its probes are on the management port)."""
        return _spring_error(404, "Not Found", request.path)

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

    # -- subscriptions --------------------------------------------------------------------------------
    @staticmethod
    def _subscription(subscription_id: str, analysis_id: str, url: str) -> dict[str, str]:
        return {api.SUBSCRIPTION_ID: subscription_id, api.ANALYSIS_ID: analysis_id, api.WEBHOOK_URL: url}

    async def subscribe(self, request: web.Request) -> web.Response:
        analysis_id = request.match_info["analysis_id"]
        try:
            body = json.loads(await request.read())
            url = body[api.WEBHOOK_URL]
            parts = urlsplit(url)
            if not isinstance(url, str) or parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError
        except (ValueError, KeyError, TypeError, RecursionError):
            return _spring_error(400, "Bad Request", request.path, 'expected {"webhookUrl": "http://..."}')
        subscription_id = str(uuid.uuid4())
        self.subscriptions.setdefault(analysis_id, {})[subscription_id] = url
        location = api.PREFIX + api.route(api.SUBSCRIPTION, analysis_id, subscription_id=subscription_id)
        return web.json_response(self._subscription(subscription_id, analysis_id, url), status=api.SUBSCRIBED,
                                 headers={"Location": location})

    async def list_subscriptions(self, request: web.Request) -> web.Response:
        analysis_id = request.match_info["analysis_id"]
        subs = self.subscriptions.get(analysis_id, {})
        return web.json_response([self._subscription(s, analysis_id, u) for s, u in subs.items()])

    def _subscription_id(self, request: web.Request) -> str | None:
        try:
            return str(uuid.UUID(request.match_info["subscription_id"]))
        except ValueError:
            return None

    async def get_subscription(self, request: web.Request) -> web.Response:
        subscription_id = self._subscription_id(request)
        if subscription_id is None:
            return _spring_error(400, "Bad Request", request.path)
        # the real broker looks the id up across analyses (MessageSubscriptionServiceImpl.getSubscription)
        for analysis_id, subs in self.subscriptions.items():
            if subscription_id in subs:
                return web.json_response(self._subscription(subscription_id, analysis_id, subs[subscription_id]))
        return web.Response(status=404)

    async def delete_subscription(self, request: web.Request) -> web.Response:
        subscription_id = self._subscription_id(request)
        if subscription_id is None:
            return _spring_error(400, "Bad Request", request.path)
        self.drop_subscription(subscription_id)
        return web.Response(status=api.UNSUBSCRIBED)

    def drop_subscription(self, subscription_id: str) -> bool:
        """Forget a subscription (the DELETE route; chaos tests use it to lose a node's subscription)."""
        return any(subs.pop(subscription_id, None) is not None for subs in self.subscriptions.values())

    # -- sending --------------------------------------------------------------------------------------
    async def _read_message(self, request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        raw = await request.read()
        if len(raw) > MAX_MESSAGE_BYTES:
            return None, json_error(api.TOO_LARGE,
                                    f"message of {len(raw)} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return None, _spring_error(400, "Bad Request", request.path, "body is not valid JSON")
        if not isinstance(body, dict) or body.get(api.MESSAGE) is None:
            return None, _spring_error(400, "Bad Request", request.path, 'expected {"recipients": [...], "message": {...}}')
        return body, None

    async def send(self, request: web.Request) -> web.Response:
        analysis_id = request.match_info["analysis_id"]
        body, refusal = await self._read_message(request)
        if body is None:
            return refusal or web.Response(status=400)
        recipients = body.get(api.RECIPIENTS)
        if not isinstance(recipients, list) or not recipients or not all(isinstance(r, str) for r in recipients):
            return _spring_error(400, "Bad Request", request.path, "recipients must be a non-empty list of node ids")
        analysis = await self._analysis(analysis_id)
        others = {n["node_id"] for n in analysis["nodes"] if n["node_id"] != self.node.node_id}
        if not set(recipients) <= others:
            return _spring_error(400, "Bad Request", request.path, "list of recipients contains at least one "
                                 "recipients that is not part of the analysis")
        return self._emit(analysis_id, recipients, body[api.MESSAGE])

    async def broadcast(self, request: web.Request) -> web.Response:
        analysis_id = request.match_info["analysis_id"]
        body, refusal = await self._read_message(request)
        if body is None:
            return refusal or web.Response(status=400)
        analysis = await self._analysis(analysis_id)
        others = [n["node_id"] for n in analysis["nodes"] if n["node_id"] != self.node.node_id]
        return self._emit(analysis_id, others, body[api.MESSAGE])

    def _emit(self, analysis_id: str, recipients: list[str], message: Any) -> web.Response:
        """Hand the message to the hub in order (as over the broker's one socket) and answer 202 at once."""
        if self._relays is None:
            self._relays = asyncio.Queue()
            self._spawn(self._relay_worker(self._relays))
        self._relays.put_nowait((str(uuid.uuid4()), analysis_id, recipients, message))
        return web.Response(status=api.ACCEPTED)

    async def _relay_worker(self, queue: asyncio.Queue[tuple[str, str, list[str], Any]]) -> None:
        while True:
            message_id, analysis_id, recipients, message = await queue.get()
            try:
                await self.node.hub_json("POST", f"/analyses/{analysis_id}/messages",
                                         json={"recipients": recipients, "payload": message,
                                               "message_id": message_id})
            except Exception as exc:  # noqa: BLE001 - as the real broker: logged, dropped, not retried
                log.warning("%s: emitting message %s of analysis %s to %s failed: %s", self.node.spec.name,
                            message_id, analysis_id, recipients, exc)

    # -- inbound from the hub -------------------------------------------------------------------------
    async def from_hub(self, request: web.Request) -> web.Response:
        """The hub's delivery over HTTP (node stacks in other processes)."""
        await self.accept(await request.json())
        return web.Response(status=202)

    async def accept(self, envelope: dict[str, Any]) -> None:
        """A message the hub relays to this node: delivered to every subscription of its analysis."""
        message_id = str(envelope.get("message_id") or uuid.uuid4())
        for url in list(self.subscriptions.get(envelope["analysis_id"], {}).values()):
            self._spawn(self._deliver(message_id, envelope["analysis_id"], url, envelope["payload"]))

    def resolve(self, url: str) -> str:
        """``http://nginx-<DEPLOYMENT_NAME>[:80]/...`` -> that deployment's gateway on this node; else ``url``."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        for deployment in self.node.deployments.values():
            if host == f"nginx-{deployment.deployment_name}" and parts.port in (None, 80) and deployment.gateway_url:
                gateway = urlsplit(deployment.gateway_url)
                return urlunsplit((gateway.scheme, gateway.netloc, parts.path, parts.query, parts.fragment))
        return url

    def _backoff(self, retry: int) -> float:
        base: float = api.DELIVERY_FIRST_BACKOFF * 2.0**retry
        return max(0.0, base * (1.0 + api.DELIVERY_JITTER * (2.0 * self._rng.random() - 1.0)))

    async def _post_webhook(self, url: str, payload: Any) -> tuple[int, str]:
        """POST a message to a webhook: status and body. The node's own gateways are called in process (the
        same rules and faults as over HTTP); other webhook hosts over HTTP."""
        local = self.node.ingress(url)
        if local is not None:
            ingress, path = local
            async with ingress.request("POST", path, json_body=payload) as resp:
                return resp.status, await resp.text() if resp.status >= 400 else ""
        async with self.session.post(self.resolve(url), json=payload) as response:
            return response.status, await response.text() if response.status >= 400 else ""

    async def _deliver(self, message_id: str, analysis_id: str, url: str, payload: Any) -> None:
        reason = ""
        for retry in range(api.DELIVERY_ATTEMPTS):
            if retry:
                await asyncio.sleep(self._backoff(retry - 1))
            try:
                status, text = await self._post_webhook(url, payload)
                if api.retries_delivery(status):
                    reason = f"HTTP {status}: {text[:200]}"
                    continue
                if status >= 400:
                    reason = f"HTTP {status}: {text[:200]} (not retried)"
                    break
                self.delivered += 1
                return
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                reason = f"{type(exc).__name__}: {exc} (not retried)"
                break
        else:
            reason = f"exhausted maximum retries of '{api.DELIVERY_RETRIES}' ({reason})"
        self.undelivered.append(Undelivered(message_id, analysis_id, url, reason))
        log.warning("%s: failed to forward message with id '%s' to subscription target at %s: %s",
                    self.node.spec.name, message_id, url, reason)
