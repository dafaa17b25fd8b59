"""aiohttp server for ``/healthz``, ``/webhook``, ``/token_refresh`` and ``/partner_status``.

Everything that arrives here is untrusted until checked: a malformed body gets HTTP 400 with a JSON
``{"error": reason}``, a message from (or an acknowledgement by) a node that is not a partner of the analysis
403, a partner status for a node that is not a partner 400, a token that is not a JWT with a finite expiry
400. No input crashes the server; ``/healthz`` always answers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from flame_sdk.logs import FlameLogger
from flame_sdk.protocol import analysis_api as api
from flame_sdk.protocol.envelope import unbundle, validate_incoming
from flame_sdk.protocol.status import STATUS_VALUES, is_final
from flame_sdk.run_state import RunState
from flame_sdk.tokens import TokenHolder, token_problem

#: Longest ``/healthz`` waits for the logs queued before a final status to reach the PO (seconds). The PO removes
#: the deployment (SIGTERM) as soon as it read a final status, so a log still queued then, such as the error that
#: failed the node, would be lost; the real PO gives one ``/healthz`` read 5 s (httpx' default timeout,
#: PrivateAIM/node-pod-orchestration ``src/status/status.py``, ``_get_internal_deployment_status``).
FINAL_LOGS_WAIT = 3.0
#: Longest wait (seconds) for in-flight requests when the API stops (aiohttp's default is 60 s). aiohttp also
#: waits this long for a connection it accepted just as it stopped listening: that connection's handler waits
#: for a first request that never comes while the node's broker or PO keeps the connection open (seen as a
#: 30 s ``close()`` timeout, about once in 15 runs of the messaging tests). The longest handler, ``/healthz``
#: with a final status, takes at most ``FINAL_LOGS_WAIT``.
SHUTDOWN_TIMEOUT = 5.0


def _bad_request(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=400)


async def _json_body(request: web.Request) -> tuple[Any, str | None]:
    raw = await request.read()
    try:
        return json.loads(raw), None
    except RecursionError:
        return None, "body is nested too deeply"
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"body is not valid JSON ({exc})"


class AnalysisAPI:
    """Routes of the embedded API; ``on_message`` receives validated broker messages and returns why it refused
    one (else None); ``partner_ids`` lists the analysis' other participants. Both are set once the message
    broker client connected. ``logs_sent(timeout)`` waits until the queued logs reached the PO (set once the PO
    client connected)."""

    def __init__(self, state: RunState, tokens: TokenHolder, logger: FlameLogger,
                 on_message: Callable[[dict[str, Any]], str | None] | None = None,
                 partner_ids: Callable[[], list[str]] | None = None) -> None:
        self.state = state
        self.tokens = tokens
        self.logger = logger
        self.on_message = on_message
        self.partner_ids = partner_ids
        self.logs_sent: Callable[[float], Awaitable[bool]] | None = None
        self.runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_get(api.HEALTH, self.healthz)
        app.router.add_post(api.WEBHOOK, self.webhook)
        app.router.add_post(api.TOKEN_REFRESH, self.token_refresh)
        app.router.add_post(api.PARTNER_STATUS, self.partner_status)
        return app

    async def start(self, host: str, port: int) -> None:
        self.runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await self.runner.setup()
        await web.TCPSite(self.runner, host, port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def healthz(self, request: web.Request) -> web.Response:
        status = self.state.health_status()
        if is_final(status) and self.logs_sent is not None:
            await self.logs_sent(FINAL_LOGS_WAIT)  # the logs that explain it first: the PO ends the node next
        response = web.json_response({api.STATUS: status.value,
                                      api.TOKEN_REMAINING_TIME: self.tokens.remaining_seconds()})
        if is_final(status):  # reported once the answer is on its way, not before
            await response.prepare(request)
            await response.write_eof()
            self.state.reported.set()
        return response

    async def webhook(self, request: web.Request) -> web.Response:
        body, error = await _json_body(request)
        error = error or validate_incoming(body)
        if error:
            return _bad_request(f"not a message broker message: {error}")
        if self.on_message is None:
            return web.json_response({"error": "the message broker client is not connected"}, status=503)
        for message in unbundle(body):  # messages bundled by the sender: all of one sender, to this node
            refusal = self.on_message(message)
            if refusal is not None:
                self.logger.log(f"refused a webhook delivery: {refusal}", "warn")
                return web.json_response({"error": refusal}, status=403)
        return web.json_response(api.RECEIVED)

    async def token_refresh(self, request: web.Request) -> web.Response:
        body, error = await _json_body(request)
        if error:
            return _bad_request(error)
        token = body.get(api.TOKEN) if isinstance(body, dict) else None
        if token is None:
            return _bad_request('expected {"token": "<new keycloak token>"}')
        problem = token_problem(token)
        if problem is not None:
            return _bad_request(f"{problem}; expected {{\"token\": \"<new keycloak token>\"}}")
        assert isinstance(token, str)
        self.tokens.set(token.strip())
        self.logger.log("keycloak token refreshed", "debug")
        return web.json_response({"message": api.TOKEN_REFRESHED})

    async def partner_status(self, request: web.Request) -> web.Response:
        body, error = await _json_body(request)
        if error:
            return _bad_request(error)
        statuses = body.get(api.PARTNER_STATUS_FIELD) if isinstance(body, dict) else None
        if not isinstance(statuses, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in statuses.items()
        ):
            return _bad_request('expected {"partner_status": {"<node id>": "<status>", ...}}')
        unknown = sorted({v for v in statuses.values() if v not in STATUS_VALUES})
        if unknown:
            return _bad_request(f"unknown status value(s) {unknown}; known: {list(STATUS_VALUES)}")
        if self.partner_ids is None:
            return web.json_response({"error": "the partners are not known yet (the message broker client is not "
                                               "connected)"}, status=503)
        partners = self.partner_ids()
        strangers = sorted(node for node in statuses if node not in partners)
        if strangers:
            return _bad_request(f"node id(s) {strangers[:10]} are not partners of this analysis; partners: {partners}")
        adopted = self.state.apply_partner_statuses(statuses)
        if adopted is not None:
            status, senders = adopted
            self.logger.log(f"setting status to {status.value} because partner node(s) {senders} are {status.value}")
        return web.json_response({api.STATUS: self.state.health_status().value})
