"""StarModel's control flow on one node, driven through FakeFlameSDK (no servers)."""

from __future__ import annotations

import pytest

from flame.star import (
    NodeFailedError,
    RoundTimeoutError,
    StarAggregator,
    StarAnalyzer,
    StarLocalDPModel,
    StarModel,
)
from flame_sdk.star.run_errors import StarRunError
from flame_sdk.testing import FakeFlameSDK

S3 = [{"values.csv": b"x\n1\n2\n3\n"}]


def values(data):
    return [float(v) for v in data[0]["values.csv"].decode().split()[1:]]


class SumAnalyzer(StarAnalyzer):
    def analysis_method(self, data, aggregator_results):
        return sum(values(data))


class SumAggregator(StarAggregator):
    def aggregation_method(self, analysis_results):
        return sum(analysis_results)

    def has_converged(self, result, last_result):
        return True


class HalvingAnalyzer(StarAnalyzer):
    """Iterative: sends its total scaled by the last aggregated value, to follow rounds."""

    def __init__(self, flame, factor=1.0):
        super().__init__(flame)
        self.factor = factor
        self.seen = []

    def analysis_method(self, data, aggregator_results):
        self.seen.append(aggregator_results)
        return sum(values(data)) * self.factor


class ToleranceAggregator(StarAggregator):
    def __init__(self, flame, tol=0.01):
        super().__init__(flame)
        self.tol = tol

    def aggregation_method(self, analysis_results):
        return sum(analysis_results)

    def has_converged(self, result, last_result):
        return last_result is not None and abs(result - last_result) < self.tol


class NeverConverges(ToleranceAggregator):
    def has_converged(self, result, last_result):
        return False


class BrokenAnalyzer(StarAnalyzer):
    def analysis_method(self, data, aggregator_results):
        raise ZeroDivisionError("boom in analysis")


def aggregator_fake(**kwargs) -> FakeFlameSDK:
    return FakeFlameSDK("aggregator", partner_ids=["a1", "a2"], **kwargs)


def test_simple_aggregation_submits_and_finishes():
    flame = aggregator_fake()
    flame.push_intermediate_data("a1", 6.0)
    flame.push_intermediate_data("a2", 4.0)
    model = StarModel(SumAnalyzer, SumAggregator, "s3", flame=flame)
    assert model.result == 10.0 and model.rounds == 1 and model.converged
    assert [r.result for r in flame.final_results] == [10.0]
    assert flame.final_results[0].local_dp is None
    assert flame.status == "executed"
    assert [m.category for m in flame.sent_messages] == ["analysis_finished"]
    assert flame.sent_data == []  # a simple analysis sends nothing back


def test_iterative_run_stops_on_convergence():
    flame = aggregator_fake()
    for a1, a2 in [(1.0, 1.0), (1.5, 1.0), (1.5, 1.005), (9.0, 9.0)]:
        flame.push_intermediate_data("a1", a1)
        flame.push_intermediate_data("a2", a2)
    model = StarModel(SumAnalyzer, ToleranceAggregator, "s3", simple_analysis=False, flame=flame,
                      aggregator_kwargs={"tol": 0.01})
    assert model.rounds == 3 and model.converged and model.result == pytest.approx(2.505)
    assert [d.data for d in flame.sent_data] == [2.0, 2.5]  # rounds 1 and 2 went back to the analyzers
    assert all(d.receivers == ["a1", "a2"] for d in flame.sent_data)


def test_iterative_run_stops_at_max_rounds_and_warns():
    flame = aggregator_fake()
    for _ in range(5):
        flame.push_intermediate_data("a1", 1.0)
        flame.push_intermediate_data("a2", 2.0)
    model = StarModel(SumAnalyzer, NeverConverges, "s3", simple_analysis=False, flame=flame, max_rounds=3)
    assert model.rounds == 3 and not model.converged
    assert len(flame.final_results) == 1 and len(flame.sent_data) == 2
    assert any(r.log_type == "warn" and "max_rounds=3" in r.log for r in flame.logs)


def test_local_dp_is_applied_even_without_convergence():
    flame = aggregator_fake()
    for _ in range(2):
        flame.push_intermediate_data("a1", 1.0)
        flame.push_intermediate_data("a2", 2.0)
    StarLocalDPModel(SumAnalyzer, NeverConverges, "s3", simple_analysis=False, epsilon=1.0, sensitivity=2.0,
                     flame=flame, max_rounds=2)
    assert flame.final_results[0].local_dp == {"epsilon": 1.0, "sensitivity": 2.0}


def test_silent_analyzer_hits_the_round_timeout_named():
    flame = aggregator_fake()
    flame.push_intermediate_data("a1", 1.0)  # a2 never answers
    with pytest.raises(RoundTimeoutError, match=r"round 1: node\(s\) \['a2'\]") as info:
        StarModel(SumAnalyzer, SumAggregator, "s3", flame=flame, round_timeout=1)
    assert info.value.node_ids == ["a2"]
    assert flame.status == "failed" and flame.final_results == []
    notice = [m for m in flame.sent_messages if m.category == "analysis_failed"]
    assert notice and notice[0].body["node"] == "a2" and notice[0].receivers == ["a1", "a2"]


def test_partner_failure_notice_names_the_failing_node():
    flame = aggregator_fake()
    flame.push_intermediate_data("a1", 1.0)
    flame.deliver_message("a2", "analysis_failed", {"node": "a2", "error": "ValueError: bad column"})
    with pytest.raises(NodeFailedError, match="node a2 failed: ValueError: bad column") as info:
        StarModel(SumAnalyzer, SumAggregator, "s3", flame=flame)
    assert info.value.node_id == "a2"
    assert not [m for m in flame.sent_messages if m.category == "analysis_failed"]  # not echoed back


def test_simple_analyzer_sends_once_and_ends_when_the_aggregator_finishes():
    flame = FakeFlameSDK("default", node_id="a1", partner_ids=["aggregator", "a2"], s3_data=S3)
    flame.deliver_message("aggregator", "analysis_finished", {})
    model = StarModel(SumAnalyzer, SumAggregator, "s3", flame=flame)
    assert [(d.receivers, d.data) for d in flame.sent_data] == [(["aggregator"], 6.0)]
    assert model.result == 6.0 and model.data == S3 and flame.status == "executed"


def test_iterative_analyzer_gets_the_aggregated_result_each_round():
    flame = FakeFlameSDK("default", node_id="a1", s3_data=S3)
    flame.push_intermediate_data("aggregator", 10.0)
    flame.push_intermediate_data("aggregator", 11.0)
    flame.deliver_message("aggregator", "analysis_finished", {})
    model = StarModel(HalvingAnalyzer, SumAggregator, "s3", simple_analysis=False, flame=flame,
                      analyzer_kwargs={"factor": 0.5})
    assert [d.data for d in flame.sent_data] == [3.0, 3.0, 3.0]
    assert model.rounds == 3


def test_analyzer_without_reply_or_finish_times_out_naming_the_aggregator():
    flame = FakeFlameSDK("default", node_id="a1", s3_data=S3)
    with pytest.raises(RoundTimeoutError, match=r"\['aggregator'\]"):
        StarModel(SumAnalyzer, SumAggregator, "s3", flame=flame, round_timeout=1)


def test_raising_analyzer_fails_loudly_and_tells_partners():
    flame = FakeFlameSDK("default", node_id="a1", partner_ids=["aggregator", "a2"], s3_data=S3)
    with pytest.raises(NodeFailedError, match="node a1 failed: ZeroDivisionError: boom in analysis") as info:
        StarModel(BrokenAnalyzer, SumAggregator, "s3", flame=flame)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    notice = next(m for m in flame.sent_messages if m.category == "analysis_failed")
    assert notice.receivers == ["aggregator", "a2"] and notice.body == {
        "node": "a1", "error": "ZeroDivisionError: boom in analysis"}
    assert flame.status == "failed"
    assert any(r.log_type == "error" and "boom in analysis" in r.log for r in flame.logs)


class NoneAggregator(SumAggregator):
    def aggregation_method(self, analysis_results):
        return None


def test_none_results_are_clear_errors():
    flame = aggregator_fake()
    flame.push_intermediate_data("a1", 1.0)
    flame.push_intermediate_data("a2", 1.0)
    with pytest.raises(NodeFailedError, match="aggregation_method returned None"):
        StarModel(SumAnalyzer, NoneAggregator, "s3", flame=flame)

    class NoneAnalyzer(SumAnalyzer):
        def analysis_method(self, data, aggregator_results):
            return None

    analyzer = FakeFlameSDK("default", s3_data=S3)
    with pytest.raises(NodeFailedError, match="analysis_method returned None"):
        StarModel(NoneAnalyzer, SumAggregator, "s3", flame=analyzer)


def test_unready_partner_is_named():
    flame = aggregator_fake(unready=["a2"])
    with pytest.raises(StarRunError, match=r"\['a2'\] did not answer the ready check"):
        StarModel(SumAnalyzer, SumAggregator, "s3", flame=flame, ready_timeout=1)


def test_two_models_in_one_process_keep_their_own_state():
    first, second = aggregator_fake(), aggregator_fake()
    for flame, (x, y) in ((first, (1.0, 2.0)), (second, (10.0, 20.0))):
        flame.push_intermediate_data("a1", x)
        flame.push_intermediate_data("a2", y)
    one = StarModel(SumAnalyzer, SumAggregator, "s3", flame=first)
    two = StarModel(SumAnalyzer, SumAggregator, "s3", flame=second)
    assert (one.result, two.result) == (3.0, 30.0)
    assert one.flame is first and two.flame is second and one.exchange is not two.exchange


@pytest.mark.parametrize("kwargs, message", [
    ({"data_type": "csv"}, "data_type must be 'fhir' or 's3'"),
    ({"analyzer": SumAggregator}, "analyzer must be a subclass of StarAnalyzer"),
    ({"max_rounds": 0}, "max_rounds must be a positive integer"),
    ({"round_timeout": 0}, "round_timeout must be a positive"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    arguments = {"analyzer": SumAnalyzer, "aggregator": SumAggregator, "data_type": "s3", **kwargs}
    with pytest.raises((TypeError, ValueError), match=message):
        StarModel(flame=aggregator_fake(), **arguments)


def test_local_dp_needs_both_parameters():
    with pytest.raises(ValueError, match="both epsilon and sensitivity"):
        StarLocalDPModel(SumAnalyzer, SumAggregator, "s3", epsilon=1.0, flame=aggregator_fake())


def test_role_mismatch_names_the_fix():
    with pytest.raises(ValueError, match="role 'aggregator'.*pass the analyzer as analyzer="):
        SumAggregator(FakeFlameSDK("default"))
