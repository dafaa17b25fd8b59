"""ServiceClient: which failures are retried, the deadline, and token swaps (against a loopback server)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from flame_sdk.errors import ServiceHTTPError, ServiceUnavailableError, TokenExpiredError
from flame_sdk.http import RetryPolicy, ServiceClient
from flame_sdk.tokens import TokenHolder, token_expiry

FAST = RetryPolicy(deadline=2.0, initial_wait=0.01, max_wait=0.05)


async def _serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


def _run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status):
    calls = []

    async def handler(request):
        calls.append(1)
        return web.json_response({"ok": True}) if len(calls) > 2 else web.Response(status=status)

    async def scenario():
        runner, url = await _serve(handler)
        async with aiohttp.ClientSession() as session:
            assert await ServiceClient(session, url, "svc", retry=FAST).json("GET", "/x") == {"ok": True}
        await runner.cleanup()

    _run(scenario())
    assert len(calls) == 3


def test_client_errors_are_not_retried_and_name_the_service():
    calls = []

    async def handler(request):
        calls.append(1)
        return web.Response(status=400, text="recipients must be a list")

    async def scenario():
        runner, url = await _serve(handler)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ServiceHTTPError, match="MessageBroker rejected POST .* 400: recipients"):
                await ServiceClient(session, url, "MessageBroker", retry=FAST).send("POST", "/m")
        await runner.cleanup()

    _run(scenario())
    assert len(calls) == 1


def test_deadline_bounds_retries_of_an_unreachable_service():
    async def scenario():
        async with aiohttp.ClientSession() as session:
            client = ServiceClient(session, "http://127.0.0.1:9", "PO service", retry=FAST)
            with pytest.raises(ServiceUnavailableError, match="PO service is unreachable"):
                await client.send("POST", "/stream_logs", json={})

    _run(scenario())


def test_token_is_read_at_send_time_and_401_after_a_swap_is_retried():
    holder = TokenHolder("old")
    seen = []

    async def handler(request):
        seen.append(request.headers["Authorization"])
        if request.headers["Authorization"] == "Bearer old":
            holder.set("new")  # the refresh lands while this request is in flight
            return web.Response(status=401)
        return web.json_response({})

    async def scenario():
        runner, url = await _serve(handler)
        async with aiohttp.ClientSession() as session:
            client = ServiceClient(session, url, "svc", token=holder, retry=FAST)
            assert await client.json("GET", "/") == {}
            holder_stale = TokenHolder("old")
            with pytest.raises(TokenExpiredError):
                await ServiceClient(session, url, "svc", token=holder_stale, retry=FAST).json("GET", "/")
        await runner.cleanup()

    _run(scenario())
    assert seen[:2] == ["Bearer old", "Bearer new"]


def test_token_expiry_parsing():
    assert token_expiry("not-a-jwt") is None
    assert token_expiry("a.eyJleHAiOiAxMDB9.c") == 100.0  # {"exp": 100}
    assert TokenHolder("a.eyJleHAiOiAxMDB9.c").remaining_seconds() == 0


def test_403_is_a_token_refusal_only_where_the_service_says_so():
    holder = TokenHolder("old")
    seen = []

    async def handler(request):
        seen.append(request.headers["Authorization"])
        if request.headers["Authorization"] == "Bearer old":
            holder.set("new")
            return web.json_response({"detail": "JWT is malformed"}, status=403)
        return web.json_response({})

    async def scenario():
        runner, url = await _serve(handler)
        async with aiohttp.ClientSession() as session:
            plain = ServiceClient(session, url, "svc", token=TokenHolder("old"), retry=FAST)
            with pytest.raises(ServiceHTTPError) as caught:
                await plain.json("GET", "/")
            assert not isinstance(caught.value, TokenExpiredError)
            holder.set("old")
            result_service = ServiceClient(session, url, "svc", token=holder, retry=FAST).with_auth_statuses({401, 403})
            assert await result_service.json("GET", "/") == {}  # swapped during the request: retried once
            stale = plain.with_auth_statuses({401, 403})
            with pytest.raises(TokenExpiredError, match="403"):
                await stale.json("GET", "/")
        await runner.cleanup()

    _run(scenario())
    assert seen[1:3] == ["Bearer old", "Bearer new"]
