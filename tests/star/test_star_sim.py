"""Star runs over the simulator: real HTTP, storage encryption and status sync between node threads."""

from __future__ import annotations

import threading
import time

import pytest

from flame.star import NodeFailedError, StarAggregator, StarAnalyzer, StarModelTester
from flame_sdk.sim.run.simulation import SimConfig, Simulation
from flame_sdk.star.run_errors import StarRunError
from flame_sdk.testing import run_local
from flame_sdk.testing.local_run import platform_shaped, split_specs

pytestmark = pytest.mark.sim


def numbers_split(*values: float) -> list[dict[str, bytes]]:
    return [{"numbers.csv": ("x\n" + "\n".join(str(v) for v in values) + "\n").encode()}]


SPLITS = [numbers_split(1, 2, 3), numbers_split(10, 20)]


def numbers(data) -> list[float]:
    return [float(v) for source in data for content in source.values() for v in content.decode().split()[1:]]


class SumAnalyzer(StarAnalyzer):
    def analysis_method(self, data, aggregator_results):
        return {"n": len(numbers(data)), "sum": sum(numbers(data))}


class MeanAggregator(StarAggregator):
    def __init__(self, flame, label: str = "mean"):
        super().__init__(flame)
        self.label = label

    def aggregation_method(self, analysis_results):
        total = sum(r["sum"] for r in analysis_results) / sum(r["n"] for r in analysis_results)
        return f"{self.label},n\n{total},{sum(r['n'] for r in analysis_results)}\n"

    def has_converged(self, result, last_result):
        return True


class CountingAnalyzer(StarAnalyzer):
    """Iterative: its local sum plus a quarter of the last aggregate (two nodes: r -> 36 + r/2)."""

    def analysis_method(self, data, aggregator_results):
        return sum(numbers(data)) + (aggregator_results or 0.0) / 4


class HalvingAggregator(StarAggregator):
    def __init__(self, flame, converge: bool = True):
        super().__init__(flame)
        self.converge = converge

    def aggregation_method(self, analysis_results):
        return sum(analysis_results)

    def has_converged(self, result, last_result):
        return self.converge and last_result is not None and abs(result - last_result) < 1.0


class FailingAnalyzer(StarAnalyzer):
    def analysis_method(self, data, aggregator_results):
        if sum(numbers(data)) > 20:  # only the second data node
            raise RuntimeError("column 'x' has an unexpected unit")
        return {"n": 1, "sum": 1.0}


class SilentAnalyzer(StarAnalyzer):
    """The second data node hangs (bounded) in its analysis and never answers in time."""

    def analysis_method(self, data, aggregator_results):
        if sum(numbers(data)) > 20:
            threading.Event().wait(4.0)
        return {"n": 1, "sum": 1.0}


def data_node(run, index: int):
    return next(n for n in run.nodes.values() if n.name == f"node-{index}")


def test_simple_run_returns_the_result_logs_and_hub_files():
    run = run_local(SumAnalyzer, MeanAggregator, "s3", data_splits=SPLITS, seed=5)
    assert run.result == "mean,n\n7.2,5\n" and run.rounds == 1 and run.converged
    [(name, content)] = run.final_results
    assert content == b"mean,n\n7.2,5\n"
    assert {n.status for n in run.nodes.values()} == {"executed"}
    assert any("Aggregator started" in r["log"] for r in run.logs("node-0"))
    assert any("Analyzer started" in r["log"] for r in run.logs("node-1"))
    assert data_node(run, 1).data == SPLITS[0]


def test_iterative_run_stops_on_convergence():
    run = run_local(CountingAnalyzer, HalvingAggregator, "s3", data_splits=SPLITS, simple_analysis=False,
                    max_rounds=20)
    # fixed point of r = 36 + r/2 is 72; |change| < 1 after a few halvings
    assert run.converged and 5 <= run.rounds < 20 and abs(run.result - 72) < 2


def test_iterative_run_stops_at_max_rounds():
    run = run_local(CountingAnalyzer, HalvingAggregator, "s3", data_splits=SPLITS, simple_analysis=False,
                    aggregator_kwargs={"converge": False}, max_rounds=3)
    assert run.rounds == 3 and not run.converged and len(run.final_results) == 1
    assert any(r["log_type"] == "warn" and "max_rounds=3" in r["log"] for r in run.logs("node-0"))


def test_a_node_that_raises_fails_the_run_naming_it():
    with pytest.raises(NodeFailedError, match="column 'x' has an unexpected unit") as info:
        run_local(FailingAnalyzer, MeanAggregator, "s3", data_splits=SPLITS, round_timeout=30)
    run = info.value.run
    failing = data_node(run, 2)
    assert info.value.node_id == failing.node_id
    for node in run.nodes.values():  # everybody stopped, naming the failing node
        assert isinstance(node.error, StarRunError) and node.error.node_id == failing.node_id, node
        assert node.status == "failed"
    assert run.final_results == []
    assert any(r["log_type"] == "error" and failing.node_id in r["log"] for r in run.logs("node-0"))


@pytest.mark.slow
def test_a_silent_node_hits_the_round_timeout():
    start = time.monotonic()
    with pytest.raises(StarRunError, match=r"round 1: node\(s\) .* did not send") as info:
        run_local(SilentAnalyzer, MeanAggregator, "s3", data_splits=SPLITS, round_timeout=1.5)
    silent = data_node(info.value.run, 2)
    # named in any case; on a busy machine the other analyzer may be late for this short round too
    assert silent.node_id in str(info.value)
    assert time.monotonic() - start < 60  # bounded, not a hang (generous: not a timing measurement)


def test_two_runs_in_one_process_do_not_interfere():
    specs = split_specs(SPLITS, "s3")
    outcomes: dict[str, object] = {}
    with Simulation(SimConfig(nodes=3, seed=9, node_data=specs, status_interval=0.2)) as sim:
        def go(label: str) -> None:
            outcomes[label] = run_local(SumAnalyzer, MeanAggregator, "s3", simulation=sim,
                                        aggregator_kwargs={"label": label})

        threads = [threading.Thread(target=go, args=(label,)) for label in ("first", "second")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert outcomes["first"].result == "first,n\n7.2,5\n"
    assert outcomes["second"].result == "second,n\n7.2,5\n"
    assert outcomes["first"].analysis_id != outcomes["second"].analysis_id


def test_star_model_tester_writes_the_hub_file(tmp_path):
    target = tmp_path / "result.csv"
    tester = StarModelTester(SPLITS, SumAnalyzer, MeanAggregator, "s3", result_filepath=str(target))
    assert target.read_bytes() == b"mean,n\n7.2,5\n" and tester.run.converged


@pytest.mark.parametrize(("splits", "message"), [
    ({"node-1": SPLITS[0]}, "data_splits must be a non-empty list with one entry per data node"),
    ([], "data_splits must be a non-empty list"),
    ([SPLITS[0], None], r"data split\(s\) \[2\] are None"),
])
def test_tester_refuses_splits_that_are_not_one_entry_per_node(splits, message):
    with pytest.raises(ValueError, match=message):
        StarModelTester(splits, SumAnalyzer, MeanAggregator, "s3")


def test_plain_splits_warn_with_the_node_shape():
    with pytest.warns(UserWarning, match=r"data split 1 is not in the shape a FLAME node gives an analysis .*"
                                         r"one dict per data source, mapping dataset name \(S3 key\) to bytes"):
        assert not platform_shaped([[1, 2], SPLITS[0]], "s3")
    assert platform_shaped(SPLITS, "s3")


class PlainMeanAggregator(StarAggregator):
    def aggregation_method(self, analysis_results):
        return sum(r["sum"] for r in analysis_results) / sum(r["n"] for r in analysis_results)

    def has_converged(self, result, last_result):
        return False  # iterative and never converged: DP must still be applied at max_rounds


def test_local_dp_noise_is_applied_at_max_rounds():
    run = run_local(SumAnalyzer, PlainMeanAggregator, "s3", data_splits=SPLITS, simple_analysis=False,
                    max_rounds=2, epsilon=1.0, sensitivity=1.0)
    assert not run.converged and run.result_before_noise == pytest.approx(7.2)  # the aggregator's exact value
    [(_, content)] = run.final_results
    assert float(content) != pytest.approx(7.2, abs=1e-9)  # the stored release carries Laplace noise
    assert run.result == float(content)  # the result as released
