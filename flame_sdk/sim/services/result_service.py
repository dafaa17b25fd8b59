"""Node result service (``/storage`` prefix): final, intermediate (global) and local results.

Paths, form fields and answers follow PrivateAIM/node-result-service:

* ``PUT /final`` (multipart ``file``) -> 204; ``PUT /final/localdp`` (``file`` + ``epsilon``, ``sensitivity``) -> 204
* ``PUT /intermediate`` (``file`` + ``remote_node_id``) -> ``{"url", "object_id"}``;
  ``GET /intermediate/{object_id}?node_id=<sender>`` -> decrypted bytes
* ``PUT /local`` (``file`` + optional ``tag``) -> ``{"url"}``; ``GET /local/tags`` -> ``{"tags": [{"name", "url"}]}``;
  ``GET /local/tags/{tag}`` -> ``{"results": [{"filename", "url"}]}``; ``GET /local/{object_id}``

Global data is encrypted here for its recipient with ``flame_sdk.sim.common.crypto`` and streamed to the hub;
the recipient's service verifies and decrypts it into a spool file before answering, so only
authenticated plaintext ever reaches the analysis. Differences from the reference are listed in
docs/protocol.md.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import BodyPartReader, web
from cryptography.hazmat.primitives.asymmetric import ec

from flame_sdk.errors import TamperedDataError
from flame_sdk.protocol.result_api import SENDER_HEADER
from flame_sdk.sim.common import crypto, laplace
from flame_sdk.sim.services.local_store import LocalStore
from flame_sdk.storage import local_dp
from flame_sdk.storage.tags import is_valid_tag

if TYPE_CHECKING:
    from flame_sdk.sim.common.platform_model import Deployment
    from flame_sdk.sim.services.service_interfaces import NodeContext

CHUNK = 256 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_DP_FILE_BYTES = 16 * 1024 * 1024


class HTTPFail(Exception):
    """An error answer: status plus a detail that names the problem."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def _answer(exc: HTTPFail) -> web.Response:
    return web.json_response({"detail": exc.detail}, status=exc.status)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except HTTPFail as exc:
        return _answer(exc)


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(CHUNK):
        yield chunk


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    async for chunk in _part_chunks(part):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise HTTPFail(400, f"form field {part.name!r} is larger than {MAX_FIELD_BYTES} bytes")
    return data.decode("utf-8", errors="replace")


FileHandler = Callable[[BodyPartReader, dict[str, str]], Awaitable[Any]]


async def _read_form(request: web.Request, on_file: FileHandler) -> tuple[dict[str, str], Any]:
    """Walk a multipart body: text fields are collected, the ``file`` part is handed to ``on_file`` together
    with the fields seen before it. Returns (all fields, what ``on_file`` returned)."""
    if not request.content_type.startswith("multipart/"):
        raise HTTPFail(400, "send the upload as multipart/form-data with a 'file' part")
    fields: dict[str, str] = {}
    result: Any = None
    seen_file = False
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise HTTPFail(400, "nested multipart bodies are not supported")
        if part.name == "file":
            result, seen_file = await on_file(part, dict(fields)), True
        else:
            fields[part.name or ""] = await _read_field(part)
    if not seen_file:
        raise HTTPFail(400, "the multipart body has no 'file' part")
    return fields, result


def _base_url(request: web.Request, prefix: str) -> str:
    """Absolute URL of ``/storage/<prefix>`` as the caller reached it."""
    origin = request.url.origin()
    mount = request.path[: request.path.index(f"/{prefix}")] if f"/{prefix}" in request.path else ""
    return f"{origin}{mount}/{prefix}"


class StorageService:
    """Per-node storage service; ``create_app`` gives the routes one deployment sees."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.local = LocalStore(node.state_dir / "storage" / "local")
        self.spool = node.state_dir / "storage" / "spool"
        digest = hashlib.sha256(node.node_id.encode()).digest()
        self.rng = np.random.default_rng([node.seed, int.from_bytes(digest[:8], "big")])
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._participants: dict[str, dict[str, str]] = {}

    async def start(self) -> None:
        """Open node-local stores (kept across analyses) and clear the decryption spool."""
        self.local.open()
        shutil.rmtree(self.spool, ignore_errors=True)
        self.spool.mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        """Close node-local stores."""
        self.local.close()
        shutil.rmtree(self.spool, ignore_errors=True)

    # -- hub access ---------------------------------------------------------------------------------
    async def _hub_get_json(self, path: str) -> Any:
        async with self.node.hub_session.get(self.node.hub_url + path) as resp:
            if resp.status == 404:
                return None
            if resp.status >= 400:
                raise HTTPFail(502, f"hub GET {path} answered HTTP {resp.status}: {(await resp.text())[:200]}")
            return await resp.json()

    async def participants(self, analysis_id: str) -> dict[str, str]:
        if analysis_id not in self._participants:
            body = await self._hub_get_json(f"/analyses/{analysis_id}")
            if body is None:
                raise HTTPFail(404, f"analysis {analysis_id} is not known to the hub")
            self._participants[analysis_id] = {n["node_id"]: n["role"] for n in body["nodes"]}
        return self._participants[analysis_id]

    async def public_key(self, node_id: str) -> ec.EllipticCurvePublicKey:
        if node_id not in self._keys:
            body = await self._hub_get_json(f"/nodes/{node_id}")
            if body is None:
                raise HTTPFail(404, f"remote node with id {node_id} does not exist")
            if not body.get("public_key"):
                raise HTTPFail(400, f"remote node with id {node_id} does not provide a public key")
            self._keys[node_id] = crypto.public_key_from_hex(body["public_key"])
        return self._keys[node_id]

    async def _hub_upload(self, path: str, params: dict[str, str], body: AsyncIterator[bytes]) -> Any:
        async with self.node.hub_session.put(self.node.hub_url + path, params=params, data=body) as resp:
            if resp.status >= 400:
                raise HTTPFail(resp.status if resp.status in (400, 403, 404) else 502,
                               f"hub refused the upload: {(await resp.text())[:300]}")
            return await resp.json()

    # -- app ----------------------------------------------------------------------------------------
    def create_app(self, deployment: Deployment) -> web.Application:
        routes = _DeploymentRoutes(self, deployment)
        app = web.Application(middlewares=[_errors], client_max_size=1024**3)
        for path in ("/final", "/final/"):
            app.router.add_put(path, routes.put_final)
        app.router.add_put("/final/localdp", routes.put_final_localdp)
        for path in ("/intermediate", "/intermediate/"):
            app.router.add_put(path, routes.put_intermediate)
        app.router.add_get("/intermediate/{object_id}", routes.get_intermediate)
        for path in ("/local", "/local/"):
            app.router.add_put(path, routes.put_local)
        app.router.add_get("/local/tags", routes.get_tags)
        app.router.add_get("/local/tags/{tag}", routes.get_tagged)
        app.router.add_get("/local/{object_id}", routes.get_local)
        return app


class _DeploymentRoutes:
    """Handlers bound to one deployment (analysis id, project id, this node)."""

    def __init__(self, service: StorageService, deployment: Deployment) -> None:
        self.service = service
        self.deployment = deployment
        self.node_id = service.node.node_id
        self.results_path = f"/analyses/{deployment.analysis_id}/results"

    # -- final ----------------------------------------------------------------------------------
    def _check_aggregator(self) -> None:
        if self.deployment.role != "aggregator":
            raise HTTPFail(403, f"node {self.node_id} is not the aggregator of analysis "
                                f"{self.deployment.analysis_id}; only the aggregator submits final results")

    async def put_final(self, request: web.Request) -> web.Response:
        self._check_aggregator()

        async def upload(part: BodyPartReader, _: dict[str, str]) -> None:
            await self.service._hub_upload(self.results_path, {"filename": part.filename or "result.bin"},
                                           _part_chunks(part))

        await _read_form(request, upload)
        return web.Response(status=204)

    async def put_final_localdp(self, request: web.Request) -> web.Response:
        self._check_aggregator()

        async def read_value(part: BodyPartReader, _: dict[str, str]) -> tuple[str, bytes]:
            data = bytearray()
            async for chunk in _part_chunks(part):
                data += chunk
                if len(data) > MAX_DP_FILE_BYTES:
                    raise HTTPFail(413, f"a local DP result must be smaller than {MAX_DP_FILE_BYTES} bytes")
            return part.filename or "result.txt", bytes(data)

        fields, (filename, content) = await _read_form(request, read_value)
        try:
            epsilon, sensitivity = local_dp.check_params(
                {key: float(fields[key]) for key in ("epsilon", "sensitivity")})
            value = laplace.decode(content)
        except KeyError as exc:
            raise HTTPFail(400, f"form field {exc.args[0]!r} is required for local DP") from None
        except ValueError as exc:
            raise HTTPFail(400, str(exc)) from None
        noisy = laplace.add_laplace_noise(value, epsilon, sensitivity, self.service.rng)

        async def body() -> AsyncIterator[bytes]:
            yield local_dp.encode(noisy)

        await self.service._hub_upload(self.results_path, {"filename": filename}, body())
        return web.Response(status=204)

    # -- intermediate (global) ------------------------------------------------------------------
    async def _encrypted(self, recipient: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        encryptor = crypto.Encryptor(self.service.node.private_key, await self.service.public_key(recipient),
                                     self.deployment.analysis_id, self.node_id, recipient)
        yield encryptor.header
        async for chunk in chunks:
            for segment in encryptor.update(chunk):
                yield segment
        yield encryptor.finalize()

    async def _check_recipient(self, recipient: str | None) -> str:
        if not recipient:
            raise HTTPFail(400, "remote_node_id is required: global intermediate data is always encrypted for its "
                                "recipient")
        await self.service.public_key(recipient)  # 404 for unknown nodes, as the reference does
        if recipient not in await self.service.participants(self.deployment.analysis_id):
            raise HTTPFail(400, f"remote node {recipient} is not a participant of analysis "
                                f"{self.deployment.analysis_id}")
        return recipient

    async def _upload_encrypted(self, recipient: str, filename: str, chunks: AsyncIterator[bytes]) -> str:
        answer = await self.service._hub_upload(
            f"/analyses/{self.deployment.analysis_id}/buckets/temp", {"recipient": recipient, "filename": filename},
            self._encrypted(recipient, chunks))
        return answer["object_id"]

    async def put_intermediate(self, request: web.Request) -> web.Response:
        spooled: list[Path] = []

        async def handle(part: BodyPartReader, fields: dict[str, str]) -> tuple[str, str | None]:
            filename = part.filename or "data.bin"
            if "remote_node_id" in fields:  # the usual order: fields first, so the file streams through
                recipient = await self._check_recipient(fields["remote_node_id"])
                return filename, await self._upload_encrypted(recipient, filename, _part_chunks(part))
            spool = self.service.spool / f"upload-{uuid.uuid4()}"
            spooled.append(spool)
            with spool.open("wb") as out:
                async for chunk in _part_chunks(part):
                    out.write(chunk)
            return filename, None

        try:
            fields, (filename, object_id) = await _read_form(request, handle)
            if object_id is None:
                recipient = await self._check_recipient(fields.get("remote_node_id"))
                object_id = await self._upload_encrypted(recipient, filename, _file_chunks(spooled[0]))
        finally:
            for path in spooled:
                path.unlink(missing_ok=True)
        return web.json_response({"url": f"{_base_url(request, 'intermediate')}/{object_id}", "object_id": object_id})

    async def get_intermediate(self, request: web.Request) -> web.StreamResponse:
        object_id = request.match_info["object_id"]
        sender = request.query.get("node_id")
        url = f"{self.service.node.hub_url}/analyses/{self.deployment.analysis_id}/buckets/temp/{object_id}"
        async with self.service.node.hub_session.get(url) as hub:
            if hub.status == 404:
                raise HTTPFail(404, f"object with id {object_id} does not exist")
            if hub.status >= 400:
                raise HTTPFail(502, f"hub answered HTTP {hub.status}: {(await hub.text())[:200]}")
            if sender is None:  # as the reference: no sender given, no decryption (the stored envelope)
                return await self._relay(request, hub.content.iter_chunked(CHUNK), hub.content_length)
            spool = self.service.spool / f"plain-{uuid.uuid4()}"
            try:
                await self._decrypt_to(spool, sender, object_id, hub.content.iter_chunked(CHUNK))
                response = await self._relay(request, _file_chunks(spool), spool.stat().st_size,
                                             {SENDER_HEADER: sender})
            finally:
                spool.unlink(missing_ok=True)
        return response

    async def _decrypt_to(self, spool: Path, sender: str, object_id: str, chunks: AsyncIterator[bytes]) -> None:
        """Verify and decrypt an envelope into ``spool``; HTTP 400 wrong sender, 403 wrong recipient, 422 tampered."""
        if sender not in await self.service.participants(self.deployment.analysis_id):
            raise HTTPFail(400, f"node {sender} is not a participant of analysis {self.deployment.analysis_id}")
        buffer = bytearray()
        decryptor: crypto.Decryptor | None = None
        try:
            with spool.open("wb") as out:
                async for chunk in chunks:
                    if decryptor is None:
                        buffer += chunk
                        parsed = crypto.EnvelopeHeader.parse(buffer)
                        if parsed is None:
                            continue
                        header, size = parsed
                        if header.sender_id != sender:
                            raise HTTPFail(400, f"file with id {object_id} cannot be decrypted under the assumption "
                                                f"that it was encrypted by node {sender} for this node")
                        if header.recipient_id != self.node_id:
                            raise HTTPFail(403, f"file with id {object_id} was encrypted for another node")
                        decryptor = crypto.Decryptor(self.service.node.private_key,
                                                     await self.service.public_key(sender), header,
                                                     bytes(buffer[:size]), self.deployment.analysis_id)
                        chunk, buffer = bytes(buffer[size:]), bytearray()
                    out.writelines(decryptor.update(chunk))
                if decryptor is None:
                    raise TamperedDataError("the stored object is truncated (incomplete envelope header)")
                out.write(decryptor.finalize())
        except TamperedDataError as exc:
            raise HTTPFail(422, f"tampered data: object {object_id} failed authentication: {exc}") from None

    @staticmethod
    async def _relay(request: web.Request, chunks: AsyncIterator[bytes], size: int | None,
                     headers: dict[str, str] | None = None) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream", **(headers or {})})
        if size is not None:
            response.content_length = size
        await response.prepare(request)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response

    # -- local ----------------------------------------------------------------------------------
    async def put_local(self, request: web.Request) -> web.Response:
        project, object_id = self.deployment.project_id, str(uuid.uuid4())
        path = self.service.local.object_path(project, object_id)

        async def store(part: BodyPartReader, _: dict[str, str]) -> str:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as out:
                async for chunk in _part_chunks(part):
                    out.write(chunk)
            return part.filename or "data.bin"

        try:
            fields, filename = await _read_form(request, store)
            tag = fields.get("tag")
            if tag is not None and not is_valid_tag(tag):
                raise HTTPFail(400, f"invalid tag `{tag}`")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self.service.local.add(project, self.deployment.analysis_id, object_id, filename, tag)
        return web.json_response({"url": f"{_base_url(request, 'local')}/{object_id}"})

    async def get_tags(self, request: web.Request) -> web.Response:
        base = _base_url(request, "local")
        return web.json_response({"tags": [{"name": tag, "url": f"{base}/tags/{tag}"}
                                           for tag in self.service.local.tags(self.deployment.project_id)]})

    async def get_tagged(self, request: web.Request) -> web.Response:
        tag, base = request.match_info["tag"], _base_url(request, "local")
        if not is_valid_tag(tag):
            raise HTTPFail(400, f"invalid tag `{tag}`")
        return web.json_response({"results": [{"filename": name, "url": f"{base}/{object_id}"} for object_id, name
                                              in self.service.local.tagged(self.deployment.project_id, tag)]})

    async def get_local(self, request: web.Request) -> web.StreamResponse:
        object_id = request.match_info["object_id"]
        try:
            uuid.UUID(object_id)
        except ValueError:
            raise HTTPFail(404, f"object with id {object_id} does not exist") from None
        path = self.service.local.find(self.deployment.project_id, object_id)
        if path is None:
            raise HTTPFail(404, f"object with id {object_id} does not exist in this project's local storage")
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})
