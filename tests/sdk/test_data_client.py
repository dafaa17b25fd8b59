"""DataApiClient against data services that misbehave: paging loops, endless paging, bad listings.

The upstreams here are small aiohttp servers on loopback that play a broken FHIR server or hub adapter
(third-party services the SDK must survive), plus the simulator for the page bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from flame_sdk.clients.data import DataApiClient
from flame_sdk.config import NodeConfig
from flame_sdk.errors import DataSourceError
from flame_sdk.http import RetryPolicy, ServiceClient
from flame_sdk.logs import FlameLogger
from flame_sdk.tokens import TokenHolder

FHIR_SOURCE = {"id": "f1", "name": "loopy", "tags": ["type:fhir"]}


def config(base_url: str, project_id: str = "p1", token: str = "key") -> NodeConfig:
    return NodeConfig(analysis_id="a1", project_id=project_id, keycloak_token="t", data_source_token=token,
                      deployment_name=None, base_url=base_url)


async def with_client(base_url: str, cfg: NodeConfig, body: Callable[[DataApiClient], Awaitable[Any]],
                      bearer: str = "t", **kwargs: Any) -> Any:
    async with aiohttp.ClientSession() as session:
        retry = RetryPolicy(deadline=2.0)
        kong = ServiceClient(session, base_url + "/kong", "DataApi", headers={"apikey": cfg.data_source_token or ""},
                             retry=retry)
        hub = ServiceClient(session, base_url + "/hub-adapter", "HubAdapter", token=TokenHolder(bearer), retry=retry)
        client = DataApiClient(kong, hub, cfg, FlameLogger(silent=True), **kwargs)
        await client.connect()
        return await body(client)


async def serve(routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
                body: Callable[[str], Awaitable[Any]]) -> Any:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        return await body(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}")  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


def listing(sources: Any) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(sources)

    return handler


def test_a_next_link_back_to_a_fetched_page_is_a_loop_error() -> None:
    async def fhir(request: web.Request) -> web.Response:
        offset = int(request.query.get("_offset", "0"))
        target = 10 if offset == 0 else 0  # page 2 links back to page 1
        return web.json_response({"resourceType": "Bundle", "type": "searchset", "entry": [], "link": [
            {"relation": "next", "url": f"http://elsewhere/fhir/Patient?_offset={target}"}]})

    async def body(base: str) -> Any:
        return await with_client(base, config(base), lambda c: c.get_fhir_data(["Patient?_offset=0"]))

    routes = {"/hub-adapter/kong/datastore/p1": listing({"data": [FHIR_SOURCE]}), "/kong/loopy/fhir/Patient": fhir}
    with pytest.raises(DataSourceError, match="paged in a loop.*already fetched"):
        asyncio.run(serve(routes, body))


def test_page_count_is_bounded(sim) -> None:
    analysis = sim.create_analysis()
    deployment = analysis.deployments[analysis.data_node_ids[0]]
    cfg = config(deployment.gateway_url, analysis.project_id, deployment.data_source_token)

    async def body(client: DataApiClient) -> Any:
        return await client.get_fhir_data(["Observation?_count=10"])

    with pytest.raises(DataSourceError, match="more than 5 pages"):
        asyncio.run(with_client(deployment.gateway_url, cfg, body, bearer=deployment.keycloak_token, max_pages=5))


@pytest.mark.parametrize("answer", [{"items": []}, {"data": [{"id": "x"}]}, ["not", "a", "dict"]])
def test_an_unusable_source_listing_fails_connect(answer: Any) -> None:
    async def body(base: str) -> Any:
        return await with_client(base, config(base), lambda c: asyncio.sleep(0))

    with pytest.raises(DataSourceError, match="expected {'data': \\[Kong service objects"):
        asyncio.run(serve({"/hub-adapter/kong/datastore/p1": listing(answer)}, body))


def test_untyped_sources_are_skipped_and_not_fhir_answers_rejected() -> None:
    async def not_fhir(_: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    async def body(base: str) -> Any:
        async def use(client: DataApiClient) -> Any:
            assert [s["name"] for s in client.get_data_sources()] == ["loopy", "untyped", "legacy-s3"]
            assert client.get_data_client("legacy-s3").kind == "s3"
            with pytest.raises(ValueError, match="known ids: f1 \\(loopy, fhir\\), l1 \\(legacy-s3, s3\\)$"):
                client.get_data_client("untyped")
            return await client.get_fhir_data(["Patient"])

        return await with_client(base, config(base), use)

    sources = {"data": [FHIR_SOURCE, {"id": "u1", "name": "untyped", "tags": []}, {"id": "l1", "name": "legacy-s3"}]}
    routes = {"/hub-adapter/kong/datastore/p1": listing(sources), "/kong/loopy/fhir/Patient": not_fhir}
    with pytest.raises(DataSourceError, match="not a FHIR resource"):
        asyncio.run(serve(routes, body))


def test_hapi_style_next_links_are_followed_through_the_route() -> None:
    """HAPI links its pages as ``<its own base>/fhir?_getpages=...``: the client maps them onto the Kong route."""
    pages = {None: (["a", "b"], "p1"), "p1": (["c"], "p2"), "p2": (["d"], None)}

    async def fhir(request: web.Request) -> web.Response:
        ids, following = pages[request.query.get("_getpages")]
        link = [{"relation": "next", "url": f"http://hapi.internal:8080/fhir?_getpages={following}&_count=2"}]
        return web.json_response({"resourceType": "Bundle", "type": "searchset", "total": 4,
                                  "link": link if following else [],
                                  "entry": [{"resource": {"resourceType": "Patient", "id": i}} for i in ids]})

    async def body(base: str) -> Any:
        return await with_client(base, config(base), lambda c: c.get_fhir_data(["Patient"]))

    routes = {"/hub-adapter/kong/datastore/p1": listing({"data": [FHIR_SOURCE]}),
              "/kong/loopy/fhir/Patient": fhir, "/kong/loopy/fhir": fhir}
    result = asyncio.run(serve(routes, body))
    assert [e["resource"]["id"] for e in result[0]["Patient"]["entry"]] == ["a", "b", "c", "d"]
