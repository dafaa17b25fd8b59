"""Disclosure control of the final result by configuration: ``StarModel(disclosure=DisclosureConfig(...))``.

The aggregator's final result is then a count table, and the template publishes it only through
:mod:`flame_sdk.disclosure`: the run fails (nothing is submitted) when fewer data nodes contributed than
``min_contributing_nodes``, small cells and the cells that would give them away through a margin are
withheld, and counts are rounded. The number of contributing nodes is the template's own (it knows who was
dropped under ``min_nodes``); per-cell contributors can come with the table as a :class:`CountTable`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from flame_sdk.disclosure import DisclosureConfig, check_contributing_nodes, protect_table


@dataclass(frozen=True)
class CountTable:
    """A final count table plus, per cell, the number of data nodes with a non-zero count (same labels).

    Return it from ``aggregation_method`` when ``disclosure`` should also withhold cells with fewer than
    ``min_contributing_nodes`` contributors (in secure-sum mode: have each node send a 0/1 indicator per
    cell; their sum is the contributor count).
    """

    counts: pd.DataFrame
    contributors: pd.DataFrame | None = None


def release(result: Any, config: DisclosureConfig, contributing_nodes: int, output_type: Any,
            multiple_results: bool, log: Callable[[str], None]) -> Any:
    """The result as it may be published: each table protected (and written as CSV for text output)."""
    check_contributing_nodes(contributing_nodes, config, "the final result")
    if multiple_results:
        if not isinstance(result, (list, tuple)):
            raise TypeError(f"multiple_results=True needs a list of count tables, got {type(result).__name__}")
        types = output_type if isinstance(output_type, list) else [output_type] * len(result)
        return [_protect(part, config, kind, log, f"table {i}") for i, (part, kind) in enumerate(zip(result, types,
                                                                                                   strict=False))]
    return _protect(result, config, output_type, log, "the final table")


def _protect(table: Any, config: DisclosureConfig, output_type: Any, log: Callable[[str], None], what: str) -> Any:
    if isinstance(table, CountTable):
        counts, contributors = table.counts, table.contributors
    elif isinstance(table, pd.DataFrame):
        counts, contributors = table, None
    else:
        raise TypeError(f"disclosure=... protects count tables, but the aggregator returned {type(table).__name__}; "
                        f"return a pandas DataFrame of counts (or a CountTable), or leave disclosure unset and apply "
                        f"flame_sdk.disclosure in aggregation_method")
    protected = protect_table(counts, config, contributors=contributors)
    reasons = protected.reasons.to_numpy().ravel().tolist()
    withheld = [reason for reason in reasons if reason]
    summary = ", ".join(f"{withheld.count(r)} {r}" for r in sorted(set(withheld))) or "none"
    log(f"disclosure control of {what}: {len(withheld)} of {len(reasons)} cells withheld ({summary}); counts "
        f"rounded to multiples of {config.rounding_base}")
    if output_type == "str":
        return protected.counts.to_csv()
    if output_type == "bytes":
        return protected.counts.to_csv().encode("utf-8")
    return protected.counts
