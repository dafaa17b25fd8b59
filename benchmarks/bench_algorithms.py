"""Wall time and peak memory of local star runs over the simulator (real HTTP on loopback).

* the 3-node demo: algorithms/descriptive_statistics.py and algorithms/logistic_regression.py, seed 7,
  as ``make demo`` runs them (``flame-sim run``: one process per node) and in the in-process tester;
* a federated mean (one round) on 10 and 50 nodes, each data node with 500 FHIR Observations.

Each run happens in a fresh process; peak memory is that process's maximum resident set size (for the
in-process runs: the simulator's hub and node services plus every node's SDK), and for ``flame-sim run``
also the largest node process's.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from queue import Empty
from types import ModuleType
from typing import Any

import numpy as np

from benchmarks.report import row
from flame_sdk.sim.run.runner import run_analysis
from flame_sdk.star import StarAggregator, StarAnalyzer
from flame_sdk.testing import run_local

ALGORITHMS = Path(__file__).resolve().parent.parent / "algorithms"


def _algorithm(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_algorithm_{name}", ALGORITHMS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


MEAN_QUERY = "Observation?code=8480-6&_count=1000"
VALUES_PER_NODE = 500


class MeanAnalyzer(StarAnalyzer):
    def analysis_method(self, data: list[dict[str, Any]], aggregator_results: Any) -> dict[str, float]:
        values = [entry["resource"]["valueQuantity"]["value"] for entry in data[0][MEAN_QUERY].get("entry", [])]
        return {"n": float(len(values)), "sum": float(sum(values))}


class MeanAggregator(StarAggregator):
    def aggregation_method(self, analysis_results: list[dict[str, float]]) -> float:
        return sum(r["sum"] for r in analysis_results) / sum(r["n"] for r in analysis_results)

    def has_converged(self, result: Any, last_result: Any) -> bool:
        return True


def _child(job: str, out: Any) -> None:
    """Run one job in a fresh process; report wall time, peak RSS (own and largest child's) and rounds."""
    sys.stdout = open(os.devnull, "w")  # the node logs; figures go through ``out``
    start = time.perf_counter()
    rounds = JOBS[job]()
    elapsed = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out.put((elapsed, own, child, rounds))


def _result_of(process: Any, queue: Any, timeout: float) -> Any:
    """The child's report; raises at once when the child died without one (never waits on a dead child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return queue.get(timeout=1)
        except Empty:
            if not process.is_alive():
                try:  # it may have reported just before it exited
                    return queue.get(timeout=1)
                except Empty:
                    raise RuntimeError("the benchmark process died without a result") from None
    raise TimeoutError(f"no result within {timeout:.0f} s")


def _measure(job: str) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(job, queue))
    process.start()
    try:
        elapsed, own_mb, child_mb, rounds = _result_of(process, queue, timeout=900)
    except Exception as exc:  # noqa: BLE001 - a failed run is reported, not fatal for the other benchmarks
        row(job, f"FAILED ({exc}; exit code {process.exitcode})")
        return
    finally:
        if process.is_alive():
            process.kill()
        process.join(60)
    children = f" (largest node process {child_mb:.1f} MiB)" if child_mb else ""
    row(job, f"{elapsed:7.2f} s   peak RSS {own_mb:7.1f} MiB{children}   rounds {rounds}")


def _mean_splits(nodes: int) -> list[list[dict[str, Any]]]:
    """Per data node one FHIR store with VALUES_PER_NODE systolic blood pressure Observations."""
    rng = np.random.default_rng(0)
    splits = []
    for node in range(1, nodes):
        resources = [{"resourceType": "Observation", "id": f"n{node}-o{i}", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                      "subject": {"reference": f"Patient/n{node}-p{i}"},
                      "valueQuantity": {"value": round(float(v), 1), "unit": "mm[Hg]"}}
                     for i, v in enumerate(rng.normal(128, 15, VALUES_PER_NODE))]
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
        splits.append([{MEAN_QUERY: bundle}])
    return splits


def _demo(name: str) -> str:
    """``make demo``'s command: flame-sim run with one process per node."""
    with tempfile.TemporaryDirectory() as results:
        code = run_analysis(str(ALGORITHMS / f"{name}.py"), nodes=3, seed=7, results_dir=Path(results),
                            timeout=300, refresh=60)
    if code != 0:
        raise RuntimeError(f"flame-sim run {name} exited with {code}")
    return "-"


def _local_demo(name: str) -> int:
    return run_local(nodes=3, seed=7, **_algorithm(name).star_arguments({})).rounds


def _mean(nodes: int) -> int:
    return run_local(MeanAnalyzer, MeanAggregator, "fhir", query=MEAN_QUERY, data_splits=_mean_splits(nodes),
                     round_timeout=120, ready_timeout=120, timeout=600).rounds


JOBS: dict[str, Callable[[], Any]] = {
    "demo, flame-sim run: descriptive_statistics": lambda: _demo("descriptive_statistics"),
    "demo, flame-sim run: logistic_regression": lambda: _demo("logistic_regression"),
    "demo, in-process tester: descriptive_statistics": lambda: _local_demo("descriptive_statistics"),
    "demo, in-process tester: logistic_regression": lambda: _local_demo("logistic_regression"),
    "federated mean, 10 nodes": lambda: _mean(10),
    "federated mean, 50 nodes": lambda: _mean(50),
}


def main() -> None:
    """Each job in its own process, so the peak RSS is that run's (simulator and all node SDKs)."""
    for job in JOBS:
        _measure(job)


if __name__ == "__main__":
    main()
