"""Turning results into upload bytes and intermediate data back into objects.

What is pickled: every intermediate data object (local and global, as the reference SDK does) and final
results submitted with ``output_type='pickle'``. ``str`` final results are ``str(result)`` in UTF-8 and
``bytes`` final results are uploaded as given. Intermediate data is loaded with a restricted unpickler
(``flame_sdk.storage.safe_pickle``): plain data, numpy and pandas objects, and what the analysis allowed.

Large global payloads travel as *parts* (``dump_parts`` / ``load_parts``): a pickle protocol 5 stream whose
buffers (numpy arrays, pandas blocks, bytearrays) are kept out of band, so pickling copies none of them and the
receiver rebuilds them as views into the one buffer it decrypted the payload into. A ``bytes`` payload itself
travels out of band too (pickle would copy it into its stream; the receiver's ``bytes`` is its one copy). Layout: ``FLP5``, the part
count (4 bytes, big-endian) and each part's size (8 bytes each), then the parts, each starting at a multiple of
64 bytes (zero padding); part 0 is the pickle stream, the others its out-of-band buffers in order.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any, SupportsIndex

from flame_sdk.storage import safe_pickle

OUTPUT_TYPES = ("str", "bytes", "pickle")
PICKLE_PROTOCOL = 5

BytesLike = bytes | bytearray | memoryview
PARTS_MAGIC = b"FLP5"
PART_ALIGNMENT = 64
_COUNT = struct.Struct(">4sI")
_SIZE = struct.Struct(">Q")


def check_output_type(output_type: object) -> str:
    if not isinstance(output_type, str) or output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type {output_type!r} is not supported; use one of {', '.join(OUTPUT_TYPES)}")
    return output_type


def encode_final(result: Any, output_type: str) -> BytesLike:
    """File content of a final result for ``output_type`` (no copy for bytes-like results)."""
    check_output_type(output_type)
    if output_type == "str":
        return str(result).encode("utf-8")
    if output_type == "bytes":
        if isinstance(result, (bytes, bytearray)):
            return result
        try:
            return memoryview(result).cast("B")
        except TypeError:
            raise ValueError(
                f"output_type='bytes' needs a bytes-like result (bytes, bytearray, memoryview, numpy buffer), got "
                f"{type(result).__name__}; use output_type='str' for text or 'pickle' for Python objects"
            ) from None
    return dump_object(result)


def dump_object(data: Any) -> bytes:
    """Pickle ``data`` (protocol 5) with a clear error for objects that cannot be pickled."""
    try:
        return pickle.dumps(data, protocol=PICKLE_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"cannot pickle {type(data).__name__} ({exc}); convert it to plain data (lists, dicts, numbers, "
            f"numpy arrays, pandas frames) first"
        ) from None


def load_object(payload: BytesLike) -> Any:
    """Unpickle intermediate data with the restricted unpickler (``UnsafePickleError`` names what it refused)."""
    return safe_pickle.loads(payload)


def _padding(offset: int) -> int:
    return -offset % PART_ALIGNMENT


class _OutOfBandBytes:
    """Pickles a ``bytes`` object as ``bytes(<out-of-band buffer>)``: the stream does not copy it."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[type[bytes], tuple[pickle.PickleBuffer]]:
        return bytes, (pickle.PickleBuffer(self.data),)


def dump_parts(data: Any) -> list[BytesLike]:
    """``data`` as parts (see the module docstring): pieces to send one after the other; the out-of-band buffers
    are views of ``data``'s own memory, not copies."""
    buffers: list[pickle.PickleBuffer] = []
    top = _OutOfBandBytes(data) if type(data) is bytes else data
    try:
        stream = pickle.dumps(top, protocol=PICKLE_PROTOCOL, buffer_callback=buffers.append)
        raws: list[BytesLike] = [stream, *(buffer.raw() for buffer in buffers)]
    except (pickle.PicklingError, TypeError, AttributeError, BufferError) as exc:
        raise ValueError(
            f"cannot pickle {type(data).__name__} ({exc}); convert it to plain data (lists, dicts, numbers, "
            f"numpy arrays, pandas frames) first"
        ) from None
    header = _COUNT.pack(PARTS_MAGIC, len(raws)) + b"".join(_SIZE.pack(len(raw)) for raw in raws)
    pieces: list[BytesLike] = [header]
    offset = len(header)
    for raw in raws:
        if pad := _padding(offset):
            pieces.append(bytes(pad))
            offset += pad
        pieces.append(raw)
        offset += len(raw)
    return pieces


def parts_size(pieces: list[BytesLike]) -> int:
    return sum(len(memoryview(piece).cast("B")) for piece in pieces)


def is_parts(payload: BytesLike) -> bool:
    return bytes(memoryview(payload)[:4]) == PARTS_MAGIC


def load_parts(payload: bytearray, allow: tuple[str, ...] = ()) -> Any:
    """Unpickle parts with the restricted unpickler; out-of-band buffers become views of ``payload`` (no copy).
    ``pickle.UnpicklingError`` when the layout does not add up."""
    view = memoryview(payload)
    try:
        magic, count = _COUNT.unpack_from(view)
        if magic != PARTS_MAGIC or count < 1:
            raise ValueError("no parts header")
        sizes = [_SIZE.unpack_from(view, _COUNT.size + i * _SIZE.size)[0] for i in range(count)]
    except (struct.error, ValueError):
        raise pickle.UnpicklingError("intermediate data has a malformed parts header; it was truncated or "
                                     "corrupted") from None
    offset = _COUNT.size + count * _SIZE.size
    parts = []
    for size in sizes:
        offset += _padding(offset)
        if offset + size > len(view):
            raise pickle.UnpicklingError(f"intermediate data is shorter than its parts header says ({len(view)} "
                                         f"bytes); it was truncated or corrupted")
        parts.append(view[offset : offset + size])
        offset += size
    if offset != len(view):
        raise pickle.UnpicklingError("intermediate data is longer than its parts header says; it was corrupted")
    return safe_pickle.loads(parts[0], allow, buffers=parts[1:])
