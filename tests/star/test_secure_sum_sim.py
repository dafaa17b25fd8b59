"""Secure sum, min_nodes and disclosure by configuration in whole star runs over the simulator."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest

from flame.star import StarAggregator, StarAnalyzer
from flame_sdk.disclosure import DisclosureConfig
from flame_sdk.secure_sum import fixed_point
from flame_sdk.star import secure_rounds
from flame_sdk.star.participation import METADATA_FILENAME
from flame_sdk.star.run_errors import StarRunError
from flame_sdk.testing import run_local
from tests.star.test_star_sim import MeanAggregator, numbers, numbers_split

pytestmark = pytest.mark.sim

SPLITS = [numbers_split(1, 2, 3), numbers_split(10, 20), numbers_split(100)]


class MomentsAnalyzer(StarAnalyzer):
    """A nested result: counts, sums and a numpy array (what the sample analyses send, in small)."""

    def analysis_method(self, data, aggregator_results):
        values = np.array(numbers(data))
        return {"n": len(values), "sums": [float(values.sum()), float((values ** 2).sum())],
                "histogram": np.histogram(values, bins=[0, 5, 50, 500])[0]}


class MomentsAggregator(StarAggregator):
    def aggregation_method(self, analysis_results):
        n = sum(r["n"] for r in analysis_results)
        s1 = sum(r["sums"][0] for r in analysis_results)
        histogram = sum(r["histogram"] for r in analysis_results)
        return {"n": n, "mean": s1 / n, "histogram": histogram.tolist()}

    def has_converged(self, result, last_result):
        return True


class FewRowsAnalyzer(StarAnalyzer):
    """Refuses to take part with fewer than two rows (the third data node has one)."""

    def analysis_method(self, data, aggregator_results):
        values = numbers(data)
        if len(values) < 2:
            raise ValueError(f"only {len(values)} rows, fewer than min_rows=2")
        return {"n": len(values), "sum": float(sum(values))}


class SlowAnalyzer(StarAnalyzer):
    """The third data node answers (much) later than the round timeout."""

    def analysis_method(self, data, aggregator_results):
        values = numbers(data)
        if len(values) < 2:
            threading.Event().wait(5.0)
        return {"n": len(values), "sum": float(sum(values))}


def test_secure_sum_equals_the_plain_sum_and_the_aggregator_sees_only_masked_vectors(monkeypatch):
    seen: dict[str, np.ndarray] = {}
    original = secure_rounds.SummingAggregator.total

    def recording_total(self, received, nodes, round_number):
        seen.update({node: payload["masked"] for node, payload in received.items()})
        return original(self, received, nodes, round_number)

    monkeypatch.setattr(secure_rounds.SummingAggregator, "total", recording_total)
    plain = run_local(MomentsAnalyzer, MomentsAggregator, "s3", data_splits=SPLITS, output_type="pickle")
    secure = run_local(MomentsAnalyzer, MomentsAggregator, "s3", data_splits=SPLITS, output_type="pickle",
                       secure_sum=True)
    assert secure.result == plain.result == {"n": 6, "mean": 136 / 6, "histogram": [3, 2, 1]}
    data_nodes = [n for n in secure.nodes.values() if n.role == "default"]
    assert sorted(seen) == sorted(n.node_id for n in data_nodes)
    for node in data_nodes:  # each vector the aggregator received is masked: nothing of the node's result shows
        own = node.result  # the analyzer's result before masking, kept on its node
        received = fixed_point.decode_floats(seen[node.node_id])
        assert received.shape == (2 + 1 + 3,)
        assert not np.isclose(received, [*own["sums"], own["n"], *own["histogram"]]).any()
        assert np.abs(received).min() > 1e30
    assert secure.participation.secure_sum and secure.participation.dropped == []
    assert any("Aggregator started" in r["log"] for r in secure.logs("node-0"))


@pytest.mark.parametrize("secure_sum", [False, True])
def test_min_nodes_drops_a_node_that_withdraws_and_names_it(secure_sum):
    run = run_local(FewRowsAnalyzer, MeanAggregator, "s3", data_splits=SPLITS, min_nodes=2, secure_sum=secure_sum)
    assert run.result == "mean,n\n7.2,5\n"  # the first two data nodes: (1 + 2 + 3 + 10 + 20) / 5
    third = next(n for n in run.nodes.values() if n.name == "node-3")
    [dropout] = run.participation.dropped
    assert dropout.node_id == third.node_id and dropout.round == 1 and dropout.reason.startswith("ValueError")
    files = dict(run.final_results)
    record = json.loads(files[METADATA_FILENAME])
    assert record["dropped"] == [{"node": third.node_id, "round": 1, "reason": dropout.reason}]
    assert len(record["contributors"]) == 2 and record["min_nodes"] == 2 and record["secure_sum"] is secure_sum
    assert "fewer than min_rows" not in files[METADATA_FILENAME].decode()  # the message stays in the node's log
    assert any("fewer than min_rows=2" in r["log"] for r in run.logs("node-3"))
    assert {n.status for n in run.nodes.values()} == {"executed"}  # the dropped node did not fail the run


@pytest.mark.slow
def test_min_nodes_drops_a_silent_node_in_plain_mode():
    run = run_local(SlowAnalyzer, MeanAggregator, "s3", data_splits=SPLITS, min_nodes=2, round_timeout=2.0)
    assert run.result == "mean,n\n7.2,5\n"
    [dropout] = run.participation.dropped
    assert dropout.reason == "sent nothing within round_timeout"
    assert {n.status for n in run.nodes.values()} == {"executed"}


def test_too_few_nodes_left_fails_the_run_naming_the_dropped_ones():
    with pytest.raises(StarRunError, match=r"only 2 of 3 data nodes are left, fewer than min_nodes=3; dropped: .*"
                                           r"ValueError raised on the node") as info:
        run_local(FewRowsAnalyzer, MeanAggregator, "s3", data_splits=SPLITS, min_nodes=3, round_timeout=30)
    assert info.value.run.final_results == []


@pytest.mark.slow
def test_secure_sum_cannot_drop_a_silent_node_after_the_key_exchange():
    with pytest.raises(StarRunError, match=r"sent no secure-sum status within 2 s, and it took part in the key "
                                           r"exchange .* A node can leave a secure sum only by withdrawing"):
        run_local(SlowAnalyzer, MeanAggregator, "s3", data_splits=SPLITS, min_nodes=2, secure_sum=True,
                  round_timeout=2.0)


class CountTableAggregator(StarAggregator):
    """A count table with an 'all' margin row: values below 5 and above 50 on each node."""

    def aggregation_method(self, analysis_results):
        low = sum(r["low"] for r in analysis_results)
        high = sum(r["high"] for r in analysis_results)
        table = pd.DataFrame({"n": [low, high]}, index=["low", "high"])
        table.loc["all"] = table.sum()
        return table

    def has_converged(self, result, last_result):
        return True


class CountingAnalyzer(StarAnalyzer):
    def analysis_method(self, data, aggregator_results):
        values = numbers(data)
        return {"low": sum(v < 5 for v in values), "high": sum(v > 5 for v in values)}


def test_disclosure_by_configuration_protects_the_final_table():
    splits = [numbers_split(1, 2, 3, 10, 20, 30), numbers_split(10, 20, 40, 50, 60, 70)]
    run = run_local(CountingAnalyzer, CountTableAggregator, "s3", data_splits=splits, secure_sum=True,
                    disclosure=DisclosureConfig(min_cell_size=5))
    # low = 3 is withheld, and so is high = 9, which would give it away as all - high
    assert run.result == ",n\nlow,\nhigh,\nall,12\n"
    assert dict(run.final_results).popitem()[1].decode() == run.result
    assert any("2 of 3 cells withheld (1 below min_cell_size, 1 complementary)" in r["log"]
               for r in run.logs("node-0"))


def test_disclosure_fails_the_release_when_too_few_nodes_contributed():
    with pytest.raises(StarRunError, match=r"only 2 node\(s\) contributed to the final result, fewer than "
                                           r"min_contributing_nodes=3") as info:
        run_local(CountingAnalyzer, CountTableAggregator, "s3", data_splits=SPLITS[:2],
                  disclosure=DisclosureConfig(min_contributing_nodes=3), round_timeout=30)
    assert info.value.run.final_results == []
