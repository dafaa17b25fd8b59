"""A digest of a round's input (the aggregator's last answer) that is the same on every node that got it.

Masks are derived with this digest, so nodes that were sent different inputs get masks that do not cancel,
and their sum tells the aggregator nothing. The digest walks the value canonically (dict entries and set
members sorted by ``repr``, numbers by exact value, numpy arrays by dtype, shape and bytes), so it does not
depend on a process' hash seed; anything else is hashed as its pickle.
"""

from __future__ import annotations

import hashlib
import pickle
from typing import Any

import numpy as np


def _feed(value: Any, out: Any) -> None:
    if isinstance(value, dict):
        out.update(b"d%d:" % len(value))
        for key, item in sorted(value.items(), key=lambda pair: repr(pair[0])):
            _feed(key, out)
            _feed(item, out)
    elif isinstance(value, (list, tuple)):
        out.update(b"l%d:" % len(value) if isinstance(value, list) else b"t%d:" % len(value))
        for item in value:
            _feed(item, out)
    elif isinstance(value, (set, frozenset)):
        out.update(b"s%d:" % len(value))
        for item in sorted(value, key=repr):
            _feed(item, out)
    elif isinstance(value, np.ndarray) and value.dtype != object:
        out.update(f"a{value.dtype.str}{value.shape}:".encode())
        out.update(np.ascontiguousarray(value).tobytes())
    elif value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic)):
        text = repr(value.item()) if isinstance(value, np.generic) else repr(value)
        out.update(f"{type(value).__name__}{len(text)}:{text}".encode())
    else:
        data = pickle.dumps(value, protocol=5)
        out.update(b"p%d:" % len(data))
        out.update(data)


def input_digest(value: Any) -> bytes:
    """SHA-256 of ``value`` walked canonically (see the module docstring)."""
    out = hashlib.sha256()
    _feed(value, out)
    return out.digest()
