"""Client of the node result service (``/storage``): final results, global and local intermediate data.

Every route, status and body it relies on is one the real PrivateAIM node-result-service has (see
docs/protocol.md): upload routes end in ``/``, a refused token is 403, the service sends no sender
header, ``/final/localdp`` takes one number, and global downloads are limited to 996 plaintext bytes, so
larger global payloads travel sealed (``flame_sdk.storage.global_frames``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import aiohttp.payload
from aiohttp.abc import AbstractStreamWriter

from flame_sdk.config import IdentifiedNodeConfig
from flame_sdk.errors import (
    DecryptionLimitError,
    FlameError,
    RoleError,
    ServiceHTTPError,
    TamperedDataError,
    UnknownNodeError,
)
from flame_sdk.http import ServiceClient
from flame_sdk.logs import FlameLogger
from flame_sdk.protocol import result_api as api
from flame_sdk.runtime import all_or_none
from flame_sdk.storage import global_frames as frames
from flame_sdk.storage import local_dp as dp_mechanism
from flame_sdk.storage import sealed as sealing
from flame_sdk.storage.final_files import FinalFile, plan_final_files
from flame_sdk.storage.serialization import (
    BytesLike,
    dump_object,
    dump_parts,
    encode_final,
    is_parts,
    load_object,
    load_parts,
    parts_size,
)
from flame_sdk.storage.tags import check_storage_id, check_tag

CHUNK = 256 * 1024
LOCATIONS = ("local", "global")
TAG_OPTIONS = ("all", "last", "first")
_STAMP_DIGITS, _COUNTER_DIGITS = 20, 8
_local_counter = itertools.count()


def _check_location(location: object) -> str:
    if location not in LOCATIONS:
        raise ValueError(f"location must be 'local' or 'global', got {location!r}")
    return location


async def _slices(content: BytesLike) -> AsyncIterator[memoryview]:
    with memoryview(content) as view, view.cast("B") as flat:
        for start in range(0, len(flat), CHUNK):
            yield flat[start : start + CHUNK]


class _SealedPayload(aiohttp.payload.Payload):
    """An upload body: the sealed stream of a payload, produced (and hashed, when ``hashed``) while it is sent. Its
    size is known beforehand, so the part and the request carry a Content-Length."""

    def __init__(self, chunks: Iterator[bytes], size: int, hashed: bool) -> None:
        super().__init__(chunks, content_type="application/octet-stream")
        self._chunks = chunks
        self._sealed_size = size
        self._digest = hashlib.sha256() if hashed else None
        self.complete = False

    @property
    def size(self) -> int:
        return self._sealed_size

    @property
    def sha256(self) -> str | None:
        return None if self._digest is None else self._digest.hexdigest()

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a sealed stream is binary")

    async def write(self, writer: AbstractStreamWriter) -> None:
        for chunk in self._chunks:
            if self._digest is not None:
                self._digest.update(chunk)
            await writer.write(chunk)
        self.complete = True


def _form(content: BytesLike | _SealedPayload, filename: str, fields: dict[str, str]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():  # fields first, so the service can stream the file through
        form.add_field(name, value)
    # Written in small pieces with flow control, so the transport never buffers a second full copy of a
    # large payload: BytesIO shares the buffer of bytes (and keeps the length known); other buffers are
    # sliced (sent chunked).
    body: io.BytesIO | AsyncIterator[memoryview] | _SealedPayload
    if isinstance(content, _SealedPayload):
        body = content
    else:
        body = io.BytesIO(content) if isinstance(content, bytes) else _slices(content)
    form.add_field(api.FILE, body, filename=filename, content_type="application/octet-stream")
    return form


def _object_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def detail(exc: ServiceHTTPError) -> str:
    """The ``detail`` of a FastAPI error body (the first message of a validation error), else the raw body."""
    try:
        found = json.loads(exc.reason)["detail"]
    except (ValueError, KeyError, TypeError):
        return exc.reason
    if isinstance(found, list) and found and isinstance(found[0], dict):
        return str(found[0].get("msg", found))
    return str(found)


def local_filename() -> str:
    """``<ns since epoch, 20 digits>-<counter, 8 digits>.pkl``: tagged results sort by it in save order."""
    return f"{time.time_ns():0{_STAMP_DIGITS}d}-{next(_local_counter) % 10**_COUNTER_DIGITS:0{_COUNTER_DIGITS}d}.pkl"


def save_order_key(filename: str) -> tuple[int, int]:
    """Sort key of a tagged result: its save stamp, or (0, 0) (oldest) for names the SDK did not choose."""
    stamp, _, rest = filename.partition("-")
    counter = rest.removesuffix(".pkl")
    if len(stamp) == _STAMP_DIGITS and stamp.isdigit() and len(counter) == _COUNTER_DIGITS and counter.isdigit():
        return int(stamp), int(counter)
    return 0, 0


class StorageClient:
    """Async operations behind FlameCoreSDK's storage methods."""

    def __init__(self, service: ServiceClient, config: IdentifiedNodeConfig, logger: FlameLogger,
                 participant_ids: Callable[[], list[str]]) -> None:
        self.service = service.with_auth_statuses(api.AUTH_STATUSES)
        self.config = config
        self.logger = logger
        self.participant_ids = participant_ids

    @property
    def node_id(self) -> str:
        return self.config.node_id or ""

    async def connect(self) -> None:
        """A cheap authenticated call; raises if the result service is unreachable or refuses the token."""
        await self.service.json("GET", api.LOCAL_TAGS)

    # -- transfers ----------------------------------------------------------------------------------
    async def _upload(self, path: str, content: BytesLike, filename: str, fields: dict[str, str] | None = None,
                      ok: tuple[int, ...] = (200, 201, 204)) -> Any:
        fields = fields or {}
        return await self.service.json("PUT", path, ok=ok, data_factory=lambda: _form(content, filename, fields))

    async def _download(self, path: str, params: dict[str, str] | None = None, limit: int | None = None) -> bytearray:
        """Body of ``GET path`` in one buffer (only its first ``limit`` + 1 bytes when ``limit`` is given)."""
        async with self.service.stream("GET", path, params=params) as resp:
            size = resp.content_length
            buffer = bytearray(size) if size is not None and limit is None else bytearray()
            received = 0
            async for chunk in resp.content.iter_chunked(CHUNK):
                if size is None or limit is not None:
                    buffer += chunk
                    if limit is not None and len(buffer) > limit:
                        return buffer
                elif received + len(chunk) > size:
                    raise FlameError(f"GET {path} sent more than its announced {size} bytes")
                else:
                    buffer[received : received + len(chunk)] = chunk
                received += len(chunk)
            if size is not None and limit is None and received != size:
                raise FlameError(f"GET {path} ended after {received} of {size} bytes; the download was cut off")
            return buffer

    # -- final results ------------------------------------------------------------------------------
    async def submit_final_result(self, result: Any, output_type: str | list[str] = "str",
                                  multiple_results: bool = False, filename: str | list[str] | None = None,
                                  local_dp: dict[str, float] | None = None) -> dict[str, str] | list[dict[str, str]]:
        """Upload one file per result element to the hub (aggregator only); ``local_dp`` has the service add
        Laplace noise to each (single-number) element."""
        if self.config.node_role != "aggregator":
            raise RoleError(f"submit_final_result is only available on the aggregator; this node "
                            f"({self.config.node_id}) has role {self.config.node_role!r}. Send results to the "
                            f"aggregator (e.g. send_intermediate_data) and submit them there")
        dp = None if local_dp is None else dp_mechanism.check_params(local_dp)
        files = plan_final_files(result, output_type, multiple_results, filename)
        if dp is not None:
            files = [self._as_dp_file(f, multiple_results) for f in files]
        responses = []
        for file in files:
            try:
                if dp is None:
                    await self._upload(api.FINAL, encode_final(file.result, file.output_type), file.filename)
                else:
                    await self._upload(api.FINAL_LOCAL_DP, dp_mechanism.encode(file.result), file.filename,
                                       {"epsilon": repr(dp[0]), "sensitivity": repr(dp[1])})
            except ServiceHTTPError as exc:
                raise self._explain(exc, f"final result {file.filename}") from None
            self.logger.log(f"submitted final result {file.filename}", "debug")
            responses.append({"status": "success"})
        return responses if multiple_results else responses[0]

    def _as_dp_file(self, file: FinalFile, multiple_results: bool) -> FinalFile:
        value = dp_mechanism.check_number(file.result, f"result {file.filename}" if multiple_results else "the result")
        if file.output_type != "str":
            self.logger.log(f"local DP results are submitted as text; output_type={file.output_type!r} is replaced "
                            f"by 'str' for {file.filename}", "warn")
        return FinalFile(value, "str", file.filename)

    # -- errors -------------------------------------------------------------------------------------
    def _explain(self, exc: ServiceHTTPError, what: str) -> Exception:
        """The exception that names the likely cause of a result service error answer."""
        reason = detail(exc)
        if exc.status == 422:
            return ValueError(f"the result service refused {what}: {reason}. Storage ids are the UUIDs that "
                              f"save_intermediate_data returned")
        if exc.status == 404 and reason.startswith(api.REMOTE_NODE_MISSING.split("{")[0]):
            return UnknownNodeError(f"{reason} The hub does not know this node, so no data can be encrypted for or "
                                    f"authenticated from it; use get_participant_ids() for valid ids")
        if exc.status == 404 and "bucket" in reason:
            return FlameError(f"the hub has no storage for this analysis ({reason}); the analysis was not set up "
                              f"completely on the hub")
        if exc.status == 404:
            return ValueError(f"{what} does not exist: {reason}")
        if exc.status == 400 and "public key" in reason:
            return UnknownNodeError(f"{reason}: the node cannot receive encrypted data until it registers one")
        if exc.status == 400:
            return ValueError(f"the result service refused {what}: {reason}")
        return exc

    # -- intermediate data --------------------------------------------------------------------------
    def _check_nodes(self, node_ids: object) -> list[str]:
        if isinstance(node_ids, str) or not isinstance(node_ids, (list, tuple)) or not node_ids:
            raise ValueError(f"remote_node_ids must be a non-empty list of node ids for location='global', got "
                             f"{node_ids!r}; global data is always encrypted for its recipients")
        known = {*self.participant_ids(), self.node_id}
        strangers = [n for n in node_ids if n not in known]
        if strangers:
            raise UnknownNodeError(f"remote_node_ids {strangers} are not participants of analysis "
                                   f"{self.config.analysis_id}; use get_participant_ids() for valid ids")
        return list(dict.fromkeys(node_ids))

    def _route(self, sender: str, recipient: str) -> frames.Route:
        return frames.Route(self.config.analysis_id, sender, recipient)

    async def _upload_sealed(self, pieces: list[BytesLike], key: bytes, hashed: bool) -> tuple[str, str | None]:
        """Seal the payload (``pieces`` one after the other) under ``key`` and store it as is (no
        ``remote_node_id``: the service passes it through unencrypted, and can return it in full); its object id
        and, when ``hashed``, the SHA-256 of the sealed bytes. The sealed stream is produced while it is sent, a
        segment at a time, and hashed on the way."""
        context = frames.sealed_context(self.config.analysis_id, self.node_id)
        attempts: list[_SealedPayload] = []
        size = parts_size(pieces)

        def form() -> aiohttp.FormData:  # called once per attempt: each seals afresh (a new nonce prefix)
            attempts.append(_SealedPayload(sealing.seal_pieces(key, context, pieces), sealing.sealed_size(size),
                                           hashed=hashed))
            return _form(attempts[-1], "data.sealed", {})

        answer = await self.service.json("PUT", api.INTERMEDIATE, ok=(200, 201, 204), data_factory=form)
        sent = attempts[-1]
        if not sent.complete:
            raise FlameError("the result service answered before the sealed upload was sent completely")
        return str(answer["object_id"]), sent.sha256

    async def _save_global(self, data: Any, recipients: list[str]) -> dict[str, dict[str, str]]:
        pieces = dump_parts(data)  # nothing of data's buffers is copied
        inline = {r: frames.inline_frame(self._route(self.node_id, r), b"") for r in recipients}
        size = parts_size(pieces)
        # small data goes inline as one plain pickle; the rest is sealed as parts under a fresh key
        payload = dump_object(data) if size <= api.MAX_DECRYPTABLE_PLAINTEXT else b""
        key = sealing.new_key()

        async def save_frame(node_id: str, sealed: frames.SealedRef | None) -> tuple[str, str]:
            route = self._route(self.node_id, node_id)
            frame = frames.key_frame(route, sealed) if sealed else inline[node_id] + payload
            answer = await self._upload(api.INTERMEDIATE, frame, "data.pkl", {api.REMOTE_NODE_ID: node_id})
            return answer["url"], str(answer["object_id"])

        try:
            sealed_id = None
            if payload and all(len(header) + len(payload) <= api.MAX_DECRYPTABLE_PLAINTEXT
                               for header in inline.values()):
                saved = await all_or_none([save_frame(n, None) for n in recipients])
            elif len(recipients) == 1:  # the frame needs neither the object's id nor its digest: both at once
                sole = frames.SealedRef(None, key, size, None)
                (sealed_id, _), saved_one = await all_or_none([self._upload_sealed(pieces, key, hashed=False),
                                                               save_frame(recipients[0], sole)])
                saved = [saved_one]
            else:  # each frame carries the sealed object's digest: the frames follow its upload
                sealed_id, digest = await self._upload_sealed(pieces, key, hashed=True)
                shared = frames.SealedRef(sealed_id, key, size, digest)
                saved = await all_or_none([save_frame(n, shared) for n in recipients])
        except ServiceHTTPError as exc:
            raise self._explain(exc, "global data") from None
        return {node_id: {"status": "success", "url": url, "id": frames.storage_id(frame_id, sealed_id)}
                for node_id, (url, frame_id) in zip(recipients, saved, strict=True)}

    async def save_intermediate_data(self, data: Any, location: str, remote_node_ids: list[str] | None = None,
                                     tag: str | None = None) -> dict[str, dict[str, str]] | dict[str, str]:
        """Pickle ``data`` and store it locally (optionally tagged) or on the hub, encrypted per recipient."""
        if _check_location(location) == "global":
            if tag is not None:
                raise ValueError("tags only apply to location='local'; global data is addressed by its storage id")
            return await self._save_global(data, self._check_nodes(remote_node_ids))
        if remote_node_ids is not None:
            raise ValueError("remote_node_ids only apply to location='global'; local data stays on this node")
        fields = {} if tag is None else {api.TAG: check_tag(tag)}
        answer = await self._upload(api.LOCAL, dump_object(data), local_filename(), fields)
        return {"status": "success", "url": answer["url"], "id": _object_id(answer["url"])}

    async def get_intermediate_data(self, location: str, query: str | None = None, tag: str | None = None,
                                    tag_option: str | None = "all", sender_id: str | None = None) -> Any:
        """Local data by id or tag (a list for tags: all in save order, or only the first/last saved), or global
        data by id."""
        tag_option = "all" if tag_option is None else tag_option
        if tag_option not in TAG_OPTIONS:
            raise ValueError(f"tag_option must be one of {', '.join(TAG_OPTIONS)}, got {tag_option!r}")
        if _check_location(location) == "global":
            if tag is not None:
                raise ValueError("tags only apply to location='local'; pass the storage id as query for global data")
            if not query:
                raise ValueError("get_intermediate_data('global') needs query=<storage id> (from "
                                 "save_intermediate_data or the sender's message)")
            return await self._get_global(*frames.split_storage_id(query), sender_id)
        if tag is not None:
            answer = await self.service.json("GET", api.LOCAL_TAGGED.format(tag=check_tag(tag)))
            items = sorted(answer["results"], key=lambda item: save_order_key(str(item["filename"])))
            ids = [_object_id(item["url"]) for item in items]
            ids = ids[:1] if tag_option == "first" else ids[-1:] if tag_option == "last" else ids
            return [await self._get_local(object_id) for object_id in ids]
        if not query:
            raise ValueError("get_intermediate_data('local') needs query=<storage id> or tag=<tag>")
        return await self._get_local(check_storage_id(query))

    async def _get_local(self, object_id: str) -> Any:
        try:
            return load_object(await self._download(api.LOCAL_OBJECT.format(object_id=object_id)))
        except ServiceHTTPError as exc:
            raise self._explain(exc, f"local data {object_id!r}") from None

    async def _get_global(self, frame_id: str, sealed_id: str | None, sender_id: str | None) -> Any:
        """The payload of a frame id (inline data), or of a key frame id and a sealed object id (sealed data: the
        sealed object is requested while the key frame is read)."""
        if sender_id is not None and sender_id not in {*self.participant_ids(), self.node_id}:
            raise UnknownNodeError(f"sender {sender_id} is not a participant of analysis {self.config.analysis_id}")
        reading: asyncio.Future[tuple[frames.Frame, str]]
        if sealed_id is None:  # inline data, or a key frame that names its sealed object (several recipients)
            frame, sender = await self._read_frame(frame_id, sender_id)
            if frame.sealed is None:
                return load_object(frame.payload)
            if frame.sealed.object_id is None:
                raise ValueError(f"{frame_id!r} is only the first half of a storage id of sealed global data; pass "
                                 f"the whole id save_intermediate_data returned (two UUIDs joined by "
                                 f"{frames.ID_SEPARATOR!r})")
            sealed_id = frame.sealed.object_id
            reading = asyncio.get_running_loop().create_future()
            reading.set_result((frame, sender))
        else:
            reading = asyncio.ensure_future(self._read_frame(frame_id, sender_id))
        try:
            payload = await self._open_sealed(sealed_id, reading, frame_id)
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        return load_parts(payload) if is_parts(payload) else load_object(payload)

    async def _read_frame(self, frame_id: str, sender_id: str | None) -> tuple[frames.Frame, str]:
        """The checked frame stored under ``frame_id`` for this node, and who sent it (``sender_id``, else the
        participant the service confirms: it answers 400 at once for a wrong sender, so trying each is cheap)."""
        candidates = [sender_id] if sender_id is not None else [*self.participant_ids(), self.node_id]
        path = api.INTERMEDIATE_OBJECT.format(object_id=frame_id)
        for candidate in candidates:
            try:
                # a 200 is the service's proof that ``candidate`` encrypted it for this node
                data = await self._download(path, {api.SENDER_QUERY: candidate})
            except ServiceHTTPError as exc:
                if exc.status == 400 and sender_id is None:
                    continue
                if exc.status == 400:
                    raise await self._undecryptable(frame_id, candidate) from None
                raise self._explain(exc, f"global data {frame_id!r}") from None
            frame = frames.parse_frame(data)
            frames.check_route(frame.route, self._route(candidate, self.node_id), frame_id)
            return frame, candidate
        raise await self._undecryptable(frame_id, None)

    async def _undecryptable(self, object_id: str, sender: str | None) -> FlameError:
        """Why the service could not decrypt: an object over its chunk limit, or not from ``sender`` for us."""
        limit = api.DECRYPT_CHUNK
        try:
            stored = await self._download(api.INTERMEDIATE_OBJECT.format(object_id=object_id), limit=limit)
        except ServiceHTTPError:
            stored = bytearray()
        if len(stored) > limit:
            return DecryptionLimitError(
                f"global data {object_id} is larger than the node result service can decrypt: it decrypts "
                f"downloads in 1024-byte chunks, so it refuses objects of {api.MAX_DECRYPTABLE_PLAINTEXT + 1} plaintext "
                f"bytes or more (node-result-service 0.1.4). flame_sdk never uploads such objects (larger payloads "
                f"travel sealed); the sender used another client, which must keep global payloads under "
                f"{api.MAX_DECRYPTABLE_PLAINTEXT + 1} bytes")
        who = f"by {sender}" if sender else f"by any participant of analysis {self.config.analysis_id}"
        return TamperedDataError(f"this node's result service could not decrypt global data {object_id}: it was not "
                                 f"encrypted {who} for this node ({self.node_id}), or it was modified")

    async def _open_sealed(self, object_id: str, key_frame: Awaitable[tuple[frames.Frame, str]],
                           frame_id: str) -> bytearray:
        """Download the sealed object ``object_id`` and open it as it streams in, with the key of ``key_frame``
        (awaited once the download was requested, so the two overlap; unread, the download waits under the
        transport's flow control). Decrypted (and hashed, when the key frame has a digest) chunk by chunk into
        one buffer of the announced size; only an authentic stream whose digest matches the frame's is returned."""
        async with contextlib.AsyncExitStack() as stack:
            try:
                resp = await stack.enter_async_context(
                    self.service.stream("GET", api.INTERMEDIATE_OBJECT.format(object_id=object_id)))
            except ServiceHTTPError as exc:
                raise self._explain(exc, f"sealed global data {object_id!r}") from None
            frame, sender = await key_frame
            sealed = frame.sealed
            if sealed is None:
                raise TamperedDataError(f"global data {frame_id} holds its payload inline, but its storage id names "
                                        f"a sealed object {object_id}: the id was altered")
            if sealed.object_id is not None and sealed.object_id != object_id:
                raise TamperedDataError(f"the key frame {frame_id} is for sealed object {sealed.object_id}, but the "
                                        f"storage id names {object_id}: the id was altered")
            opener = sealing.StreamOpener(sealed.key, frames.sealed_context(self.config.analysis_id, sender),
                                          sealed.size)
            digest = None if sealed.sha256 is None else hashlib.sha256()
            tampered: TamperedDataError | None = None
            async for chunk in resp.content.iter_any():  # as received: no re-cutting, no joins
                if digest is not None:
                    digest.update(chunk)
                if tampered is None:
                    try:
                        opener.feed(chunk)
                    except TamperedDataError as exc:  # reported after the digest: a swapped object says so
                        tampered = exc
        if digest is not None and digest.hexdigest() != sealed.sha256:
            raise TamperedDataError(f"sealed global data {object_id} does not match the digest its sender "
                                    f"{sender} announced: it was modified")
        if tampered is not None:
            raise tampered
        try:
            return opener.finish()
        except TamperedDataError as exc:
            raise TamperedDataError(f"sealed global data {object_id}: {exc}") from None

    async def get_local_tags(self, filter: str | None = None) -> list[str]:  # noqa: A002 - documented name
        """Tags of this project's local storage in alphabetical order, optionally only those containing
        ``filter`` (the service itself lists them in no guaranteed order)."""
        answer = await self.service.json("GET", api.LOCAL_TAGS)
        names = sorted(str(item["name"]) for item in answer["tags"])
        return names if filter is None else [name for name in names if filter in name]
