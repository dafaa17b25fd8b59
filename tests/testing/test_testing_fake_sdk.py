"""FakeFlameSDK: same public surface as FlameCoreSDK, usable to unit-test one analyzer or aggregator."""

from __future__ import annotations

import inspect
import threading

import pytest

from flame_sdk.core import FlameCoreSDK
from flame_sdk.errors import AnalysisError, RoleError, UnknownNodeError
from flame_sdk.star import StarAggregator, StarAnalyzer
from flame_sdk.testing import FakeFlameSDK


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in vars(cls).items()
            if callable(member) and not name.startswith("_")}


def test_every_sdk_method_exists_with_the_same_parameters():
    fake = public_methods(FakeFlameSDK)
    for name, signature in public_methods(FlameCoreSDK).items():
        assert name in fake, f"FakeFlameSDK lacks {name}"
        assert list(fake[name].parameters) == list(signature.parameters), name
        for param in signature.parameters.values():
            assert fake[name].parameters[param.name].default == param.default, (name, param.name)


class MeanAnalyzer(StarAnalyzer):
    def analysis_method(self, data, aggregator_results):
        numbers = [float(x) for x in data[0]["x.csv"].decode().split()[1:]]
        return {"n": len(numbers), "sum": sum(numbers)}


class MeanAggregator(StarAggregator):
    def aggregation_method(self, analysis_results):
        n = sum(r["n"] for r in analysis_results)
        return sum(r["sum"] for r in analysis_results) / n

    def has_converged(self, result, last_result):
        return True


def test_unit_testing_one_analyzer_and_one_aggregator():
    flame = FakeFlameSDK("default", s3_data=[{"x.csv": b"x\n1\n2\n"}])
    assert MeanAnalyzer(flame).analyze(flame.get_s3_data()) == {"n": 2, "sum": 3.0}
    aggregator = MeanAggregator(FakeFlameSDK("aggregator", partner_ids=["a", "b"]))
    assert aggregator.aggregate([{"n": 2, "sum": 3.0}, {"n": 2, "sum": 5.0}]) == (2.0, True)


def test_identity_and_participants():
    flame = FakeFlameSDK("aggregator", partner_ids=["a", "b"])
    assert (flame.get_id(), flame.get_role(), flame.get_aggregator_id()) == ("aggregator", "aggregator", None)
    assert flame.get_participants() == [{"nodeId": "a", "nodeType": "default"}, {"nodeId": "b", "nodeType": "default"}]
    analyzer = FakeFlameSDK("default", node_id="a", partner_ids=["aggregator", "b"])
    assert analyzer.get_aggregator_id() == "aggregator" and analyzer.get_participant_ids() == ["aggregator", "b"]
    with pytest.raises(ValueError, match="own id"):
        FakeFlameSDK("default", node_id="a", partner_ids=["a"])


def test_intermediate_data_travels_pickled_and_in_order():
    flame = FakeFlameSDK("aggregator", partner_ids=["a"])
    payload = {"w": [1, 2]}
    flame.push_intermediate_data("a", payload)
    flame.push_intermediate_data("a", 2)
    payload["w"].append(3)  # the sender's later change does not reach the receiver
    assert flame.await_intermediate_data(["a"]) == {"a": {"w": [1, 2]}}
    assert flame.await_intermediate_data(["a"]) == {"a": 2}
    assert flame.await_intermediate_data(["a"]) == {"a": None}  # nothing scripted: as a timeout
    with pytest.raises(ValueError, match="cannot send"):
        flame.send_intermediate_data(["a"], threading.Lock())
    with pytest.raises(UnknownNodeError, match="'z' is not a partner"):
        flame.send_intermediate_data(["z"], 1)


def test_storage_local_global_and_tags():
    flame = FakeFlameSDK("default", partner_ids=["aggregator", "b"])
    saved = flame.save_intermediate_data({"k": 1}, "global", remote_node_ids=["b"])
    assert flame.get_intermediate_data("global", saved["b"]["id"]) == {"k": 1}
    flame.save_intermediate_data(1, "local", tag="model")
    flame.save_intermediate_data(2, "local", tag="model")
    assert flame.get_intermediate_data("local", tag="model", tag_option="last") == 2
    assert flame.get_intermediate_data("local", tag="model") == [1, 2]
    assert flame.get_local_tags() == ["model"]
    with pytest.raises(ValueError, match="remote_node_ids"):
        flame.save_intermediate_data(1, "global")


def test_final_results_only_on_the_aggregator():
    with pytest.raises(RoleError, match="only available on the aggregator"):
        FakeFlameSDK("default").submit_final_result(1)
    flame = FakeFlameSDK("aggregator")
    assert flame.submit_final_result([1, 2], "str", multiple_results=True, local_dp={"epsilon": 1, "sensitivity": 1})
    assert flame.final_results[0].result == [1, 2] and flame.final_results[0].local_dp["epsilon"] == 1
    with pytest.raises(ValueError, match="output_type 'csv'"):
        flame.submit_final_result(1, "csv")


def test_messages_logs_progress_and_status():
    flame = FakeFlameSDK("default", partner_ids=["aggregator"])
    message = flame.deliver_message("aggregator", "hello", {"x": 1})
    assert flame.get_messages() == [message]
    assert flame.await_messages(["aggregator"], "hello")["aggregator"][0].body["x"] == 1
    assert flame.get_messages("read") == [message] and flame.clear_messages("read") == 1
    flame.set_progress(40.7)
    assert flame.get_progress() == 40
    flame.flame_log("hi", log_type="notice")
    assert flame.logs[-1].log == "hi" and flame.logs[-1].log_type == "notice"
    with pytest.raises(AnalysisError):
        flame.flame_log("bad", log_type="error")
    assert flame.status == "failed"


def test_finishing():
    flame = FakeFlameSDK("aggregator", partner_ids=["a"])
    assert flame.analysis_finished() and flame.status == "executed" and flame.get_progress() == 100
    assert flame.sent_messages[-1].category == "analysis_finished" and flame.wait_until_reported()


def test_s3_keys_select_datasets():
    flame = FakeFlameSDK("default", s3_data=[{"a.csv": b"1", "b.csv": b"2"}])
    assert flame.get_s3_data(["b.csv"]) == [{"b.csv": b"2"}]
    assert flame.get_s3_data() == [{"a.csv": b"1", "b.csv": b"2"}]
    assert flame.get_s3_data(None) is None
    fhir = FakeFlameSDK("default", fhir_data=[{"Patient?": {"resourceType": "Bundle"}}])
    assert fhir.get_fhir_data() is None and fhir.get_fhir_data(["Patient?"]) == fhir.fhir_data


def test_star_model_on_a_fake_analyzer_needs_only_the_scripted_aggregator():
    from flame_sdk.star import StarModel

    flame = FakeFlameSDK("default", s3_data=[{"x.csv": b"x\n1\n2\n"}])
    flame.script_aggregator()
    model = StarModel(MeanAnalyzer, MeanAggregator, "s3", flame=flame)
    assert [d.data for d in flame.sent_data] == [{"n": 2, "sum": 3.0}] and model.converged
    assert flame.status == "executed"

    class Iterating(MeanAnalyzer):
        def analysis_method(self, data, aggregator_results):
            return (aggregator_results or 0.0) + 1.0

    flame = FakeFlameSDK("default", s3_data=[{"x.csv": b"x\n1\n"}])
    flame.script_aggregator(10.0, 20.0)
    model = StarModel(Iterating, MeanAggregator, "s3", simple_analysis=False, flame=flame)
    assert [d.data for d in flame.sent_data] == [1.0, 11.0, 21.0] and model.rounds == 3


def test_star_model_on_a_fake_aggregator_with_scripted_rounds():
    from flame_sdk.star import StarModel

    flame = FakeFlameSDK("aggregator", partner_ids=["a", "b"])
    flame.script_analyzers([{"n": 2, "sum": 3.0}, {"n": 2, "sum": 5.0}])
    StarModel(MeanAnalyzer, MeanAggregator, "s3", flame=flame)
    assert flame.final_results[0].result == 2.0 and flame.status == "executed"
    assert flame.sent_messages[-1].category == "analysis_finished"
    with pytest.raises(ValueError, match="round 1 lists 1 result"):
        flame.script_analyzers([1.0])
    with pytest.raises(RoleError, match="script_aggregator"):
        flame.script_aggregator(1.0)
