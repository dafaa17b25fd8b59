"""Compare a federated run with the same computation on the pooled data, field by field."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from flame_sdk.star.aggregator import StarAggregator
from flame_sdk.star.analyzer import StarAnalyzer
from flame_sdk.testing.local_run import LocalRun, run_local


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{'a.b.0': 1.0, ...}`` from nested dicts/lists, numpy arrays, pandas objects, JSON or CSV text."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    if isinstance(value, str):
        parsed = _parse_text(value)
        if parsed is not None:
            return flatten(parsed, prefix)
        return {prefix or "value": value}
    if isinstance(value, pd.DataFrame):
        return flatten({str(i): {str(c): v for c, v in row.items()} for i, row in value.iterrows()}, prefix)
    if isinstance(value, pd.Series):
        return flatten({str(k): v for k, v in value.items()}, prefix)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, (list, tuple)):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{index}" if prefix else str(index)))
        return out
    if isinstance(value, np.generic):
        value = value.item()
    return {prefix or "value": value}


def _parse_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) >= 2 and "," in lines[0]:
        try:
            return pd.read_csv(io.StringIO(text))
        except (pd.errors.ParserError, ValueError):
            return None
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass
class FieldDifference:
    field: str
    federated: Any
    pooled: Any
    difference: float | None  # absolute difference for numbers, None when not comparable as numbers
    ok: bool


@dataclass
class PooledComparison:
    """Per-field differences; ``ok`` when every field matches within the tolerance."""

    run: LocalRun
    pooled_result: Any
    fields: list[FieldDifference]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.fields)

    @property
    def max_difference(self) -> float:
        return max((f.difference for f in self.fields if f.difference is not None), default=0.0)

    def report(self, only_failures: bool = False) -> str:
        rows = [f for f in self.fields if not (only_failures and f.ok)]
        lines = [f"{'field':<40} {'federated':>16} {'pooled':>16} {'difference':>12}"]
        for f in rows:
            diff = "-" if f.difference is None else f"{f.difference:.3g}"
            lines.append(f"{f.field:<40} {str(f.federated):>16} {str(f.pooled):>16} {diff:>12}"
                         + ("" if f.ok else "  <-- MISMATCH"))
        return "\n".join(lines)


def compare(federated: Any, pooled: Any, tolerance: float = 1e-6, relative: bool = False) -> list[FieldDifference]:
    """Field-by-field comparison of two results (see :func:`flatten` for what they may be)."""
    left, right = flatten(federated), flatten(pooled)
    out = []
    for name in sorted(set(left) | set(right)):
        a, b = left.get(name, "<missing>"), right.get(name, "<missing>")
        x, y = _number(a), _number(b)
        if x is not None and y is not None:
            if math.isnan(x) or math.isnan(y):
                out.append(FieldDifference(name, a, b, None, math.isnan(x) and math.isnan(y)))
                continue
            diff = abs(x - y)
            bound = tolerance * max(1.0, abs(y)) if relative else tolerance
            out.append(FieldDifference(name, a, b, diff, diff <= bound))
        else:
            out.append(FieldDifference(name, a, b, None, a == b))
    return out


def pooled_data(run: LocalRun) -> list[dict[str, Any]]:
    """Every data node's data as fetched in the run: one entry per data source of every node, in node order.

    Entries are never merged: ids are only unique within one source (every FHIR server numbers its patients
    1, 2, 3, ...; CSV exports of different sites reuse ids), so a pooled computation must resolve references
    and deduplicate within an entry, never across entries.
    """
    return [source for node in sorted(run.nodes.values(), key=lambda n: n.name) if node.role == "default"
            for source in (node.data or [])]


def assert_matches_pooled(
    analyzer: type[StarAnalyzer],
    aggregator: type[StarAggregator],
    data_type: Literal["fhir", "s3"],
    *,
    pooled: Callable[[list[dict[str, Any]]], Any],
    tolerance: float = 1e-6,
    relative: bool = False,
    result_fields: Callable[[Any], Any] | None = None,
    **run_kwargs: Any,
) -> PooledComparison:
    """Run the analysis federated (:func:`run_local`), then ``pooled`` on all nodes' data together.

    Positional and keyword-only parameters as in :func:`run_local` (``query=``, ``data_splits=``,
    ``quiet=``, ... are passed on to it), plus the comparison's own ``pooled``, ``tolerance``, ``relative``
    and ``result_fields``.

    ``pooled`` gets the pooled data in the shape one node's ``get_fhir_data``/``get_s3_data`` returns (one
    entry per data source of every node, see :func:`pooled_data`: ids repeat across entries).
    ``result_fields`` maps the federated result into the pooled result's shape (default: as submitted). Raises AssertionError with a per-field table when a field
    differs by more than ``tolerance`` (absolute, or relative to the pooled value with ``relative=True``).
    """
    run = run_local(analyzer, aggregator, data_type, **run_kwargs)
    expected = pooled(pooled_data(run))
    federated = run.result if result_fields is None else result_fields(run.result)
    comparison = PooledComparison(run, expected, compare(federated, expected, tolerance, relative))
    if not comparison.fields:
        raise AssertionError("nothing to compare: the federated and the pooled result have no fields")
    if not comparison.ok:
        raise AssertionError("federated result differs from the pooled computation:\n"
                             + comparison.report(only_failures=True))
    return comparison
