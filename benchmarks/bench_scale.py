"""A federated mean (one round) on 10, 50 and 100 nodes with ``run_local`` (one process: the simulator and
every node's SDK), each run in a fresh process. Every data node holds 500 FHIR Observations.

Targets (issue 14):
* 50 nodes take at most 1.5 x the per-node time of 10 nodes (wall time / nodes, measured in the same run);
* 100 nodes complete (on a 2-core machine); their per-node time is shown against the same limit.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np

from benchmarks.processes import ChildError, run_child, status_kib
from benchmarks.report import failed, row, target
from flame_sdk.star import StarAggregator, StarAnalyzer
from flame_sdk.testing import run_local

MEAN_QUERY = "Observation?code=8480-6&_count=1000"
VALUES_PER_NODE = 500
NODES = (10, 50, 100)
RUN_TIMEOUT = 900.0


class MeanAnalyzer(StarAnalyzer):
    def analysis_method(self, data: list[dict[str, Any]], aggregator_results: Any) -> dict[str, float]:
        values = [entry["resource"]["valueQuantity"]["value"] for entry in data[0][MEAN_QUERY].get("entry", [])]
        return {"n": float(len(values)), "sum": float(sum(values))}


class MeanAggregator(StarAggregator):
    def aggregation_method(self, analysis_results: list[dict[str, float]]) -> float:
        return sum(r["sum"] for r in analysis_results) / sum(r["n"] for r in analysis_results)

    def has_converged(self, result: Any, last_result: Any) -> bool:
        return True


def mean_splits(nodes: int) -> list[list[dict[str, Any]]]:
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


def federated_mean(nodes: int) -> dict[str, float]:
    """A fresh process: the run's wall time (without building the data) and peak RSS."""
    sys.stdout = open(os.devnull, "w")  # the nodes log; figures go back to the parent
    splits = mean_splits(nodes)
    start = time.perf_counter()
    run = run_local(MeanAnalyzer, MeanAggregator, "fhir", query=MEAN_QUERY, data_splits=splits, round_timeout=600,
                    ready_timeout=600, timeout=RUN_TIMEOUT)
    elapsed = time.perf_counter() - start
    expected = float(np.mean([e["resource"]["valueQuantity"]["value"] for s in splits for e in s[0][MEAN_QUERY]["entry"]]))
    assert abs(float(run.result) - expected) < 1e-6, (run.result, expected)
    return {"seconds": elapsed, "rss": status_kib("VmHWM") / 1024}


def main() -> None:
    per_node: dict[int, float] = {}
    for nodes in NODES:
        name = f"federated mean, {nodes} nodes, s per node"
        try:
            got = run_child(federated_mean, nodes, timeout=RUN_TIMEOUT + 120)
        except ChildError as exc:
            failed(name, exc.summary())
            continue
        per_node[nodes] = got["seconds"] / nodes
        row(f"federated mean, {nodes} nodes", f"{got['seconds']:7.2f} s   {per_node[nodes]:.3f} s per node   "
                                              f"peak RSS {got['rss']:7.1f} MiB")
        if nodes != NODES[0] and NODES[0] in per_node:
            limit = 1.5 * per_node[NODES[0]]
            target(name, per_node[nodes], limit, "s", at_most=True,
                   basis=f"1.5 x the {NODES[0]}-node run's {per_node[NODES[0]]:.3f} s per node")


if __name__ == "__main__":
    main()
