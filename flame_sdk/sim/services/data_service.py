"""Node data API: Kong routes to FHIR and S3 sources, and the hub adapter's datastore listing.

Per node, every data source of ``node.spec.data_sources`` (``flame_sdk.sim.data.data_sources``) becomes a Kong
service named after the source, linked to the projects deployed on the node (or to its ``projects``). A
deployment sees:

* ``/hub-adapter/kong/datastore/{project_id}``: ``{"data": [Kong service objects]}`` (``?detailed=true`` adds
  each service's ``routes``); errors as the hub adapter answers them, ``{"detail": {...}}``;
* ``/kong/{name}/fhir/{...}``: the source's FHIR server (``sim.services.fhir_server``), or the external one
  its ``url`` names, proxied as Kong proxies: path and query as sent, the answer untouched (page links name
  the server's own base);
* ``/kong/{name}/s3`` (bucket listing) and ``/kong/{name}/s3/{key}`` (object): Kong's minio-gateway plugin
  in front of the node's bucket. The request goes through the model of the analysis nginx, Kong and the
  plugin's signing (``flame_sdk.protocol.s3_gateway``): what a node refuses (403 SignatureDoesNotMatch, 400) is
  refused here; the answer is read whole before anything is sent, as the plugin does.

The Kong routes behave like Kong's: only GET, route match first (``404 no Route matched``), then key-auth on
the ``apikey`` header (401 without or with a wrong key; the key is the deployment's DATA_SOURCE_TOKEN), then
the acl plugin (403 when the source is not linked to the deployment's project). Kong buffers every answer
(routes have ``response_buffering``), and the analysis nginx waits at most ``read_timeout`` seconds
(its default ``proxy_read_timeout``, 60) for the first byte: a slower answer is nginx's 504.

Test knobs (not node behaviour): ``read_timeout`` (scale the 60 s down), ``s3_upstream_rate`` (bytes per
second from the bucket to Kong, to make reads slow), ``inject_faults`` (statuses for the next requests).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote_to_bytes

import aiohttp
from aiohttp import web
from yarl import URL

from flame_sdk.protocol import data_api
from flame_sdk.protocol.s3_gateway import kong_normalized_path, minio_answer, nginx_forwarded_path
from flame_sdk.runtime import bounded
from flame_sdk.sim.common.keycloak import TokenError, bearer_token
from flame_sdk.sim.data.data_sources import DataSourceSpec, parse_data_sources
from flame_sdk.sim.services.fhir_server import FhirError, FhirStore, operation_outcome

if TYPE_CHECKING:
    from flame_sdk.sim.common.platform_model import Deployment
    from flame_sdk.sim.services.service_interfaces import NodeContext

_NS = uuid.UUID("6f1e5a0c-4b7e-4d55-9a53-6a1d1c0f1a5e")
_FORWARD_REQUEST = ("range", "if-match", "if-none-match", "if-modified-since", "x-amz-checksum-mode")
_FHIR_FORWARD_REQUEST = ("accept", "prefer", "if-none-match", "if-modified-since")
_HOP_RESPONSE = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
                           "date", "server"})


def _kong_message(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def _adapter_error(status: int, message: str, service: str = "Kong") -> web.Response:
    """The hub adapter's error answer (FastAPI HTTPException with a detail object)."""
    return web.json_response(data_api.adapter_error(status, message, service), status=status)


def _signature_mismatch(resource: str) -> web.Response:
    """MinIO's 403 for a request signed differently from its own reckoning, passed on by the plugin."""
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{data_api.S3_SIGNATURE_MISMATCH}</Code>'
            f"<Message>{data_api.S3_SIGNATURE_MISMATCH_MESSAGE}</Message><Resource>{resource}</Resource>"
            f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>")
    return web.Response(status=403, text=body, content_type="application/xml")


def _fhir_store(spec: DataSourceSpec) -> FhirStore:
    return FhirStore(spec.fhir_resources(), spec.page_size)


@dataclass
class LinkedSource:
    """A data source as Kong knows it: its service object plus the backend that serves it."""

    spec: DataSourceSpec
    service: dict[str, Any]
    store: FhirStore | None = None
    bucket: str | None = None
    upstream: str | None = None  # external FHIR base URL
    server_address: str = ""  # the base URL a simulated FHIR store writes into its links

    def route(self, project_id: str) -> dict[str, Any]:
        kind, name = self.spec.kind, self.spec.name
        return {"id": str(uuid.uuid5(_NS, f"{self.service['id']}/{project_id}")), "name": f"{name}-route",
                "paths": [f"/{name}/{kind}"], "methods": ["GET"], "protocols": ["http"], "strip_path": True,
                "path_handling": "v1", "request_buffering": True, "response_buffering": True,
                "service": {"id": self.service["id"]},
                "tags": [f"project:{project_id}", f"datastore:{self.service['id']}", f"type:{kind}"]}


class DataService:
    """Per-node data service; ``create_*_app`` give the routes one deployment sees."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.sources: dict[str, LinkedSource] = {}
        self._session: aiohttp.ClientSession | None = None
        self.pending_faults: list[int] = []  # statuses for the next Kong requests (inject_faults)
        self.read_timeout = data_api.GATEWAY_READ_TIMEOUT_S
        self._projects: set[str] = set()  # projects deployed on the node
        self.s3_upstream_rate: float | None = None

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Build FHIR stores and fill S3 buckets from the node's data source specs."""
        now = int(time.time())
        for spec in parse_data_sources(self.node.spec.data_sources):
            service = {
                "id": spec.id or str(uuid.uuid5(_NS, f"{self.node.node_id}/{spec.name}")), "name": spec.name,
                "protocol": "http", "host": f"{spec.name}.{self.node.spec.name}.sim", "port": 80, "path": None,
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
                source.store = await asyncio.to_thread(_fhir_store, spec)
                service["path"] = "/fhir"
                source.server_address = spec.server_address or f"http://{service['host']}/fhir"
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
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                                              cookie_jar=aiohttp.DummyCookieJar())

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def inject_faults(self, *statuses: int) -> None:
        """Answer the next Kong requests with these HTTP statuses (e.g. 503), one each, to test retries."""
        self.pending_faults.extend(statuses)

    def linked(self, source: LinkedSource, project_id: str) -> bool:
        """Whether a project may use a source: its ``projects``, else every project deployed on the node."""
        if source.spec.projects is not None:
            return project_id in source.spec.projects
        return project_id in self._projects

    def _route_project(self, source: LinkedSource, key: str, deployment: Deployment) -> str:
        if self.linked(source, key):
            return key
        return source.spec.projects[0] if source.spec.projects else deployment.project_id

    # -- hub adapter ----------------------------------------------------------------------------------
    def create_hub_adapter_app(self, deployment: Deployment) -> web.Application:
        self._projects.add(deployment.project_id)

        async def datastore(request: web.Request) -> web.Response:
            try:
                self.node.tokens.verify(bearer_token(request.headers.get("Authorization")), deployment.analysis_id)
            except TokenError as exc:
                if "Authorization" not in request.headers:  # FastAPI's HTTPBearer answers before the adapter
                    return web.json_response({"detail": data_api.ADAPTER_NOT_AUTHENTICATED}, status=401,
                                             headers={"WWW-Authenticate": "Bearer"})
                expired = "expired" in str(exc)
                message = data_api.ADAPTER_TOKEN_EXPIRED if expired else data_api.ADAPTER_TOKEN_UNREADABLE
                return _adapter_error(401, message, service="Auth")
            key = request.match_info["key"]
            detailed = request.query.get("detailed", "false").lower() == "true"
            linked = [s for s in self.sources.values() if key in (s.service["id"], s.spec.name)] or \
                [s for s in self.sources.values() if self.linked(s, key)]
            if not linked:
                return _adapter_error(404, data_api.ADAPTER_NOT_FOUND.format(key=key))
            services = [{**s.service, "routes": [s.route(self._route_project(s, key, deployment))]} if detailed
                        else s.service for s in linked]
            return web.json_response({"data": services})

        app = web.Application()
        app.router.add_get("/kong/datastore/{key}", datastore)
        return app

    # -- Kong -----------------------------------------------------------------------------------------
    def create_kong_app(self, deployment: Deployment) -> web.Application:
        self._projects.add(deployment.project_id)

        async def route(request: web.Request) -> web.StreamResponse:
            name, kind, tail = (request.match_info[k] for k in ("name", "kind", "tail"))
            source = self.sources.get(name)
            if source is None or source.spec.kind != kind or request.method != "GET" or tail[:1] not in ("", "/"):
                return _kong_message(404, data_api.KONG_NO_ROUTE)
            apikey = request.headers.get(data_api.APIKEY_HEADER)
            if not apikey:
                return _kong_message(401, data_api.KONG_NO_KEY)
            if apikey != deployment.data_source_token:
                return _kong_message(401, data_api.KONG_BAD_KEY)
            if not self.linked(source, deployment.project_id):
                return _kong_message(403, data_api.KONG_ACL_DENIED)
            if self.pending_faults:
                status = self.pending_faults.pop(0)
                return _kong_message(status, f"injected fault (HTTP {status})")
            try:
                return await bounded(self._answer(request, source, tail), self.read_timeout)
            except TimeoutError:
                return web.Response(status=504, text=data_api.NGINX_GATEWAY_TIMEOUT_PAGE, content_type="text/html")

        app = web.Application()
        app.router.add_route("*", r"/{name:[^/]+}/{kind:fhir|s3}{tail:.*}", route)
        return app

    async def _answer(self, request: web.Request, source: LinkedSource, tail: str) -> web.Response:
        if source.store is not None:
            return self._fhir(request, source, tail)
        if source.upstream is not None:
            return await self._fhir_upstream(request, source.upstream, tail)
        return await self._s3(request, source)

    @staticmethod
    def _fhir(request: web.Request, source: LinkedSource, tail: str) -> web.Response:
        assert source.store is not None
        try:
            body, status = source.store.render(tail.lstrip("/"), request.query_string, source.server_address), 200
        except FhirError as exc:
            body, status = json.dumps(exc.outcome()).encode(), exc.status
        except Exception as exc:  # noqa: BLE001 - a FHIR server answers errors as OperationOutcome
            body, status = json.dumps(operation_outcome("exception", f"internal error: {exc!r}")).encode(), 500
        return web.Response(status=status, body=body, content_type=data_api.FHIR_JSON)

    async def _fhir_upstream(self, request: web.Request, upstream: str, tail: str) -> web.Response:
        query = request.rel_url.raw_query_string
        url = upstream + tail + (f"?{query}" if query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FHIR_FORWARD_REQUEST}
        assert self._session is not None
        try:
            async with self._session.get(URL(url, encoded=True), headers=headers, allow_redirects=False) as answer:
                body = await answer.read()
                return web.Response(status=answer.status, body=body, headers=self._response_headers(answer))
        except aiohttp.ClientError:
            return _kong_message(502, data_api.KONG_BAD_UPSTREAM)

    async def _s3(self, request: web.Request, source: LinkedSource) -> web.Response:
        """The minio-gateway plugin: sign what Kong hands it, send, read the whole answer, then reply."""
        route_path = f"/{source.spec.name}/s3"
        path = kong_normalized_path(nginx_forwarded_path(request.rel_url.raw_path))
        signed = re.sub("/+", "/", f"/{source.bucket}{path[len(route_path):] or '/'}")
        raw_query = request.rel_url.raw_query_string
        refusal = minio_answer(signed, raw_query)
        if refusal is not None:
            if refusal[0] == 400:  # Go's HTTP server, on the plugin's broken request line
                return web.Response(status=400, text="400 Bad Request: malformed HTTP version")
            return _signature_mismatch(signed)
        endpoint = self.node.s3_endpoint
        assert endpoint is not None  # start() refuses S3 sources without an endpoint
        url = endpoint.url + quote(unquote_to_bytes(signed), safe="/~") + (f"?{raw_query}" if raw_query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARD_REQUEST}
        headers.update(endpoint.signed_headers("GET", url))
        assert self._session is not None
        try:
            async with self._session.get(URL(url, encoded=True), headers=headers, allow_redirects=False) as upstream:
                body = bytearray()
                async for chunk in upstream.content.iter_chunked(256 * 1024):
                    body += chunk
                    if self.s3_upstream_rate:
                        await asyncio.sleep(len(chunk) / self.s3_upstream_rate)
                return web.Response(status=upstream.status, body=body, headers=self._response_headers(upstream))
        except aiohttp.ClientError as exc:
            return web.json_response({"message": data_api.PLUGIN_NO_MINIO, "error": str(exc)}, status=502)

    @staticmethod
    def _response_headers(answer: aiohttp.ClientResponse) -> dict[str, str]:
        return {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_RESPONSE}
