"""secure_sum and min_nodes in the star template's test mode (linked fakes in threads, no servers)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import numpy as np
import pytest

from flame.star import StarAggregator, StarAnalyzer, StarModel


class MomentsAnalyzer(StarAnalyzer):
    def analysis_method(self, data, aggregator_results):
        if len(data) < 2:
            raise ValueError(f"only {len(data)} values")
        values = np.asarray(data, dtype=float)
        shift = 0.0 if aggregator_results is None else aggregator_results
        return {"n": len(values), "sum": values.sum(), "squares": ((values - shift) ** 2).sum()}


class MeanThenVariance(StarAggregator):
    """Round 1: the pooled mean; round 2: the pooled variance around it (two passes, from sums only)."""

    def aggregation_method(self, analysis_results):
        n = sum(r["n"] for r in analysis_results)
        if self.num_iterations == 0:
            return float(sum(r["sum"] for r in analysis_results) / n)
        return float(sum(r["squares"] for r in analysis_results) / (n - 1))

    def has_converged(self, result, last_result):
        return self.num_iterations == 1


def run(splits: list[list[float]], **options: Any) -> dict[str, Any]:
    nodes = [{"id": str(uuid.uuid4()), "role": "default"} for _ in splits]
    nodes.append({"id": str(uuid.uuid4()), "role": "aggregator"})
    analysis_id = str(uuid.uuid4())
    outcome: dict[str, Any] = {}

    def node_thread(index: int) -> None:
        node = nodes[index]
        test_kwargs = {"s3_data": splits[index] if index < len(splits) else None, "node_id": node["id"],
                       "aggregator_id": nodes[-1]["id"], "role": node["role"],
                       "participants": [n for n in nodes if n is not node], "analysis_id": analysis_id}
        try:
            outcome[node["role"] + str(index)] = StarModel(
                MomentsAnalyzer, MeanThenVariance, "s3", simple_analysis=False, test_mode=True,
                test_kwargs=test_kwargs, round_timeout=30, ready_timeout=30, **options)
        except Exception as exc:  # noqa: BLE001 - returned to the test
            outcome[node["role"] + str(index)] = exc

    threads = [threading.Thread(target=node_thread, args=(i,), daemon=True) for i in range(len(nodes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcome


def test_secure_sum_gives_the_plain_result_in_test_mode():
    splits = [[1.0, 2.0, 3.0], [10.0, 20.0], [100.0, 200.0, 300.0, 400.0]]
    plain, secure = run(splits), run(splits, secure_sum=True)
    values = np.concatenate(splits)
    aggregator = f"aggregator{len(splits)}"
    assert secure[aggregator].result == plain[aggregator].result == pytest.approx(np.var(values, ddof=1), rel=1e-15)
    assert secure[aggregator].participation.secure_sum


def test_min_nodes_with_secure_sum_in_test_mode_drops_a_node_that_withdraws():
    model = run([[1.0, 2.0, 3.0], [10.0, 20.0], [7.0]], secure_sum=True, min_nodes=2)["aggregator3"]
    assert model.result == pytest.approx(np.var([1.0, 2.0, 3.0, 10.0, 20.0], ddof=1), rel=1e-15)
    [dropout] = model.participation.dropped
    assert dropout.round == 1 and dropout.reason.startswith("ValueError")
    assert [r.filename for r in model.flame.final_results][-1] == "participation.json"
