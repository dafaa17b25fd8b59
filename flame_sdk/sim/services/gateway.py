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

import hmac
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from flame_sdk.protocol import analysis_api, broker_api, data_api, gateway_api, po_api, result_api
from flame_sdk.protocol.gateway_api import Upstream
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
                      faults: FaultInjector | None = None) -> web.Application:
    """The gateway of one deployment over the node's services."""

    def is_peer(request: web.Request) -> bool:
        return hmac.compare_digest(request.headers.get(PEER_HEADER, ""), peer_secret)

    @web.middleware
    async def nginx(request: web.Request, handler: Handler) -> web.StreamResponse:
        location = gateway_api.find_location(deployment.analysis_id, deployment.project_id, request.path)
        if location is None:
            return _no_location(request)
        if location.ingress != is_peer(request):  # egress is for the analysis pod, ingress for broker and PO
            return _nginx(gateway_api.FORBIDDEN, "Forbidden")
        if location.upstream is Upstream.HEALTH:
            return web.Response(text=gateway_api.HEALTH_ANSWER)
        return await handler(request)

    middlewares = [nginx] if faults is None else [faults.middleware(), nginx]
    app = web.Application(middlewares=middlewares, client_max_size=1024**3)
    _add_forwarder(app, deployment.analysis_api_url)
    app.add_subapp(broker_api.PREFIX, broker.create_app(deployment))
    po_app = po.create_app(deployment)
    po_app.middlewares.append(po_auth(tokens))
    app.add_subapp(po_api.PREFIX, po_app)
    app.add_subapp(result_api.PREFIX, storage.create_app(deployment))
    app.add_subapp(data_api.KONG_PREFIX, data.create_kong_app(deployment))
    app.add_subapp(data_api.HUB_ADAPTER_PREFIX, data.create_hub_adapter_app(deployment))
    return app


ANALYSIS_SESSION = web.AppKey("analysis_session", aiohttp.ClientSession)


def _add_forwarder(app: web.Application, target: str) -> None:
    """Route ``/analysis/*`` to ``target`` + the rest of the path (nginx strips the prefix the same way)."""

    async def session_ctx(app: web.Application) -> Any:
        app[ANALYSIS_SESSION] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        yield
        await app[ANALYSIS_SESSION].close()

    async def forward(request: web.Request) -> web.Response:
        url = f"{target.rstrip('/')}/{request.match_info['tail']}"
        drop = HOP_HEADERS | {PEER_HEADER.lower()}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in drop}
        try:
            async with request.app[ANALYSIS_SESSION].request(request.method, url, params=request.query,
                                                             headers=headers, data=await request.read()) as resp:
                body = await resp.read()
                out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS}
                return web.Response(status=resp.status, body=body, headers=out)
        except (aiohttp.ClientError, TimeoutError):
            return _nginx(gateway_api.BAD_GATEWAY, "Bad Gateway")

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", analysis_api.PREFIX + "/{tail:.*}", forward)
