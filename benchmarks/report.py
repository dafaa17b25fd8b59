"""How benchmark figures are printed, and the targets they are checked against.

A target row prints ``figure / limit = ratio`` and PASS or FAIL. The limit is measured in the same run (a
bare loopback round trip, plain JSON parsing of the same pages, the 10-node run, ...), times the factor the
target allows, so a busy or slow machine moves figure and limit together. Every checked target is kept in
``RESULTS`` for the summary at the end of ``python -m benchmarks``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass


def percentiles(samples_s: list[float]) -> str:
    """``p50 / p99 / max`` of durations given in seconds, printed in milliseconds."""
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return (f"p50 {statistics.median(ordered) * 1e3:7.2f} ms   p99 {p99 * 1e3:7.2f} ms   "
            f"max {ordered[-1] * 1e3:7.2f} ms   (n={len(ordered)})")


def row(label: str, value: str) -> None:
    """An informative figure (no target)."""
    print(f"  {label:<52} {value}", flush=True)


@dataclass(frozen=True)
class Target:
    """One checked figure: ``figure`` against ``limit`` (same unit); ``at_most`` for costs, else for rates."""

    name: str
    figure: float
    limit: float
    unit: str
    at_most: bool
    basis: str

    @property
    def ratio(self) -> float:
        return self.figure / self.limit if self.limit else float("inf")

    @property
    def passed(self) -> bool:
        return self.ratio <= 1.0 if self.at_most else self.ratio >= 1.0

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        bound = "<=" if self.at_most else ">="
        return (f"{self.figure:,.4g} {self.unit} / {self.limit:,.4g} {self.unit} = {self.ratio:5.2f} "
                f"(needs {bound} 1) {verdict}   [limit: {self.basis}]")


@dataclass(frozen=True)
class Failure:
    """A target whose run failed or hung: reported as FAIL without figures."""

    name: str
    reason: str
    passed: bool = False

    def line(self) -> str:
        return f"FAIL (did not complete: {self.reason})"


RESULTS: list[Target | Failure] = []


def target(name: str, figure: float, limit: float, unit: str, *, at_most: bool, basis: str) -> Target:
    """Check and print one target row."""
    checked = Target(name, figure, limit, unit, at_most, basis)
    RESULTS.append(checked)
    print(f"  {name:<52} {checked.line()}", flush=True)
    return checked


def failed(name: str, reason: str) -> None:
    """A target that could not be measured (its run failed, hung or was cut off)."""
    RESULTS.append(Failure(name, reason))
    print(f"  {name:<52} {Failure(name, reason).line()}", flush=True)


def summary() -> str:
    """One line per checked target, for the end of a run."""
    lines = [f"  {r.name:<52} " + (f"ratio {r.ratio:5.2f}  {'PASS' if r.passed else 'FAIL'}"
                                  if isinstance(r, Target) else "FAIL (did not complete)") for r in RESULTS]
    if not RESULTS:
        return "  (no targets in these modules)"
    passed = sum(r.passed for r in RESULTS)
    return "\n".join([*lines, f"  {passed} of {len(RESULTS)} targets passed"])
