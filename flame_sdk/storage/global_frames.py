"""What the SDK uploads as global intermediate data, inside the encryption of the node result service.

The real result service (node-result-service 0.1.4, ``project/routers/intermediate.py``) encrypts an
upload for ``remote_node_id`` in one AES-GCM message, but decrypts downloads in the 1024-byte chunks of
its hub client, so it can only ever return objects of at most 996 plaintext bytes (12-byte IV and 16-byte
tag around them). The SDK therefore uploads one of two frames, each small enough:

* inline (``I``): the header and the pickled payload itself, when the frame fits in 996 bytes;
* key (``K``): the header plus the size and AES key of a *sealed* object that holds the payload. The sealed
  object (``flame_sdk.storage.sealed``) is uploaded without ``remote_node_id``, so the service stores and
  returns it as is; only the key frame goes through the node's encryption. When the key went to more than one
  recipient, the frame also names the sealed object's id and SHA-256 (each recipient could forge a stream under
  the shared key); for a sole recipient it names neither (only sender and recipient hold a fresh key, so the
  AEAD alone proves the object is the sender's), and the two uploads run at the same time.

Both frames carry the analysis, sender and recipient ids, which the recipient compares with its own
analysis, the sender its result service authenticated (``?node_id=``) and itself, so an object cannot be
replayed into another analysis or passed off as meant for someone else. Frame layout: ``FLG1``, one kind
byte, a 2-byte big-endian header length, the header as UTF-8 JSON, then the body (inline payload only).

Storage ids: an inline frame's id is the service's object id (a UUID); sealed data's is
``<key frame id>.<sealed object id>``, so a recipient requests both objects at once.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from flame_sdk.errors import TamperedDataError
from flame_sdk.protocol.result_api import MAX_DECRYPTABLE_PLAINTEXT
from flame_sdk.storage.tags import check_storage_id

MAGIC = b"FLG1"
INLINE, KEY = b"I", b"K"
_PREFIX = struct.Struct(">4scH")
_CONTEXT = b"flame_sdk/global/v1"
#: Separates the key frame's id from the sealed object's in the storage id of sealed data.
ID_SEPARATOR = "."


@dataclass(frozen=True)
class Route:
    """Who sends global data to whom, in which analysis."""

    analysis_id: str
    sender_id: str
    recipient_id: str


@dataclass(frozen=True)
class SealedRef:
    """How to open the sealed payload; with more than one recipient also where it lies and ``sha256`` of the
    sealed bytes (others hold the same key and could forge a stream under it), else None for both."""

    object_id: str | None
    key: bytes
    size: int
    sha256: str | None


@dataclass(frozen=True)
class Frame:
    route: Route
    payload: bytes = b""  # inline frames
    sealed: SealedRef | None = None  # key frames


def _frame(kind: bytes, header: dict[str, Any], body: bytes = b"") -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return _PREFIX.pack(MAGIC, kind, len(raw)) + raw + body


def _route_header(route: Route) -> dict[str, Any]:
    return {"analysis": route.analysis_id, "sender": route.sender_id, "recipient": route.recipient_id}


def inline_frame(route: Route, payload: bytes) -> bytes:
    return _frame(INLINE, _route_header(route), payload)


def key_frame(route: Route, sealed: SealedRef) -> bytes:
    frame = _frame(KEY, {**_route_header(route), "object": sealed.object_id, "key": sealed.key.hex(),
                         "size": sealed.size, "sha256": sealed.sha256})
    if len(frame) > MAX_DECRYPTABLE_PLAINTEXT:
        raise ValueError(f"node or analysis ids are too long for a key frame ({len(frame)} bytes, the result "
                         f"service returns at most {MAX_DECRYPTABLE_PLAINTEXT})")
    return frame


def sealed_context(analysis_id: str, sender_id: str) -> bytes:
    """Associated data of a sealed payload: shared by all its recipients, each holds the key in its frame."""
    return _CONTEXT + json.dumps([analysis_id, sender_id]).encode("utf-8")


def parse_frame(data: bytes | bytearray) -> Frame:
    """Read a frame; TamperedDataError if it is not one (e.g. data a different client uploaded)."""
    if len(data) < _PREFIX.size or data[:4] != MAGIC:
        raise TamperedDataError("the object is not a flame_sdk global data frame; it was not sent by flame_sdk's "
                                "save_intermediate_data/send_intermediate_data")
    _, kind, size = _PREFIX.unpack_from(data)
    try:
        header = json.loads(bytes(data[_PREFIX.size : _PREFIX.size + size]))
        route = Route(str(header["analysis"]), str(header["sender"]), str(header["recipient"]))
        if kind == INLINE:
            return Frame(route, payload=bytes(data[_PREFIX.size + size :]))
        if kind == KEY:
            digest, object_id = header["sha256"], header["object"]
            sealed = SealedRef(None if object_id is None else str(object_id), bytes.fromhex(header["key"]),
                               int(header["size"]), None if digest is None else str(digest))
            return Frame(route, sealed=sealed)
    except (ValueError, KeyError, TypeError):
        pass
    raise TamperedDataError("the object has a malformed flame_sdk global data frame")


def check_route(found: Route, expected: Route, object_id: str) -> None:
    """The frame must name this analysis, the authenticated sender and this node."""
    for what, got, want in (("analysis", found.analysis_id, expected.analysis_id),
                            ("sender", found.sender_id, expected.sender_id),
                            ("recipient", found.recipient_id, expected.recipient_id)):
        if got != want:
            raise TamperedDataError(f"global data {object_id} names {what} {got!r}, expected {want!r}: it was "
                                    f"replayed from another transfer")


def storage_id(frame_id: str, sealed_id: str | None) -> str:
    """The storage id a recipient gets: the frame's id, joined by the sealed object's for sealed data."""
    return frame_id if sealed_id is None else f"{frame_id}{ID_SEPARATOR}{sealed_id}"


def split_storage_id(query: object) -> tuple[str, str | None]:
    """(key or inline frame id, sealed object id or None) of a global storage id; ValueError for anything else."""
    if isinstance(query, str) and query.count(ID_SEPARATOR) == 1:
        frame_id, sealed_id = query.split(ID_SEPARATOR)
        try:
            return check_storage_id(frame_id), check_storage_id(sealed_id)
        except ValueError:
            pass
    elif not isinstance(query, str) or ID_SEPARATOR not in query:
        return check_storage_id(query), None
    raise ValueError(f"{query!r} is not a storage id of global data: that is a UUID, or two UUIDs joined by "
                     f"{ID_SEPARATOR!r} for sealed data, as save_intermediate_data returned it (its 'id') or a sender's "
                     f"message carries it")
