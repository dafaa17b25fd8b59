"""How each node service behind the gateway checks the bearer token itself (nginx checks none).

Each middleware answers a refused token the way that service does; the gateway mounts a service's app with
its check. Sources: PrivateAIM/node-message-broker ``WebSecurityConfig.java`` (Spring OAuth2 resource server:
401, empty body, ``WWW-Authenticate``); PrivateAIM/node-pod-orchestration ``src/api/oauth.py``
(``OAuth2AuthorizationCodeBearer`` plus PyJWT: 401 ``{"detail": "Not authenticated"}``). The result service
and the hub adapter check their tokens in their own apps; Kong checks the ``apikey``.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from flame_sdk.protocol import broker_api, po_api
from flame_sdk.sim.common.keycloak import TokenError, TokenIssuer, bearer_token

Refusal = Callable[[TokenError, bool], web.Response]


def _middleware(tokens: TokenIssuer, analysis_id: str | None, refuse: Refusal,
                open_paths: tuple[str, ...] = ()) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        header = request.headers.get("Authorization")
        try:
            tokens.verify(bearer_token(header), analysis_id)
        except TokenError as exc:
            return refuse(exc, header is None)
        return await handler(request)

    return check


def _spring(exc: TokenError, missing: bool) -> web.Response:
    challenge = "Bearer" if missing else f'Bearer error="invalid_token", error_description="{exc}"'
    return web.Response(status=broker_api.UNAUTHORIZED, headers={broker_api.WWW_AUTHENTICATE: challenge})


def _fastapi_oauth2(exc: TokenError, missing: bool) -> web.Response:
    return web.json_response({"detail": "Not authenticated"}, status=401, headers={"WWW-Authenticate": "Bearer"})


def message_broker_auth(tokens: TokenIssuer) -> Middleware:
    """The broker validates signature and expiry only (any analysis' token passes)."""
    return _middleware(tokens, None, _spring)


def po_auth(tokens: TokenIssuer) -> Middleware:
    """The PO validates signature and expiry on every route but its own ``/po/healthz``."""
    return _middleware(tokens, None, _fastapi_oauth2, open_paths=(po_api.PREFIX + po_api.HEALTH,))
