"""The per-deployment gateway: what ``nginx-<DEPLOYMENT_NAME>`` is on a real node.

It mounts the node services under their prefixes, checks the bearer token (Kong routes check their
own ``apikey``, the result service its token), allows only the paths the real nginx config allows for
this analysis and project (any other path gets nginx's static-file answer: 404 for GET, 405 otherwise),
and forwards ``/analysis/*`` to the analysis' embedded API.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from flame_sdk.sim.model import Deployment
from flame_sdk.sim.tokens import TokenError, bearer_token
from flame_sdk.sim.web import json_error

if TYPE_CHECKING:
    from flame_sdk.sim.node import SimNode

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def allowed_paths(deployment: Deployment) -> list[re.Pattern[str]]:
    """The egress paths of the real nginx config, for one analysis."""
    a, p = re.escape(deployment.analysis_id), re.escape(deployment.project_id)
    return [re.compile(x) for x in (
        rf"^/message-broker/analyses/{a}/participants(/self)?$",
        rf"^/message-broker/analyses/{a}/messages(/subscriptions|/broadcast)?$",
        r"^/message-broker/healthz$",
        r"^/po/stream_logs$",
        r"^/storage/(final|local|intermediate)(/.*)?$",
        rf"^/hub-adapter/kong/datastore/{p}$",
        r"^/kong/.+$",
    )]



def _no_location(request: web.Request) -> web.Response:
    """What nginx answers for a path no ``location`` matches: its static file handler, 404 for GET/HEAD and
    405 for other methods (e.g. where the result service's slash redirects lead)."""
    status, title = (404, "Not Found") if request.method in ("GET", "HEAD") else (405, "Not Allowed")
    html = f"<html>\r\n<head><title>{status} {title}</title></head>\r\n<body>\r\n<center><h1>{status} {title}</h1>" \
           f"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    return web.Response(status=status, text=html, content_type="text/html")


async def _healthy(_: web.Request) -> web.Response:
    return web.Response(text="healthy")


def build_gateway_app(node: SimNode, deployment: Deployment) -> web.Application:
    rules = allowed_paths(deployment)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        if path == "/healthz" or path.startswith("/analysis/"):
            return await handler(request)
        if not any(rule.match(path) for rule in rules):
            return _no_location(request)
        if not path.startswith(("/kong/", "/storage/")):  # the result service checks its token itself
            try:
                node.tokens.verify(bearer_token(request.headers.get("Authorization")), deployment.analysis_id)
            except TokenError as exc:
                return json_error(401, str(exc))
        return await handler(request)

    app = web.Application(middlewares=[guard], client_max_size=1024**3)
    app.router.add_get("/healthz", _healthy)
    _add_forwarder(app, deployment.analysis_api_url)
    app.add_subapp("/message-broker", node.broker.create_app(deployment))
    app.add_subapp("/po", node.po.create_app(deployment))
    app.add_subapp("/storage", node.storage.create_app(deployment))
    app.add_subapp("/kong", node.data.create_kong_app(deployment))
    app.add_subapp("/hub-adapter", node.data.create_hub_adapter_app(deployment))
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
    app.router.add_route("*", "/analysis/{tail:.*}", forward)
