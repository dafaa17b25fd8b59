"""What the star templates may log about data and results: shapes and counts, never values.

Logs leave the node (the PO streams them to the hub), and a local-DP run's aggregate is only protected once
the result service has added noise; so the templates describe what they hold instead of printing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def shape(value: Any) -> str:
    """A description of ``value`` without any of its contents: type, length, shape or number of fields."""
    if value is None or isinstance(value, bool):
        return type(value).__name__
    if isinstance(value, (int, float, complex)):
        return f"a number ({type(value).__name__})"
    if isinstance(value, str):
        return f"str of {_plural(len(value), 'character')}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _plural(len(value), "byte")
    array_shape = getattr(value, "shape", None)
    if isinstance(array_shape, tuple) and all(isinstance(n, int) for n in array_shape):
        dims = "x".join(str(n) for n in array_shape) or "scalar"
        return f"{type(value).__name__} {dims}"
    if isinstance(value, Mapping):
        return f"{type(value).__name__} with {_plural(len(value), 'field')}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return f"{type(value).__name__} of {_plural(len(value), 'item')}"
    return type(value).__name__


def data_shape(data: Any) -> str:
    """What a node fetched, per data source: how many queries or datasets, resources or bytes (for data in
    another shape, such as plain objects a local test handed over: its :func:`shape`)."""
    if not isinstance(data, list) or not all(isinstance(source, Mapping) for source in data):
        return shape(data)
    parts = []
    for source in data:
        bundles = [v for v in source.values() if isinstance(v, Mapping)]
        if bundles and len(bundles) == len(source):
            entries = sum(len(b.get("entry") or []) for b in bundles)
            parts.append(f"{_plural(len(source), 'FHIR query', 'FHIR queries')}, {_plural(entries, 'resource')}")
        else:
            size = sum(len(v) for v in source.values() if isinstance(v, (bytes, bytearray, str)))
            parts.append(f"{_plural(len(source), 'dataset')}, {_plural(size, 'byte')}")
    return f"{_plural(len(data), 'source')}" + (": " + "; ".join(parts) if parts else "")
