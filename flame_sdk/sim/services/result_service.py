"""Simulated node result service (``/storage`` on the gateway), answering as PrivateAIM/node-result-service
0.1.4 does, including where it is strict or buggy (docs/protocol.md lists each fact with its source):

* routes ``PUT /final/``, ``PUT /final/localdp``, ``PUT /intermediate/``, ``GET /intermediate/{id}``,
  ``PUT /local/``, ``GET /local/tags``, ``GET /local/tags/{tag}``, ``GET /local/{id}``; the other slash
  spelling answers 307 to the service's own URL, which loses the gateway's ``/storage`` prefix (FastAPI's
  ``redirect_slashes`` behind ``proxy_redirect off``), so it ends in the gateway's 405;
* the service checks the token itself: 403 ``{"detail": "Not authenticated"}`` without one, 403
  ``{"detail": "JWT is malformed"}`` for an invalid or expired one;
* ``/final/localdp`` takes one number (400 "Uploaded file must contain a single numerical value.");
* global data is encrypted as the real service does (``flame_sdk.sim.common.crypto``) and decrypted in
  the hub's 1024-byte stream chunks, so objects of 997 plaintext bytes or more answer 400; wrong sender,
  wrong recipient and tampering all answer that same 400; no sender header;
* ids that are not UUIDs answer 422 with FastAPI's validation body; tags are listed in insertion order;
  local downloads are chunked (no Content-Length).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from flame_sdk.protocol import result_api as api
from flame_sdk.sim.common import crypto as node_crypto
from flame_sdk.sim.common import laplace
from flame_sdk.sim.common.keycloak import TokenError, bearer_token
from flame_sdk.sim.services.hub_calls import BytesLike, Pieces, joined
from flame_sdk.sim.services.local_store import LocalStore
from flame_sdk.storage.tags import is_valid_tag

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

    from flame_sdk.sim.common.platform_model import Deployment
    from flame_sdk.sim.services.service_interfaces import NodeContext

CHUNK = 256 * 1024
MAX_FIELD_BYTES = 64 * 1024
#: FastAPI's answer to a body it cannot parse as a form (fastapi/routing.py, get_request_handler).
FORM_ERROR = "There was an error parsing the body"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


class HTTPFail(Exception):
    """An error answer in FastAPI's shape: ``{"detail": ...}``."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status, self.detail = status, detail


def _invalid(kind: str, loc: list[str], msg: str, value: Any) -> HTTPFail:
    """FastAPI's 422 request validation answer for one field."""
    return HTTPFail(422, [{"type": kind, "loc": loc, "msg": msg, "input": value}])


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HTTPFail as exc:
        return web.json_response({"detail": exc.detail}, status=exc.status)
    except web.HTTPNotFound:
        return web.json_response({"detail": "Not Found"}, status=404)
    except web.HTTPMethodNotAllowed:
        return web.json_response({"detail": "Method Not Allowed"}, status=405)


class _FormParts:
    """The parts of a multipart body as python-multipart reports them (the parser the real service reads forms
    with, through Starlette): each part's headers and its data as views of the received chunks."""

    def __init__(self) -> None:
        self.parts: list[tuple[str | None, str | None, list[bytes | memoryview]]] = []
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._chunks: list[bytes | memoryview] = []
        self._size = 0
        self._name: str | None = None
        self._filename: str | None = None
        self._limit: int | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {"on_part_begin": self._begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._data, "on_part_end": self._end}

    def _begin(self) -> None:
        self._headers, self._chunks, self._size = {}, [], 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name, filename = options.get(b"name"), options.get(b"filename")
        self._name = None if name is None else name.decode("utf-8", errors="replace")
        self._filename = None if filename is None else filename.decode("utf-8", errors="replace")
        self._limit = None if self._name == api.FILE else MAX_FIELD_BYTES

    def _data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._limit is not None and self._size > self._limit:
            raise HTTPFail(413, f"form field {self._name!r} is larger than {MAX_FIELD_BYTES} bytes")
        # a view when the chunk is immutable bytes (what aiohttp reads), else a copy: the pieces may be kept
        self._chunks.append(memoryview(data)[start:end] if isinstance(data, bytes) else bytes(data[start:end]))

    def _end(self) -> None:
        self.parts.append((self._name, self._filename, self._chunks))


async def _read_form(request: web.Request) -> tuple[dict[str, str], tuple[str, Pieces] | None]:
    """Text fields and the ``file`` part (name, content as the pieces it arrived in: views of the received chunks,
    never joined here) of a multipart body, read as it streams in; a body that is not valid multipart answers
    FastAPI's 400."""
    fields: dict[str, str] = {}
    file: tuple[str, Pieces] | None = None
    content_type = request.headers.get("Content-Type", "")
    if not content_type.lower().startswith("multipart/"):
        return fields, file
    _, params = parse_options_header(content_type)
    form = _FormParts()
    try:
        parser = MultipartParser(params[b"boundary"], form.callbacks())
        async for chunk in request.content.iter_any():
            parser.write(chunk)
        parser.finalize()
    except (KeyError, ValueError, MultipartParseError):  # ValueError: no boundary, a malformed one
        raise HTTPFail(400, FORM_ERROR) from None
    for name, filename, chunks in form.parts:
        if name == api.FILE:
            file = (filename or "", tuple(chunks))  # views of bytes: read-only
        else:
            fields[name or ""] = b"".join(chunks).decode("utf-8", errors="replace")
    return fields, file


def _require_file(file: tuple[str, Pieces] | None) -> tuple[str, Pieces]:
    if file is None:
        raise _invalid("missing", ["body", "file"], "Field required", None)
    return file


def _uuid(value: str, name: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise _invalid("uuid_parsing", ["path", name], "Input should be a valid UUID", value) from None


def _service_url(request: web.Request, path: str) -> str:
    """A URL as the service builds it (``url_for``): from the Host header, without the gateway's prefix."""
    return f"{request.scheme}://{request.host}{path}"


async def _exact_chunks(stream: AsyncIterator[BytesLike], size: int) -> AsyncIterator[bytes]:
    """Re-cut a byte stream into pieces of exactly ``size`` bytes (the last may be shorter)."""
    buffer = bytearray()
    async for chunk in stream:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


class StorageService:
    """Per-node storage service; ``create_app`` gives the routes one deployment sees."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.local = LocalStore(node.state_dir / "storage" / "local")
        digest = hashlib.sha256(node.node_id.encode()).digest()
        self.rng = np.random.default_rng([node.seed, int.from_bytes(digest[:8], "big")])
        self._keys: dict[str, ec.EllipticCurvePublicKey | None] = {}
        self._ciphers: dict[str, AESGCM] = {}

    async def start(self) -> None:
        """Open node-local stores (kept across analyses)."""
        await self.local.run(self.local.open)

    async def stop(self) -> None:
        """Close node-local stores."""
        await self.local.shutdown()

    # -- hub access ---------------------------------------------------------------------------------
    async def public_key(self, node_id: str) -> ec.EllipticCurvePublicKey:
        """The node's key from the hub: 404/400 with the real service's details when unknown or keyless."""
        if node_id not in self._keys:
            async with self.node.hub.request("GET", f"/nodes/{node_id}") as resp:
                if resp.status == 404:
                    raise HTTPFail(404, api.REMOTE_NODE_MISSING.format(node_id=node_id))
                if resp.status >= 400:
                    raise HTTPFail(502, api.HUB_ERROR.format(status=resp.status))
                body = await resp.json()
            hex_key = body.get("public_key")
            self._keys[node_id] = node_crypto.public_key_from_hex(hex_key) if hex_key else None
        key = self._keys[node_id]
        if key is None:
            raise HTTPFail(400, api.REMOTE_NODE_KEYLESS.format(node_id=node_id))
        return key

    async def cipher(self, node_id: str) -> AESGCM:
        """The cipher between this node and ``node_id``, agreed once per peer (node keys do not change)."""
        cipher = self._ciphers.get(node_id)
        if cipher is None:
            cipher = self._ciphers[node_id] = node_crypto.shared_cipher(self.node.private_key,
                                                                       await self.public_key(node_id))
        return cipher

    async def hub_upload(self, path: str, params: dict[str, str], content: bytes | bytearray | Pieces) -> Any:
        async with self.node.hub.request("PUT", path, params=params, content=content) as resp:
            if resp.status >= 400:  # the real service re-raises any hub error as 502
                raise HTTPFail(502, api.HUB_ERROR.format(status=resp.status))
            return await resp.json()

    # -- app ----------------------------------------------------------------------------------------
    def create_app(self, deployment: Deployment) -> web.Application:
        routes = _DeploymentRoutes(self, deployment)
        app = web.Application(middlewares=[_errors], client_max_size=1024**3)
        for path, handler in ((api.FINAL, routes.put_final), (api.FINAL_LOCAL_DP, routes.put_final_localdp),
                              (api.INTERMEDIATE, routes.put_intermediate), (api.LOCAL, routes.put_local)):
            app.router.add_put(path, handler)
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            app.router.add_route("*", other, _redirect_to(path))
        app.router.add_get(api.INTERMEDIATE_OBJECT, routes.get_intermediate)
        app.router.add_get(api.LOCAL_TAGS, routes.get_tags)
        app.router.add_get(api.LOCAL_TAGGED, routes.get_tagged)
        app.router.add_get(api.LOCAL_OBJECT, routes.get_local)
        return app


def _redirect_to(path: str) -> Handler:
    """FastAPI's ``redirect_slashes``: 307 to the other spelling, built from the Host header."""

    async def redirect(request: web.Request) -> web.StreamResponse:
        query = f"?{request.query_string}" if request.query_string else ""
        return web.Response(status=307, headers={"Location": _service_url(request, path) + query})

    return redirect


class _DeploymentRoutes:
    """Handlers bound to one deployment (analysis id, project id, this node)."""

    def __init__(self, service: StorageService, deployment: Deployment) -> None:
        self.service = service
        self.deployment = deployment
        self.node_id = service.node.node_id
        self.analysis_id = deployment.analysis_id
        self.results_path = f"/analyses/{deployment.analysis_id}/results"
        self.temp_path = f"/analyses/{deployment.analysis_id}/buckets/temp"

    def _authenticate(self, request: web.Request) -> None:
        """FastAPI's HTTPBearer, then the service's JWT check (project/dependencies.py, get_client_id)."""
        header = request.headers.get("Authorization")
        if not header or not header.lower().startswith("bearer ") or not header[7:].strip():
            raise HTTPFail(403, api.NOT_AUTHENTICATED)
        try:
            self.service.node.tokens.verify(bearer_token(header), self.analysis_id)
        except TokenError:
            raise HTTPFail(403, api.JWT_MALFORMED) from None

    # -- final ----------------------------------------------------------------------------------
    async def put_final(self, request: web.Request) -> web.StreamResponse:
        self._authenticate(request)
        _, file = await _read_form(request)
        filename, content = _require_file(file)
        await self.service.hub_upload(self.results_path, {"filename": filename}, content)
        return web.Response(status=204)

    async def put_final_localdp(self, request: web.Request) -> web.StreamResponse:
        self._authenticate(request)
        fields, file = await _read_form(request)
        filename, content = _require_file(file)
        params = {}
        for name in ("epsilon", "sensitivity"):
            if name not in fields:
                raise _invalid("missing", ["body", name], "Field required", None)
            try:
                params[name] = float(fields[name])
            except ValueError:
                raise _invalid("float_parsing", ["body", name], "Input should be a valid number, unable to parse "
                                                                "string as a number", fields[name]) from None
        try:
            value = laplace.parse_value(joined(content))
        except ValueError:
            raise HTTPFail(400, api.LOCAL_DP_NOT_A_NUMBER) from None
        if params["epsilon"] <= 0 or params["sensitivity"] <= 0:  # the service's Laplace mechanism raises: 500
            return web.Response(status=500, text="Internal Server Error")
        noisy = laplace.add_noise(value, params["epsilon"], params["sensitivity"], self.service.rng)
        await self.service.hub_upload(self.results_path, {"filename": filename}, str(noisy).encode("utf-8"))
        return web.Response(status=204)

    # -- intermediate (global) ------------------------------------------------------------------
    async def put_intermediate(self, request: web.Request) -> web.StreamResponse:
        self._authenticate(request)
        fields, file = await _read_form(request)
        filename, content = _require_file(file)
        recipient = fields.get(api.REMOTE_NODE_ID)
        stored: bytes | Pieces = content  # without "encryption requested" the file is stored as it is
        if recipient is not None:
            stored = node_crypto.encrypt_with(await self.service.cipher(recipient), joined(content))
        answer = await self.service.hub_upload(self.temp_path, {"filename": filename or "file"}, stored)
        object_id = answer["object_id"]
        return web.json_response({"url": _service_url(request, f"/intermediate/{object_id}"),
                                  "object_id": object_id})

    async def get_intermediate(self, request: web.Request) -> web.StreamResponse:
        self._authenticate(request)
        object_id = _uuid(request.match_info["object_id"], "object_id")
        sender = request.query.get(api.SENDER_QUERY)
        async with self.service.node.hub.request("GET", f"{self.temp_path}/{object_id}") as hub:
            if hub.status == 404:
                raise HTTPFail(404, api.OBJECT_MISSING.format(object_id=object_id))
            if hub.status >= 400:
                raise HTTPFail(502, api.HUB_ERROR.format(status=hub.status))
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            if sender is None:  # relayed as stored (the real service relays 1024-byte chunks; only speed differs)
                await response.prepare(request)
                async for chunk in hub.chunks():
                    with memoryview(chunk) as view:  # in pieces: the transport never copies a whole object
                        for start in range(0, len(view), CHUNK):
                            await response.write(view[start : start + CHUNK])
                await response.write_eof()
                return response
            chunks = _exact_chunks(hub.chunks(), api.DECRYPT_CHUNK)
            first = await anext(chunks, b"")
            cipher = await self.service.cipher(sender)
            try:
                plain = node_crypto.decrypt_with(cipher, first)
            except (InvalidTag, ValueError):
                raise HTTPFail(400, api.UNDECRYPTABLE.format(object_id=object_id, node_id=sender)) from None
            await response.prepare(request)
            await response.write(plain)
            async for chunk in chunks:  # as the real service: each further chunk on its own (an error aborts)
                await response.write(node_crypto.decrypt_with(cipher, chunk))
            await response.write_eof()
            return response

    # -- local ----------------------------------------------------------------------------------
    async def put_local(self, request: web.Request) -> web.StreamResponse:
        self._authenticate(request)
        fields, file = await _read_form(request)
        filename, content = _require_file(file)
        tag = fields.get("tag")
        if tag is not None and not is_valid_tag(tag):
            raise HTTPFail(400, api.INVALID_TAG.format(tag=tag))
        project, object_id = self.deployment.project_id, str(uuid.uuid4())
        local = self.service.local
        await local.run(local.save, project, self.analysis_id, object_id, filename or "data.bin", tag,
                        joined(content))
        return web.json_response({"url": _service_url(request, f"/local/{object_id}")})

    async def get_tags(self, request: web.Request) -> web.StreamResponse:
        self._authenticate(request)
        return web.json_response({"tags": [{"name": tag, "url": _service_url(request, f"/local/tags/{tag}")}
                                           for tag in await self._local(self.service.local.tags)]})

    async def get_tagged(self, request: web.Request) -> web.StreamResponse:
        self._authenticate(request)
        tag = request.match_info["tag"]  # not validated by the service: an unknown tag lists nothing
        return web.json_response({"results": [
            {"filename": name, "url": _service_url(request, f"/local/{object_id}")}
            for object_id, name in await self._local(self.service.local.tagged, tag)]})

    async def get_local(self, request: web.Request) -> web.StreamResponse:
        self._authenticate(request)
        object_id = _uuid(request.match_info["object_id"], "object_id")
        path = await self._local(self.service.local.find, object_id)
        if path is None:
            raise HTTPFail(404, api.OBJECT_MISSING.format(object_id=object_id))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)  # streamed without Content-Length, as the real service does
        source = await asyncio.to_thread(path.open, "rb")
        try:
            while chunk := await asyncio.to_thread(source.read, CHUNK):
                await response.write(chunk)
        finally:
            await asyncio.to_thread(source.close)
        await response.write_eof()
        return response

    async def _local(self, query: Callable[..., T], *args: Any) -> T:
        """A query of the local store for this deployment's project, on the store's thread."""
        return await self.service.local.run(query, self.deployment.project_id, *args)
