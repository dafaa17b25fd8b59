"""The per-deployment gateway: what ``nginx-<DEPLOYMENT_NAME>`` is on a real node.

It mounts the node services under their prefixes, checks the bearer token (Kong routes check their
own ``apikey``, the hub adapter and the result service their bearer token), allows only the paths the real
nginx config allows for this analysis and project (any other path gets nginx's static-file answer: 404 for
GET, 405 otherwise), and forwards ``/analysis/*`` to the analysis' embedded API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from flame_sdk.protocol import analysis_api, broker_api, data_api, gateway_api, po_api, result_api
from flame_sdk.sim.common.keycloak import TokenError, bearer_token
from flame_sdk.sim.common.platform_model import Deployment
from flame_sdk.sim.common.web import json_error

if TYPE_CHECKING:
    from flame_sdk.sim.common.keycloak import TokenIssuer
    from flame_sdk.sim.services.broker_service import BrokerService
    from flame_sdk.sim.services.data_service import DataService
    from flame_sdk.sim.services.po_service import POService
    from flame_sdk.sim.services.result_service import StorageService

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def _no_location(request: web.Request) -> web.Response:
    """What nginx answers for a path no ``location`` matches: its static file handler, 404 for GET/HEAD and
    405 for other methods (e.g. where the result service's slash redirects lead)."""
    status, title = (404, "Not Found") if request.method in ("GET", "HEAD") else (405, "Not Allowed")
    html = f"<html>\r\n<head><title>{status} {title}</title></head>\r\n<body>\r\n<center><h1>{status} {title}</h1>" \
           f"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    return web.Response(status=status, text=html, content_type="text/html")


async def _healthy(_: web.Request) -> web.Response:
    return web.Response(text=gateway_api.HEALTH_ANSWER)


def build_gateway_app(deployment: Deployment, tokens: TokenIssuer, *, broker: BrokerService, po: POService,
                      storage: StorageService, data: DataService) -> web.Application:
    """The gateway of one deployment over the node's services."""
    rules = gateway_api.allowed_egress(deployment.analysis_id, deployment.project_id)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path == gateway_api.HEALTH or path.startswith(analysis_api.PREFIX + "/"):
            return await handler(request)
        if not any(rule.match(path) for rule in rules):
            return _no_location(request)
        # Kong checks its apikey, the hub adapter and the result service their bearer token; the rest here
        if not path.startswith((data_api.KONG_PREFIX + "/", data_api.HUB_ADAPTER_PREFIX + "/",
                                result_api.PREFIX + "/")):
            try:
                tokens.verify(bearer_token(request.headers.get("Authorization")), deployment.analysis_id)
            except TokenError as exc:
                return json_error(401, str(exc))
        return await handler(request)

    app = web.Application(middlewares=[guard], client_max_size=1024**3)
    app.router.add_get(gateway_api.HEALTH, _healthy)
    _add_forwarder(app, deployment.analysis_api_url)
    app.add_subapp(broker_api.PREFIX, broker.create_app(deployment))
    app.add_subapp(po_api.PREFIX, po.create_app(deployment))
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
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            async with request.app[ANALYSIS_SESSION].request(request.method, url, params=request.query,
                                                             headers=headers, data=await request.read()) as resp:
                body = await resp.read()
                out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS}
                return web.Response(status=resp.status, body=body, headers=out)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return json_error(502, f"the analysis API at {target} did not answer: {exc!r}")

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", analysis_api.PREFIX + "/{tail:.*}", forward)
