"""The data path as a node serves it (issue 15): what the real path refuses, and the SDK's answer to it.

Each test first shows the node's behaviour with a plain client (boto3 as the SDK used it before, or raw
HTTP) against the simulator, which plays the analysis nginx, Kong, the minio-gateway plugin's signing and
the hub adapter as they are; then the SDK reading the same data. Facts and sources: docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aiohttp import web
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from flame_sdk import FlameCoreSDK
from flame_sdk.clients.fhir_source import FhirSourceClient
from flame_sdk.data.bundles import next_link
from flame_sdk.errors import DataSourceError
from flame_sdk.runtime import EventLoopThread
from flame_sdk.sim.run.simulation import SimAnalysis, SimConfig, Simulation

FOLDERS = 1500
MIB = 1024 * 1024
BIG = bytes(range(256)) * (4 * MIB // 256)
ODD_KEY = "notes/read me ü+1.txt"
FOREIGN_PROJECT = "00000000-0000-4000-8000-000000000000"


class FhirStandIn:
    """A FHIR server on loopback that behaves like a HAPI server can: XML unless JSON is asked for, a search
    slower than the gateway allows (Observation), and an internal error with HAPI's text (Condition)."""

    def __init__(self, loop: EventLoopThread) -> None:
        self.loop, self.base, self.slow_seconds = loop, "", 3.0
        self._runner: web.AppRunner | None = None

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/baseR4/{type}", self.search)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/baseR4"  # type: ignore[union-attr]

    async def search(self, request: web.Request) -> web.Response:
        rtype = request.match_info["type"]
        if rtype == "Observation":
            await asyncio.sleep(self.slow_seconds)
        if rtype == "Condition":
            outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing",
                       "diagnostics": "HAPI-0389: Failed to call access method: java.lang.NullPointerException"}]}
            return web.json_response(outcome, status=500, content_type="application/fhir+json")
        if "json" not in request.headers.get("Accept", ""):  # HAPI's RestfulServer default encoding is XML
            return web.Response(text='<Bundle xmlns="http://hl7.org/fhir"><total value="1"/></Bundle>',
                                content_type="application/fhir+xml")
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": 1,
                  "link": [{"relation": "self", "url": f"{self.base}/{rtype}"}],
                  "entry": [{"resource": {"resourceType": rtype, "id": "only"}}]}
        return web.json_response(bundle, content_type="application/fhir+json")


@pytest.fixture(scope="module")
def standin() -> Iterator[FhirStandIn]:
    loop = EventLoopThread("fhir-stand-in")
    server = FhirStandIn(loop)
    loop.run(server._start())
    yield server
    if server._runner is not None:
        loop.run(server._runner.cleanup())
    loop.stop()


def files() -> dict[str, Any]:
    objects: dict[str, Any] = {f"folder{n % 5}/sub/{n:04d}.csv": f"{n}\n" for n in range(FOLDERS)}
    objects.update({ODD_KEY: "odd", "a+b.txt": "plus", "x//y.txt": "double", "x/y.txt": "single",
                    "50%.txt": "percent", "big.bin": BIG})
    objects.update({f"spaced/a b {n:02d}.txt": "s" for n in range(6)})
    objects.update({f"spaced/b{n}.txt": "b" for n in range(3)})
    return objects


@pytest.fixture(scope="module")
def sim(standin: FhirStandIn) -> Iterator[Simulation]:
    generator = {"patients": 12, "seed": 3, "id_prefix": "f"}
    node1 = [
        {"kind": "s3", "name": "files", "objects": files()},
        {"kind": "fhir", "name": "far-fhir", "generator": generator, "page_size": 7,
         "server_address": "http://fhir-frontend.example.org/r4"},
        {"kind": "fhir", "name": "near-fhir", "generator": {**generator, "id_prefix": "g"}, "page_size": 5},
        {"kind": "fhir", "name": "foreign-fhir", "generator": generator, "projects": [FOREIGN_PROJECT]},
    ]
    node2 = [{"kind": "fhir", "name": "hapi-like", "url": standin.base}]
    with Simulation(SimConfig(nodes=3, seed=15, node_data=[node1, node2], status_interval=0.2)) as simulation:
        yield simulation


@pytest.fixture(scope="module")
def analysis(sim: Simulation) -> SimAnalysis:
    return sim.create_analysis()


@pytest.fixture(scope="module")
def sdk(analysis: SimAnalysis) -> Iterator[FlameCoreSDK]:
    sdk = FlameCoreSDK(env=analysis.env(analysis.data_node_ids[0]), silent=True)
    yield sdk
    sdk.close()


def plain_boto3(analysis: SimAnalysis, source: str) -> Any:
    """boto3 as the SDK configured it before: unsigned, path-style, apikey header, no retries."""
    deployment = analysis.deployments[analysis.data_node_ids[0]]
    config = Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}, retries={"total_max_attempts": 1},
                    request_checksum_calculation="when_required", response_checksum_validation="when_required")
    client = boto3.session.Session().client("s3", endpoint_url=f"{deployment.gateway_url}/kong/{source}",
                                            region_name="us-east-1", config=config)
    client.meta.events.register("request-created.s3",
                                lambda request, **_: request.headers.__setitem__("apikey", deployment.data_source_token))
    return client


def refusal(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response["ResponseMetadata"]["HTTPStatusCode"], info.value.response["Error"]["Code"]


def requests_of(sdk: FlameCoreSDK, source: str, event: str = "before-send.s3") -> list[str]:
    """Record the S3 requests the SDK's client for ``source`` sends from now on."""
    sent: list[str] = []
    sdk.get_data_client(source).boto3_client().meta.events.register(
        event, lambda request, **_: sent.append(request.url))
    return sent


def get(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# -- 1. query values ----------------------------------------------------------------------------------------
def test_1_listing_values_are_sent_so_the_plugin_signature_matches(analysis, sdk) -> None:
    plain = plain_boto3(analysis, "files")
    assert refusal(lambda: plain.list_objects(Bucket="s3", Prefix="folder1/")) == (403, "SignatureDoesNotMatch")
    keys = asyncio.run(sdk.get_data_client("files").list_keys("folder1/"))
    assert keys == sorted(k for k in files() if k.startswith("folder1/")) and len(keys) == FOLDERS // 5
    sent = requests_of(sdk, "files")
    with pytest.raises(DataSourceError, match=r"prefix 'a b' cannot be sent.*contains ' '.*encodes the raw query"):
        asyncio.run(sdk.get_data_client("files").list_keys("a b"))
    assert sent == []


# -- 2. paging markers and named keys -----------------------------------------------------------------------
@pytest.mark.slow
def test_2_a_bucket_of_1500_objects_in_folders_reads_with_and_without_named_keys(analysis, sdk) -> None:
    plain = plain_boto3(analysis, "files")
    first = plain.list_objects(Bucket="s3", Prefix="folder")
    assert first["IsTruncated"] and len(first["Contents"]) == 1000
    # page 2 after the last key (MinIO's NextMarker; moto's is an opaque token): the marker holds '/'
    marker = first["Contents"][-1]["Key"]
    assert refusal(lambda: plain.list_objects(Bucket="s3", Prefix="folder", Marker=marker)) == (
        403, "SignatureDoesNotMatch")
    listings = requests_of(sdk, "files", "before-send.s3.ListObjects")
    wanted = [f"folder{n % 5}/sub/{n:04d}.csv" for n in (0, 777, 1499)]
    assert sdk.get_s3_data(wanted) == [{k: f"{int(k[-8:-4])}\n".encode() for k in wanted}]
    assert listings == []  # named keys are read directly
    assert sdk.get_s3_data(wanted + ["absent.csv"]) == [{k: f"{int(k[-8:-4])}\n".encode() for k in wanted}]
    assert len(listings) == 1 and "max-keys=21" in listings[0]  # one short listing names what exists
    everything = asyncio.run(sdk.get_data_client("files").get_many(
        [k for k in asyncio.run(sdk.get_data_client("files").list_keys("folder"))]))
    assert len(everything) == FOLDERS and everything["folder4/sub/1499.csv"] == b"1499\n"
    assert len(listings) == 1 + 2  # 1,500 keys in two pages of 1,000, the second after marker 'folder...'


def test_2_a_marker_with_characters_a_query_cannot_carry_is_cut_short(sdk, monkeypatch) -> None:
    expected = [f"spaced/a b {n:02d}.txt" for n in range(6)] + [f"spaced/b{n}.txt" for n in range(3)]
    markers = requests_of(sdk, "files", "before-send.s3.ListObjects")
    assert asyncio.run(sdk.get_data_client("files").list_keys("spaced/", page_size=2)) == expected
    assert "marker=spaced/a&" in markers[1]  # 'spaced/a b 01.txt' cut before the space; seen keys skipped
    monkeypatch.setattr("flame_sdk.clients.s3_source.MAX_LIST_KEYS", 3)  # stands for S3's 1000
    with pytest.raises(DataSourceError, match=r"stuck after 'spaced/a b 02.txt': more than 3 keys start with "
                                              r"'spaced/a' followed by characters.*contains ' '"):
        asyncio.run(sdk.get_data_client("files").list_keys("spaced/", page_size=2))


# -- 3. keys the plugin cannot sign -------------------------------------------------------------------------
def test_3_unreadable_keys_are_refused_before_any_request(analysis, sdk) -> None:
    plain = plain_boto3(analysis, "files")
    assert refusal(lambda: plain.get_object(Bucket="s3", Key=ODD_KEY)) == (400, "400")  # the space breaks the line
    assert refusal(lambda: plain.get_object(Bucket="s3", Key="a+b.txt")) == (403, "SignatureDoesNotMatch")
    assert plain.get_object(Bucket="s3", Key="x//y.txt")["Body"].read() == b"single"  # '//' collapsed: wrong object
    assert plain.get_object(Bucket="s3", Key="50%.txt")["Body"].read() == b"percent"  # '%' passes still encoded
    sent = requests_of(sdk, "files")
    with pytest.raises(DataSourceError) as info:
        sdk.get_s3_data(["x/y.txt", ODD_KEY, "a+b.txt", "x//y.txt"])
    text = str(info.value)
    assert "3 key(s) cannot be read" in text and "(has ' ', '+', 'ü')" in text and "signs the decoded path" in text
    assert "'x//y.txt' (has an empty, '.' or '..' path segment)" in text and "collapse" in text and sent == []
    with pytest.raises(DataSourceError, match=r"S3 source 'files': 9 key\(s\).*name the others in get_s3_data"):
        sdk.get_s3_data([])
    assert sdk.get_s3_data(["50%.txt", "x/y.txt"]) == [{"50%.txt": b"percent", "x/y.txt": b"single"}]


# -- 4. large objects, buffered whole in Kong behind a 60 s read limit ---------------------------------------
@pytest.mark.slow
def test_4_large_objects_are_read_in_parts_that_fit_the_gateway_read_limit(sim, analysis) -> None:
    data = sim.node(analysis.data_node_ids[0]).data
    data.read_timeout, data.s3_upstream_rate = 1.0, 2 * MIB  # the real limit is 60 s; the whole object takes 2 s
    messages: list[str] = []
    sdk = FlameCoreSDK(env=analysis.env(analysis.data_node_ids[0]), silent=True)
    try:
        plain = plain_boto3(analysis, "files")
        assert refusal(lambda: plain.get_object(Bucket="s3", Key="big.bin")) == (504, "504")
        client = sdk.get_data_client("files")
        client.api.s3_part_size = len(BIG)  # one part of 4 MiB: 504, then parts of 1 MiB (0.5 s each)
        client.api.logger.log = lambda msg, *args, **kwargs: messages.append(msg)  # type: ignore[method-assign]
        ranges = []
        client.boto3_client().meta.events.register(
            "before-send.s3.GetObject", lambda request, **_: ranges.append(request.headers["Range"].decode()))
        assert sdk.get_s3_data(["big.bin"]) == [{"big.bin": BIG}]
        assert ranges == [f"bytes=0-{4 * MIB - 1}"] + [f"bytes={n * MIB}-{(n + 1) * MIB - 1}" for n in range(4)]
        assert any("timed out at the gateway; reading 1048576 bytes at a time" in m for m in messages)
    finally:
        data.read_timeout, data.s3_upstream_rate = 60.0, None
        sdk.close()


# -- 5. FHIR paging for any server base ---------------------------------------------------------------------
def test_5_fhir_pages_follow_links_whatever_base_the_server_uses(analysis, sdk) -> None:
    deployment = analysis.deployments[analysis.data_node_ids[0]]
    status, page = get(f"{deployment.gateway_url}/kong/far-fhir/fhir/Patient",
                       {"apikey": deployment.data_source_token, "Accept": "application/fhir+json"})
    assert status == 200 and next_link(page).startswith("http://fhir-frontend.example.org/r4?_getpages=")  # untouched
    result = sdk.get_fhir_data(["Patient"])
    assert [len(r["Patient"]["entry"]) for r in result] == [12, 12]  # far-fhir (7 a page), near-fhir (5 a page)


def test_5_fetch_fhir_page_knows_which_of_several_sources_gave_a_link(sdk) -> None:
    args = {"col_key_seq": "resource.code.coding.code", "value_key_seq": "resource.valueQuantity.value",
            "input_resource": "Observation", "row_key_seq": "resource.subject.reference", "output_type": "dict"}
    for name in ("far-fhir", "near-fhir"):
        first = asyncio.run(sdk.get_data_client(name).fetch_page("Observation?code=8480-6&_count=3"))
        second = sdk._run(sdk._core._parts.data.fetch_fhir_page(next_link(first)))
        ids = [e["resource"]["id"] for e in second["entry"]]
        assert ids and all(i.startswith("f-" if name == "far-fhir" else "g-") for i in ids)
        whole = sdk.get_fhir_data(["Observation?code=8480-6"])[0 if name == "far-fhir" else 1]
        assert sdk.fhir_to_csv(first, **args) == sdk.fhir_to_csv(whole["Observation?code=8480-6"], **args)


# -- 6. timeouts, 5xx and the Accept header ------------------------------------------------------------------
def test_6_fhir_errors_name_the_source_the_query_and_the_server(sim, analysis, standin) -> None:
    data = sim.node(analysis.data_node_ids[1]).data
    sdk = FlameCoreSDK(env=analysis.env(analysis.data_node_ids[1]), silent=True)
    data.read_timeout = 0.5  # the real limit is 60 s; the stand-in answers Observation after 3 s
    try:
        assert sdk.get_fhir_data(["Patient"])[0]["Patient"]["total"] == 1  # JSON because the SDK asks for it
        with pytest.raises(DataSourceError, match=r"'hapi-like' answered query '/Condition' with HTTP 500: "
                                                  r"HAPI-0389: Failed to call access method"):
            sdk.get_fhir_data(["Condition"])
        with pytest.raises(DataSourceError, match=r"'hapi-like' answered query '/Observation\?code=x' with HTTP 504: "
                                                  r"504 Gateway Time-out \(from nginx\).*60 s read limit"):
            sdk.get_fhir_data(["Observation?code=x"])
    finally:
        data.read_timeout = 60.0
        sdk.close()


# -- 7. Kong's acl plugin and the hub adapter's error shapes ------------------------------------------------
def test_7_foreign_sources_get_the_acl_403_and_the_hub_adapter_answers_detail_objects(sim, analysis, sdk) -> None:
    deployment = analysis.deployments[analysis.data_node_ids[0]]
    assert "foreign-fhir" not in [s["name"] for s in sdk.get_data_sources()]
    status, body = get(f"{deployment.gateway_url}/kong/foreign-fhir/fhir/Patient",
                       {"apikey": deployment.data_source_token})
    assert (status, body) == (403, {"message": "You cannot consume this service"})
    foreign = FhirSourceClient(sdk._core._parts.data, {"id": "x", "name": "foreign-fhir"})
    with pytest.raises(DataSourceError, match=r"HTTP 403: You cannot consume this service \(Kong's acl plugin: "
                                              r"the source is not linked to this analysis' project\)"):
        asyncio.run(foreign.fetch_page("Patient"))
    adapter = f"{deployment.gateway_url}/hub-adapter/kong/datastore"
    bearer = {"Authorization": f"Bearer {deployment.keycloak_token}"}
    assert get(f"{adapter}/{analysis.project_id}-x", bearer) == (404, {"detail": {
        "message": f"No data store or project found matching '{analysis.project_id}-x'", "service": "Kong",
        "status_code": 404}})
    assert get(f"{adapter}/{analysis.project_id}", {"Authorization": "Bearer nope"}) == (401, {"detail": {
        "message": "Unable to parse authentication token", "service": "Auth", "status_code": 401}})
    assert get(f"{adapter}/{analysis.project_id}", {}) == (401, {"detail": "Not authenticated"})
