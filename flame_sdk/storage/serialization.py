"""Turning results into upload bytes and intermediate data back into objects.

What is pickled: every intermediate data object (local and global, as the reference SDK does) and final
results submitted with ``output_type='pickle'``. ``str`` final results are ``str(result)`` in UTF-8 and
``bytes`` final results are uploaded as given. Intermediate data is loaded with a restricted unpickler
(``flame_sdk.storage.safe_pickle``): plain data, numpy and pandas objects, and what the analysis allowed.
"""

from __future__ import annotations

import pickle
from typing import Any

from flame_sdk.storage import safe_pickle

OUTPUT_TYPES = ("str", "bytes", "pickle")
PICKLE_PROTOCOL = 5

BytesLike = bytes | bytearray | memoryview


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
