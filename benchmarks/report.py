"""Formatting helpers shared by the benchmark modules."""

from __future__ import annotations

import statistics


def percentiles(samples_s: list[float]) -> str:
    """``p50 / p99 / max`` of durations given in seconds, printed in milliseconds."""
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return (f"p50 {statistics.median(ordered) * 1e3:7.2f} ms   p99 {p99 * 1e3:7.2f} ms   "
            f"max {ordered[-1] * 1e3:7.2f} ms   (n={len(ordered)})")


def row(label: str, value: str) -> None:
    print(f"  {label:<44} {value}", flush=True)
