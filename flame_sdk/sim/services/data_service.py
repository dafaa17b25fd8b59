"""Node data API: Kong routes to FHIR and S3 sources, and the hub adapter's datastore listing.

Per node, every data source of ``node.spec.data_sources`` (see ``flame_sdk.sim.data.data_sources``) becomes a Kong
service named after the source, linked to every project deployed on the node. A deployment sees:

* ``/hub-adapter/kong/datastore/{project_id}``: ``{"data": [Kong service objects]}`` (``?detailed=true`` adds
  each service's ``routes``);
* ``/kong/{name}/fhir/{...}``: the source's FHIR server (``flame_sdk.sim.services.fhir_server``), or the external one
  its ``url`` names (proxied; the server's own base URL in its answers, e.g. page links, becomes the route's);
* ``/kong/{name}/s3`` (bucket listing, S3 ListObjects XML; query parameters pass through) and ``/kong/{name}/s3/{key}``
  (object), proxied with SigV4 to the node's bucket on the simulation's S3 endpoint, streamed.

The Kong routes behave like Kong's: only GET, route match first (``404 no Route matched``), then key-auth on
the ``apikey`` header (401 without or with a wrong key; the key is the deployment's DATA_SOURCE_TOKEN).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from yarl import URL

from flame_sdk.sim.data.data_sources import DataSourceSpec, parse_data_sources
from flame_sdk.sim.services.fhir_server import FhirError, FhirStore, operation_outcome

if TYPE_CHECKING:
    from flame_sdk.sim.common.platform_model import Deployment
    from flame_sdk.sim.services.service_interfaces import NodeContext

FHIR_JSON = "application/fhir+json"
_NS = uuid.UUID("6f1e5a0c-4b7e-4d55-9a53-6a1d1c0f1a5e")
_FORWARD_REQUEST = ("range", "if-match", "if-none-match", "if-modified-since", "x-amz-checksum-mode")
_FORWARD_RESPONSE = ("content-type", "content-length", "content-range", "accept-ranges", "etag", "last-modified")


def _kong_message(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


@dataclass
class LinkedSource:
    """A data source as Kong knows it: its service object plus the backend that serves it."""

    spec: DataSourceSpec
    service: dict[str, Any]
    store: FhirStore | None = None
    bucket: str | None = None
    upstream: str | None = None  # external FHIR base URL

    def route(self, project_id: str) -> dict[str, Any]:
        kind, name = self.spec.kind, self.spec.name
        return {"id": str(uuid.uuid5(_NS, f"{self.service['id']}/{project_id}")), "name": f"{name}-route",
                "paths": [f"/{name}/{kind}"], "methods": ["GET"], "protocols": ["http"], "strip_path": True,
                "service": {"id": self.service["id"]},
                "tags": [f"project:{project_id}", f"datastore:{self.service['id']}", f"type:{kind}"]}


class DataService:
    """Per-node data service; ``create_*_app`` give the routes one deployment sees."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.sources: dict[str, LinkedSource] = {}
        self._session: aiohttp.ClientSession | None = None
        self.pending_faults: list[int] = []  # statuses for the next Kong requests (inject_faults)

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Build FHIR stores and fill S3 buckets from the node's data source specs."""
        now = int(time.time())
        for spec in parse_data_sources(self.node.spec.data_sources):
            service = {
                "id": spec.id or str(uuid.uuid5(_NS, f"{self.node.node_id}/{spec.name}")), "name": spec.name,
                "protocol": "http", "host": f"{spec.kind}.{self.node.spec.name}.sim", "port": 80, "path": None,
                "retries": 5, "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
                "tags": [f"type:{spec.kind}"], "enabled": True, "tls_verify": None, "tls_verify_depth": None,
                "ca_certificates": None, "client_certificate": None, "created_at": now, "updated_at": now,
            }
            source = LinkedSource(spec, service)
            if spec.kind == "fhir" and spec.url:
                source.upstream = spec.url
                upstream = URL(spec.url)
                service.update(host=upstream.host, port=upstream.port, path=upstream.path)
            elif spec.kind == "fhir":
                source.store = await asyncio.to_thread(lambda s=spec: FhirStore(s.fhir_resources(), s.page_size))
                service["path"] = "/fhir"
            else:
                endpoint = self.node.s3_endpoint
                if endpoint is None:
                    raise RuntimeError(f"node {self.node.spec.name} has S3 source {spec.name!r} but the simulation "
                                       f"started no S3 endpoint; give SimNode an S3Endpoint (s3_endpoint=...)")
                if spec.bucket:
                    source.bucket = spec.bucket  # filled by `flame-sim seed`
                else:
                    source.bucket = endpoint.bucket_name(self.node.spec.name, spec.name)
                    objects = await asyncio.to_thread(spec.s3_objects)
                    await asyncio.to_thread(endpoint.create_bucket, source.bucket, objects)
                upstream = URL(endpoint.url)
                service.update(host=upstream.host, port=upstream.port, path=f"/{source.bucket}")
            self.sources[spec.name] = source
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10,
                                                                            sock_read=60))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def inject_faults(self, *statuses: int) -> None:
        """Answer the next Kong requests with these HTTP statuses (e.g. 503), one each, to test retries."""
        self.pending_faults.extend(statuses)

    # -- hub adapter ----------------------------------------------------------------------------------
    def create_hub_adapter_app(self, deployment: Deployment) -> web.Application:
        async def datastore(request: web.Request) -> web.Response:
            key = request.match_info["key"]
            detailed = request.query.get("detailed", "false").lower() == "true"
            if key == deployment.project_id:
                linked = list(self.sources.values())
            else:
                linked = [s for s in self.sources.values() if key in (s.service["id"], s.spec.name)]
            if not linked:
                return web.json_response({"detail": f"no data store or project {key!r} on this node"}, status=404)
            services = [{**s.service, "routes": [s.route(deployment.project_id)]} if detailed else s.service
                        for s in linked]
            return web.json_response({"data": services})

        app = web.Application()
        app.router.add_get("/kong/datastore/{key}", datastore)
        return app

    # -- Kong -----------------------------------------------------------------------------------------
    def create_kong_app(self, deployment: Deployment) -> web.Application:
        async def route(request: web.Request) -> web.StreamResponse:
            name, kind, tail = (request.match_info[k] for k in ("name", "kind", "tail"))
            source = self.sources.get(name)
            if source is None or source.spec.kind != kind or request.method != "GET" or tail[:1] not in ("", "/"):
                return _kong_message(404, "no Route matched with those values")
            apikey = request.headers.get("apikey")
            if not apikey:
                return _kong_message(401, "No API key found in request")
            if apikey != deployment.data_source_token:
                return _kong_message(401, "Invalid authentication credentials")
            if self.pending_faults:
                status = self.pending_faults.pop(0)
                return _kong_message(status, f"injected fault (HTTP {status})")
            if source.store is not None:
                return self._fhir(request, source.store, tail)
            if source.upstream is not None:
                return await self._fhir_upstream(request, source.upstream, tail)
            return await self._s3(request, source, tail)

        app = web.Application()
        app.router.add_route("*", r"/{name:[^/]+}/{kind:fhir|s3}{tail:.*}", route)
        return app

    @staticmethod
    def _fhir(request: web.Request, store: FhirStore, tail: str) -> web.Response:
        path = request.path
        base = f"{request.scheme}://{request.host}{path[: path.index('/fhir') + len('/fhir')]}"
        try:
            body, status = store.render(tail.lstrip("/"), request.query_string, base), 200
        except FhirError as exc:
            body, status = json.dumps(exc.outcome()).encode(), exc.status
        except Exception as exc:  # noqa: BLE001 - a FHIR server answers errors as OperationOutcome
            body, status = json.dumps(operation_outcome("exception", f"internal error: {exc!r}")).encode(), 500
        return web.Response(status=status, body=body, content_type=FHIR_JSON)

    async def _fhir_upstream(self, request: web.Request, upstream: str, tail: str) -> web.Response:
        path = request.path
        base = f"{request.scheme}://{request.host}{path[: path.index('/fhir') + len('/fhir')]}"
        url = upstream + tail + (f"?{request.rel_url.raw_query_string}" if request.rel_url.raw_query_string else "")
        assert self._session is not None
        try:
            async with self._session.get(URL(url, encoded=True), headers={"Accept": FHIR_JSON}) as answer:
                body, status = await answer.read(), answer.status
                content_type = answer.headers.get("Content-Type", FHIR_JSON)
        except aiohttp.ClientError as exc:
            return _kong_message(502, f"An invalid response was received from the upstream server: {exc!r}")
        return web.Response(status=status, body=body.replace(upstream.encode(), base.encode()),
                            headers={"Content-Type": content_type})

    async def _s3(self, request: web.Request, source: LinkedSource, tail: str) -> web.StreamResponse:
        endpoint = self.node.s3_endpoint
        raw = request.rel_url.raw_path
        key_part = raw[raw.index(f"/{source.spec.name}/s3") + len(source.spec.name) + 4:]
        url = f"{endpoint.url}/{source.bucket}{key_part if key_part not in ('', '/') else ''}"
        if request.rel_url.raw_query_string:
            url += "?" + request.rel_url.raw_query_string
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARD_REQUEST}
        headers.update(endpoint.signed_headers("GET", url))
        assert self._session is not None
        try:
            async with self._session.get(URL(url, encoded=True), headers=headers, allow_redirects=False) as upstream:
                response = web.StreamResponse(status=upstream.status)
                for name, value in upstream.headers.items():
                    if name.lower() in _FORWARD_RESPONSE or name.lower().startswith("x-amz-"):
                        response.headers[name] = value
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(256 * 1024):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except aiohttp.ClientError as exc:
            return _kong_message(502, f"An invalid response was received from the upstream server: {exc!r}")
