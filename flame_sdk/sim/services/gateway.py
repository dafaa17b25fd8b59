"""The per-deployment gateway: what ``nginx-<DEPLOYMENT_NAME>`` is on a real node.

It does what the node's nginx does (``flame_sdk.protocol.gateway_api``): it picks the location of a path as
nginx does (regular expressions anchored at the start only, prefixes), answers a path without a location
with nginx's static 404/405, lets only the node's broker and PO use ``/analysis`` (nginx: their pod IPs; here:
the node's peer header) and forwards everything else to the node service behind the location. It checks no
token: each service does that itself, answering as the real one does (the broker and the PO with
``service_auth``; the result service, the hub adapter and Kong in their own apps). With a fault plan, every request through it may get a seeded fault
(``flame_sdk.sim.common.faults``).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from flame_sdk.protocol import analysis_api, broker_api, data_api, gateway_api, po_api, result_api
from flame_sdk.protocol.gateway_api import Upstream
from flame_sdk.runtime import bounded
from flame_sdk.sim.common.faults import Fault, fault_status
from flame_sdk.sim.common.platform_model import PEER_HEADER, Deployment
from flame_sdk.sim.services.service_auth import po_auth

if TYPE_CHECKING:
    from flame_sdk.sim.common.faults import FaultInjector
    from flame_sdk.sim.common.keycloak import TokenIssuer
    from flame_sdk.sim.services.broker_service import BrokerService
    from flame_sdk.sim.services.data_service import DataService
    from flame_sdk.sim.services.po_service import POService
    from flame_sdk.sim.services.result_service import StorageService

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def _nginx(status: int, title: str) -> web.Response:
    return web.Response(status=status, text=gateway_api.nginx_page(status, title), content_type="text/html")


def _no_location(request: web.Request) -> web.Response:
    status = gateway_api.no_location_status(request.method)
    return _nginx(status, "Not Found" if status == 404 else "Not Allowed")


def build_gateway_app(deployment: Deployment, tokens: TokenIssuer, *, broker: BrokerService, po: POService,
                      storage: StorageService, data: DataService, peer_secret: str,
                      faults: FaultInjector | None = None) -> tuple[web.Application, GatewayIngress]:
    """The gateway of one deployment over the node's services, and the way in that its node's broker and PO
    use in process (``GatewayIngress``)."""
    routes = _Locations(gateway_api.locations(deployment.analysis_id, deployment.project_id))
    forwarder = AnalysisForwarder(deployment.analysis_api_url)

    def is_peer(request: web.Request) -> bool:
        return hmac.compare_digest(request.headers.get(PEER_HEADER, ""), peer_secret)

    @web.middleware
    async def nginx(request: web.Request, handler: Handler) -> web.StreamResponse:
        location = routes.find(request.path)
        if location is None:
            return _no_location(request)
        if location.ingress != is_peer(request):  # egress is for the analysis pod, ingress for broker and PO
            return _nginx(gateway_api.FORBIDDEN, "Forbidden")
        if location.upstream is Upstream.HEALTH:
            return web.Response(text=gateway_api.HEALTH_ANSWER)
        return await handler(request)

    async def forward(request: web.Request) -> web.Response:
        drop = HOP_HEADERS | {PEER_HEADER.lower()}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in drop}
        status, out, body = await forwarder.forward(request.method, request.match_info["tail"], request.query,
                                                    headers, await request.read())
        return web.Response(status=status, body=body, headers=out)

    async def close_forwarder(_: web.Application) -> None:
        await forwarder.close()

    middlewares = [nginx] if faults is None else [faults.middleware(), nginx]
    app = web.Application(middlewares=middlewares, client_max_size=1024**3)
    app.on_cleanup.append(close_forwarder)
    app.router.add_route("*", analysis_api.PREFIX + "/{tail:.*}", forward)
    app.add_subapp(broker_api.PREFIX, broker.create_app(deployment))
    po_app = po.create_app(deployment)
    po_app.middlewares.append(po_auth(tokens))
    app.add_subapp(po_api.PREFIX, po_app)
    app.add_subapp(result_api.PREFIX, storage.create_app(deployment))
    app.add_subapp(data_api.KONG_PREFIX, data.create_kong_app(deployment))
    app.add_subapp(data_api.HUB_ADAPTER_PREFIX, data.create_hub_adapter_app(deployment))
    return app, GatewayIngress(routes, forwarder, faults)


class _Locations:
    """A gateway's locations, and which one serves each path seen so far (paths repeat: remembered, bounded)."""

    def __init__(self, locations: list[gateway_api.Location], kept: int = 1024) -> None:
        self._locations = locations
        self._seen: dict[str, gateway_api.Location | None] = {}
        self._kept = kept

    def find(self, path: str) -> gateway_api.Location | None:
        if path in self._seen:
            return self._seen[path]
        found = next((loc for loc in self._locations if loc.matches(path)), None)
        if len(self._seen) >= self._kept:
            self._seen.clear()
        self._seen[path] = found
        return found


class AnalysisForwarder:
    """nginx's ``location /analysis``: requests go to the analysis' embedded API with the prefix stripped."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def forward(self, method: str, tail: str, query: Mapping[str, str], headers: Mapping[str, str],
                      body: bytes) -> tuple[int, dict[str, str], bytes]:
        """The analysis' answer (status, headers, body), or nginx's 502 when it does not answer."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), cookie_jar=aiohttp.DummyCookieJar())
        try:
            async with self._session.request(method, f"{self.target}/{tail}", params=query or None, headers=headers,
                                             data=body) as resp:
                answer = await resp.read()
                return resp.status, {k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS}, answer
        except (aiohttp.ClientError, TimeoutError):
            page = gateway_api.nginx_page(gateway_api.BAD_GATEWAY, "Bad Gateway")
            return gateway_api.BAD_GATEWAY, {"Content-Type": "text/html"}, page.encode()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class IngressResponse:
    """The gateway's answer to the node's broker or PO (what they read of an aiohttp response)."""

    def __init__(self, method: str, path: str, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.method, self.path = method, path
        self.status, self.headers, self._body = status, headers, body

    async def read(self) -> bytes:
        return self._body

    async def text(self) -> str:
        return self._body.decode("utf-8", errors="replace")

    async def json(self) -> Any:
        return json.loads(self._body)

    def raise_for_status(self) -> None:
        if self.status >= 400:
            info = aiohttp.RequestInfo(URL(self.path), self.method, CIMultiDictProxy(CIMultiDict()), URL(self.path))
            raise aiohttp.ClientResponseError(info, (), status=self.status,
                                              message=self._body[:200].decode(errors="replace"))


class GatewayIngress:
    """The node's broker and PO calling ``/analysis`` through this gateway without a socket: a hop the SDK never
    sees, so it is in process. It does what an HTTP request through the gateway does: nginx's location and
    ``allow`` rules (the caller is the node's broker or PO), the fault plan's faults (a dropped request or
    response is a broken connection, as over HTTP), then the forward to the analysis API over real HTTP."""

    def __init__(self, routes: _Locations, forwarder: AnalysisForwarder, faults: FaultInjector | None) -> None:
        self._routes = routes
        self._forwarder = forwarder
        self._faults = faults

    @asynccontextmanager
    async def request(self, method: str, path: str, *, json_body: Any = None,
                      timeout: float | None = None) -> AsyncIterator[IngressResponse]:
        """``method path`` with a JSON body as the node's broker or PO sends it; raises what aiohttp raises for a
        broken connection (``aiohttp.ServerDisconnectedError``) or a timeout (``asyncio.TimeoutError``)."""
        answer = self._answer(method, path, json_body)
        yield await bounded(answer, timeout)

    async def _answer(self, method: str, url_path: str, json_body: Any) -> IngressResponse:
        path, _, query = url_path.partition("?")

        def answer(status: int, headers: Mapping[str, str], body: bytes) -> IngressResponse:
            return IngressResponse(method, url_path, status, headers, body)

        location = self._routes.find(path)
        if location is None or not location.ingress:
            status = gateway_api.no_location_status(method) if location is None else gateway_api.FORBIDDEN
            title = {404: "Not Found", 405: "Not Allowed"}.get(status, "Forbidden")
            return answer(status, {"Content-Type": "text/html"}, gateway_api.nginx_page(status, title).encode())
        fault, delay = self._faults.draw() if self._faults is not None else (None, 0.0)
        if fault is Fault.DELAY:
            await asyncio.sleep(delay)
        elif fault is Fault.DROP_REQUEST:
            raise aiohttp.ServerDisconnectedError()
        elif fault is not None and fault is not Fault.DROP_RESPONSE:
            body = json.dumps({"error": f"injected fault: HTTP {fault_status(fault)}"}).encode()
            return answer(fault_status(fault), {"Content-Type": "application/json"}, body)
        body = b"" if json_body is None else json.dumps(json_body).encode()
        headers = {"Content-Type": "application/json"} if json_body is not None else {}
        status, out, content = await self._forwarder.forward(method, path[len(analysis_api.PREFIX) + 1:],
                                                             dict(parse_qsl(query)) if query else {}, headers, body)
        if fault is Fault.DROP_RESPONSE:
            raise aiohttp.ServerDisconnectedError()
        return answer(status, out, content)
