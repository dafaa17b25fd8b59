"""The layout of a nested structure of numbers, and the structure flattened into two number vectors.

What a secure sum adds is an analyzer's result: dicts, lists and tuples of ints, floats, bools and numpy
arrays or scalars of them. :func:`flatten` turns it into a :data:`Layout` (the containers, dict keys, array
shapes and number kinds, as plain tuples: it travels in the clear and every node's must be equal) plus one
float64 vector and one int64 vector of the numbers, in a canonical order (dict keys sorted by ``repr``, so
the order in which a node built a dict does not matter). :func:`unflatten` rebuilds the structure from the
layout and (summed) vectors; ints stay ints (bools count as 0/1), floats floats, numpy arrays keep their
shape with dtype int64 or float64.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

#: A layout node: ("dict", ((key, layout), ...)) | ("list" | "tuple", (layout, ...))
#: | ("array", kind, shape) | ("scalar", kind, "python" | "numpy"), with kind "int" or "float".
Layout = tuple[Any, ...]

INT_LIMIT = 2**63


class LayoutError(ValueError):
    """A structure cannot be summed securely (a leaf that is not a number), or two layouts differ."""


@dataclass(frozen=True)
class Flat:
    """A structure as its layout and its numbers."""

    layout: Layout
    floats: npt.NDArray[np.float64]
    ints: npt.NDArray[np.int64]


def _kind(dtype: np.dtype[Any]) -> str | None:
    return "int" if dtype.kind in "biu" else "float" if dtype.kind == "f" else None


def _sorted_items(value: dict[Any, Any]) -> list[tuple[Any, Any]]:
    items = sorted(value.items(), key=lambda item: repr(item[0]))
    reprs = [repr(key) for key, _ in items]
    if len(set(reprs)) != len(reprs):
        raise LayoutError(f"dict keys {reprs} are not told apart by repr(); use plain keys (str, int, tuples)")
    return items


class _Flattener:
    def __init__(self) -> None:
        self.floats: list[npt.NDArray[np.float64]] = []
        self.ints: list[npt.NDArray[np.int64]] = []

    def leaf(self, values: npt.NDArray[Any], kind: str, path: str) -> None:
        if kind == "float":
            numbers = values.astype(np.float64).reshape(-1)
            if not np.isfinite(numbers).all():
                raise LayoutError(f"{path} holds NaN or infinity, which has no sum in fixed point; replace it by a "
                                  f"number (e.g. 0 with a separate count) before sending")
            self.floats.append(numbers)
            return
        if values.dtype.kind == "u" and values.size and int(values.max()) >= INT_LIMIT:
            raise LayoutError(f"{path} holds an integer of 2**63 or more; secure sums take 64-bit signed integers")
        self.ints.append(values.astype(np.int64).reshape(-1))

    def walk(self, value: Any, path: str) -> Layout:
        if isinstance(value, dict):
            return ("dict", tuple((key, self.walk(item, f"{path}[{key!r}]")) for key, item in _sorted_items(value)))
        if isinstance(value, (list, tuple)):
            return ("list" if isinstance(value, list) else "tuple",
                    tuple(self.walk(item, f"{path}[{i}]") for i, item in enumerate(value)))
        if isinstance(value, np.ndarray):
            kind = _kind(value.dtype)
            if kind is None:
                raise LayoutError(f"{path} is a numpy array of dtype {value.dtype}; secure sums add arrays of ints, "
                                  f"floats or bools only")
            self.leaf(value, kind, path)
            return ("array", kind, tuple(int(n) for n in value.shape))
        if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
            number = np.asarray(value)
            kind = _kind(number.dtype)
            if isinstance(value, int) and not -INT_LIMIT <= value < INT_LIMIT:
                raise LayoutError(f"{path} is {value}, beyond 64-bit integers; secure sums take 64-bit signed integers")
            if kind is None:  # pragma: no cover - the isinstance check admits numbers only
                raise LayoutError(f"{path}: unsupported number {value!r}")
            self.leaf(number, kind, path)
            return ("scalar", kind, "numpy" if isinstance(value, np.generic) else "python")
        hint = " (use .to_numpy() or a dict of columns)" if hasattr(value, "to_numpy") else ""
        raise LayoutError(f"{path} is a {type(value).__name__}{hint}: a secure sum adds numbers only (ints, floats, "
                          f"bools, numpy arrays) in dicts, lists and tuples. Keep labels and settings out of what "
                          f"the analyzer returns; the aggregator gets them from its own arguments")


def flatten(value: Any) -> Flat:
    """The layout and numbers of ``value``; LayoutError names the first part that is not a number."""
    flattener = _Flattener()
    layout = flattener.walk(value, "result")
    floats = np.concatenate(flattener.floats) if flattener.floats else np.zeros(0, dtype=np.float64)
    ints = np.concatenate(flattener.ints) if flattener.ints else np.zeros(0, dtype=np.int64)
    return Flat(layout, floats, ints)


def unflatten(layout: Layout, floats: npt.ArrayLike, ints: Sequence[int]) -> Any:
    """The structure of ``layout`` filled with the numbers (Python ints; they may exceed 64 bits in scalars)."""
    float_values = np.asarray(floats, dtype=np.float64)
    int_values = list(ints)
    positions = {"float": 0, "int": 0}

    def take(kind: str, count: int) -> Any:
        start = positions[kind]
        positions[kind] += count
        return float_values[start:start + count] if kind == "float" else int_values[start:start + count]

    def build(node: Layout) -> Any:
        tag = node[0]
        if tag == "dict":
            return {key: build(child) for key, child in node[1]}
        if tag in ("list", "tuple"):
            items = [build(child) for child in node[1]]
            return items if tag == "list" else tuple(items)
        if tag == "array":
            _, kind, shape = node
            values = take(kind, int(np.prod(shape, dtype=np.int64)))
            if kind == "float":
                return np.array(values, dtype=np.float64).reshape(shape)
            if any(not -INT_LIMIT <= v < INT_LIMIT for v in values):
                raise LayoutError(f"an integer array's sum left the 64-bit range: {max(values, key=abs)}")
            return np.array(values, dtype=np.int64).reshape(shape)
        _, kind, flavour = node
        [value] = take(kind, 1)
        if kind == "float":
            return np.float64(value) if flavour == "numpy" else float(value)
        return np.int64(value) if flavour == "numpy" and -INT_LIMIT <= value < INT_LIMIT else int(value)

    result = build(layout)
    if positions["float"] != len(float_values) or positions["int"] != len(int_values):
        raise LayoutError(f"the layout holds {positions['float']} floats and {positions['int']} ints, the vectors "
                          f"{len(float_values)} and {len(int_values)}")
    return result


def counts(layout: Layout) -> tuple[int, int]:
    """(number of floats, number of ints) a structure of this layout holds."""
    totals = {"float": 0, "int": 0}
    for _, kind, size in leaves(layout):
        totals[kind] += size
    return totals["float"], totals["int"]


def leaves(layout: Layout, path: str = "result") -> Iterator[tuple[str, str, int]]:
    """(path, kind, number of values) of each leaf, in the order of the flattened vectors."""
    tag = layout[0]
    if tag == "dict":
        for key, child in layout[1]:
            yield from leaves(child, f"{path}[{key!r}]")
    elif tag in ("list", "tuple"):
        for i, child in enumerate(layout[1]):
            yield from leaves(child, f"{path}[{i}]")
    elif tag == "array":
        yield path, layout[1], int(np.prod(layout[2], dtype=np.int64))
    else:
        yield path, layout[1], 1


def path_of(layout: Layout, kind: str, index: int) -> str:
    """Where the ``index``-th value of the ``kind`` vector sits, e.g. ``result['hessian'] (entry 5)``."""
    seen = 0
    for path, leaf_kind, size in leaves(layout):
        if leaf_kind == kind:
            if index < seen + size:
                return path if size == 1 and not path.endswith("]") else f"{path} (entry {index - seen})"
            seen += size
    return f"{kind} value {index}"


def difference(first: Layout, second: Layout, path: str = "result") -> str | None:
    """Where two layouts first differ (a readable description), or None when they are equal."""
    if first == second:
        return None
    if first[0] != second[0]:
        return f"{path} is a {_describe(first)} on one node and a {_describe(second)} on the other"
    tag = first[0]
    if tag == "dict":
        keys_a, keys_b = [k for k, _ in first[1]], [k for k, _ in second[1]]
        if keys_a != keys_b:
            only_a = [k for k in keys_a if k not in keys_b][:5]
            only_b = [k for k in keys_b if k not in keys_a][:5]
            return f"{path} has keys {only_a} on one node and {only_b} on the other"
        for (key, a), (_, b) in zip(first[1], second[1], strict=True):
            found = difference(a, b, f"{path}[{key!r}]")
            if found:
                return found
    if tag in ("list", "tuple"):
        if len(first[1]) != len(second[1]):
            return f"{path} has {len(first[1])} entries on one node and {len(second[1])} on the other"
        for i, (a, b) in enumerate(zip(first[1], second[1], strict=True)):
            found = difference(a, b, f"{path}[{i}]")
            if found:
                return found
    return f"{path} is a {_describe(first)} on one node and a {_describe(second)} on the other"


def _describe(node: Layout) -> str:
    tag = node[0]
    if tag == "array":
        return f"{node[1]} array of shape {node[2]}"
    if tag == "scalar":
        return f"{node[2]} {node[1]}"
    return f"{tag} of {len(node[1])}"
