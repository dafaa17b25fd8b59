"""``flame-sim seed`` and the data API against external stores, as in compose (HAPI FHIR and MinIO).

No HAPI or MinIO here: moto's S3 server stands in for MinIO (same S3 protocol, same client code), and
``HapiStandIn`` for HAPI FHIR: it takes transaction Bundles of PUTs and answers searches with HAPI's paging
(``<base>?_getpages=<id>&_getpagesoffset=<n>&_count=<m>`` next links, which name no resource type), so
the Kong proxy's link rewriting and the SDK's page following are exercised as against HAPI.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from aiohttp import web

from flame_sdk.runtime import EventLoopThread
from flame_sdk.sim.data.data_sources import default_data_sources, parse_data_sources
from flame_sdk.sim.run.seed import seed
from flame_sdk.sim.run.topology import S3_KEY_VARS, compose_topology
from flame_sdk.sim.services.fhir_server import FhirStore
from flame_sdk.sim.services.s3_server import S3Endpoint

FHIR_JSON = "application/fhir+json"
SCAN = 1000


class HapiStandIn:
    """A FHIR server on a loopback port that writes like HAPI (transactions) and pages like HAPI."""

    def __init__(self, loop: EventLoopThread, page_size: int = 50) -> None:
        self.loop = loop
        self.page_size = page_size
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.transactions = 0
        self._store: FhirStore | None = None
        self._pages: dict[str, list[dict[str, Any]]] = {}
        self.base = ""
        self._runner: web.AppRunner | None = None

    def start(self) -> HapiStandIn:
        self.loop.run(self._start())
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/fhir/metadata", self.metadata)
        app.router.add_post("/fhir", self.transaction)
        app.router.add_get("/fhir", self.page)
        app.router.add_get("/fhir/{type}", self.search)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/fhir"  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._runner is not None:
            self.loop.run(self._runner.cleanup())

    @staticmethod
    def _json(body: dict[str, Any], status: int = 200) -> web.Response:
        return web.Response(status=status, body=json.dumps(body).encode(), content_type=FHIR_JSON)

    async def metadata(self, _: web.Request) -> web.Response:
        return self._json({"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"})

    async def transaction(self, request: web.Request) -> web.Response:
        bundle = await request.json()
        if bundle.get("type") != "transaction":
            return self._json({"resourceType": "OperationOutcome"}, 400)
        for entry in bundle["entry"]:
            resource, url = entry["resource"], entry["request"]["url"]
            assert entry["request"]["method"] == "PUT" and url == f"{resource['resourceType']}/{resource['id']}"
            reference = (resource.get("subject") or {}).get("reference")
            if reference and tuple(reference.split("/")) not in self.resources:
                pending = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]}
                if tuple(reference.split("/")) not in pending:  # HAPI enforces referential integrity
                    return self._json({"resourceType": "OperationOutcome", "issue": [{"diagnostics": reference}]}, 400)
            self.resources[(resource["resourceType"], resource["id"])] = resource
        self._store = None
        self.transactions += 1
        return self._json({"resourceType": "Bundle", "type": "transaction-response",
                           "entry": [{"response": {"status": "200 OK"}} for _ in bundle["entry"]]})

    async def search(self, request: web.Request) -> web.Response:
        rtype = request.match_info["type"]
        params = [(k, v) for k, v in parse_qsl(request.query_string) if k not in ("_count", "_offset")]
        count = int(request.query.get("_count", self.page_size))
        self._store = self._store or FhirStore(list(self.resources.values()), SCAN)
        if ("_summary", "count") in params:
            return self._json(self._store.search(rtype, params, self.base))
        matches: list[dict[str, Any]] = []
        while True:
            page = self._store.search(rtype, params + [("_count", str(SCAN)), ("_offset", str(len(matches)))],
                                      self.base)
            matches += page.get("entry", [])
            if len(matches) >= page["total"] or not page.get("entry"):
                break
        page_id = str(uuid.uuid4())
        self._pages[page_id] = matches
        return self._json(self._bundle(page_id, 0, count))

    async def page(self, request: web.Request) -> web.Response:
        page_id = request.query["_getpages"]
        return self._json(self._bundle(page_id, int(request.query["_getpagesoffset"]), int(request.query["_count"])))

    def _bundle(self, page_id: str, offset: int, count: int) -> dict[str, Any]:
        matches = self._pages[page_id]
        links = [{"relation": "self", "url": f"{self.base}?_getpages={page_id}&_getpagesoffset={offset}"}]
        if offset + count < len(matches):
            query = urlencode({"_getpages": page_id, "_getpagesoffset": offset + count, "_count": count,
                               "_bundletype": "searchset"})
            links.append({"relation": "next", "url": f"{self.base}?{query}"})
        return {"resourceType": "Bundle", "type": "searchset", "total": len(matches), "link": links,
                "entry": matches[offset:offset + count]}


@pytest.fixture(scope="module")
def loop() -> Iterator[EventLoopThread]:
    thread = EventLoopThread("hapi-stand-in")
    yield thread
    thread.stop()


@pytest.fixture
def hapi(loop) -> Iterator[HapiStandIn]:
    server = HapiStandIn(loop).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def minio() -> Iterator[S3Endpoint]:
    with S3Endpoint() as endpoint:
        yield endpoint


def external_sources(index: int, seed_value: int, hapi: HapiStandIn) -> list[dict[str, Any]]:
    """The compose topology's sources of data node ``index``, pointed at the local stand-ins."""
    node = compose_topology(3, seed_value).nodes[index]
    return [{**s, "url": hapi.base} if s["kind"] == "fhir" else dict(s) for s in node.data_sources]


def test_compose_sources_are_the_simulator_defaults_moved_to_external_stores():
    topology = compose_topology(3, 7)
    assert topology.nodes[0].data_sources == []
    for index, node in enumerate(topology.nodes[1:], start=1):
        plain = [{k: v for k, v in s.items() if k not in ("url", "bucket")} for s in node.data_sources]
        assert plain == default_data_sources(index, 7)
        kinds = {s["kind"]: s for s in node.data_sources}
        assert kinds["fhir"]["url"] == f"http://fhir-{node.name}:8080/fhir"
        assert kinds["s3"]["bucket"] == kinds["s3"]["name"]


def test_seed_loads_fhir_and_s3_and_is_idempotent(tmp_path, hapi, minio, monkeypatch):
    topology = compose_topology(3, 7)
    sources = external_sources(1, 7, hapi)
    raw = topology.to_dict()
    raw["s3_endpoint"] = minio.url
    raw["nodes"] = [dict(n, data_sources=sources if n["name"] == "node-1" else []) for n in raw["nodes"]]
    path = tmp_path / "topology.json"
    path.write_text(json.dumps(raw))
    for name in S3_KEY_VARS:
        monkeypatch.setenv(name, "moto-accepts-any")
    assert seed(path, timeout=30) == 0
    expected = parse_data_sources(sources)
    fhir = next(s for s in expected if s.kind == "fhir")
    s3 = next(s for s in expected if s.kind == "s3")
    assert len(hapi.resources) == len(fhir.fhir_resources())
    stored = {o["Key"]: minio.client().get_object(Bucket=s3.bucket, Key=o["Key"])["Body"].read()
              for o in minio.client().list_objects_v2(Bucket=s3.bucket)["Contents"]}
    assert stored == s3.s3_objects()
    assert seed(path, timeout=30) == 0  # again: same resources (PUT by id), bucket already there
    assert len(hapi.resources) == len(fhir.fhir_resources())


def test_seed_fails_clearly_when_a_store_never_answers(tmp_path, monkeypatch, capsys):
    topology = compose_topology(3, 7)
    raw = topology.to_dict()
    raw["nodes"][1]["data_sources"] = [dict(s, url="http://127.0.0.1:9/fhir") for s in raw["nodes"][1]["data_sources"]
                                       if s["kind"] == "fhir"]
    raw["nodes"][2]["data_sources"] = []
    path = tmp_path / "topology.json"
    path.write_text(json.dumps(raw))
    for name in S3_KEY_VARS:
        monkeypatch.setenv(name, "x")
    assert seed(path, timeout=1) == 1
    assert "did not answer /metadata in time" in capsys.readouterr().err


def test_seed_without_s3_credentials_names_the_variables(tmp_path, monkeypatch, capsys):
    path = tmp_path / "topology.json"
    path.write_text(json.dumps(compose_topology(3, 7).to_dict()))
    for name in S3_KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    assert seed(path, timeout=1) == 1
    err = capsys.readouterr().err
    assert all(name in err for name in S3_KEY_VARS), err


@pytest.mark.parametrize(("raw", "message"), [
    ({"kind": "fhir", "name": "x-fhir", "url": "fhir-node-1:8080/fhir"}, "'url' must be the http(s) base URL"),
    ({"kind": "s3", "name": "x-s3", "bucket": "Node_1"}, "'bucket' must be an S3 bucket name"),
    ({"kind": "fhir", "name": "x-fhir", "bucket": "b1"}, "unknown key(s) ['bucket']"),
])
def test_external_store_keys_are_validated_with_the_fix_named(raw, message):
    with pytest.raises(ValueError) as info:
        parse_data_sources([raw])
    assert message in str(info.value)
