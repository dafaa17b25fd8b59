"""Wall time and peak memory of local star runs over the simulator (real HTTP on loopback).

* the 3-node demo: algorithms/descriptive_statistics.py and algorithms/logistic_regression.py, seed 7;
* a federated mean (one round) on 10 and 50 nodes, with inline S3 data of 1,000 values per node.

Peak memory is the Python heap peak (tracemalloc) of the whole in-process run (hub, nodes and every
node's SDK), and the process's maximum resident set size for reference.
"""

from __future__ import annotations

import importlib.util
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from benchmarks.report import row
from flame_sdk.star import StarAggregator, StarAnalyzer
from flame_sdk.testing import run_local

ALGORITHMS = Path(__file__).resolve().parent.parent / "algorithms"


def _algorithm(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_algorithm_{name}", ALGORITHMS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


class MeanAnalyzer(StarAnalyzer):
    def analysis_method(self, data: list[dict[str, bytes]], aggregator_results: Any) -> dict[str, float]:
        values = np.frombuffer(data[0]["values.f64"], dtype=np.float64)
        return {"n": float(values.size), "sum": float(values.sum())}


class MeanAggregator(StarAggregator):
    def aggregation_method(self, analysis_results: list[dict[str, float]]) -> float:
        return sum(r["sum"] for r in analysis_results) / sum(r["n"] for r in analysis_results)

    def has_converged(self, result: Any, last_result: Any) -> bool:
        return True


def _measure(label: str, action: Callable[[], Any]) -> Any:
    tracemalloc.start()
    start = time.perf_counter()
    outcome = action()
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row(label, f"{elapsed:7.2f} s   peak heap {peak / 2**20:7.1f} MiB   max RSS {rss_mb:7.1f} MiB")
    return outcome


def _mean_splits(nodes: int) -> list[list[dict[str, bytes]]]:
    rng = np.random.default_rng(0)
    return [[{"values.f64": rng.normal(50, 10, 1000).tobytes()}] for _ in range(nodes - 1)]


def main() -> None:
    for name in ("descriptive_statistics", "logistic_regression"):
        module = _algorithm(name)
        run = _measure(f"3-node demo: {name}", lambda m=module: run_local(nodes=3, seed=7, **m.star_arguments({})))
        row("  rounds", str(run.rounds))
    for nodes in (10, 50):
        splits = _mean_splits(nodes)
        _measure(f"federated mean, {nodes} nodes (1 round)",
                 lambda s=splits, n=nodes: run_local(MeanAnalyzer, MeanAggregator, "s3", data_splits=s,
                                                     round_timeout=120, ready_timeout=120, timeout=600))


if __name__ == "__main__":
    main()
