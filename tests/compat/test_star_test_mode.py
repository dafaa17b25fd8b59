"""``StarModel(..., test_mode=True, test_kwargs=...)`` as the FLAME star template has it: every node on an
in-process test SDK, nodes of one analysis id in threads forming a run, each node's data exactly as given."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from flame.star import StarAggregator, StarAnalyzer, StarLocalDPModel, StarModel
from flame_sdk.star.run_errors import NodeFailedError, StarRunError


class MeanAnalyzer(StarAnalyzer):
    """Each round: the local mean, plus the last aggregate and a half (the patterns' example arithmetic)."""

    def analysis_method(self, data, aggregator_results):
        mean = sum(data) / len(data)
        return mean if aggregator_results is None else mean + aggregator_results + 0.5


class MeanAggregator(StarAggregator):
    def aggregation_method(self, analysis_results):
        return sum(analysis_results) / len(analysis_results)

    def has_converged(self, result, last_result):
        return self.num_iterations >= 5


class CrashingAnalyzer(MeanAnalyzer):
    def analysis_method(self, data, aggregator_results):
        if data[0] == 5:
            raise KeyError("the column 'age' is missing")
        return super().analysis_method(data, aggregator_results)


def run_in_threads(model: type[StarModel], splits: list[Any], analysis_id: str, **options: Any) -> dict[str, Any]:
    """What the patterns' tester does: one model per node in its own thread, the aggregator last.

    Returns, per node id, the model or the exception its thread raised.
    """
    nodes = [{"id": str(uuid.uuid4()), "role": "default"} for _ in splits]
    nodes.append({"id": str(uuid.uuid4()), "role": "aggregator"})
    outcome: dict[str, Any] = {}

    def run(index: int) -> None:
        node = nodes[index]
        test_kwargs = {"s3_data": splits[index] if index < len(splits) else None, "node_id": node["id"],
                       "aggregator_id": nodes[-1]["id"], "role": node["role"],
                       "participants": [n for n in nodes if n is not node], "analysis_id": analysis_id,
                       "project_id": "project_id"}
        try:
            outcome[node["id"]] = model(analyzer=MeanAnalyzer if "analyzer" not in options else options["analyzer"],
                                        aggregator=MeanAggregator, data_type="s3", simple_analysis=False,
                                        test_mode=True, test_kwargs=test_kwargs,
                                        **{k: v for k, v in options.items() if k != "analyzer"})
        except Exception as exc:  # noqa: BLE001 - returned to the test
            outcome[node["id"]] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(nodes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a test-mode node hangs"
    return outcome


def test_nodes_in_threads_form_a_run_on_their_given_data():
    outcome = run_in_threads(StarModel, [[1, 2, 3, 4], [5, 6, 7, 8]], "analysis_id")
    models = list(outcome.values())
    assert all(isinstance(m, StarModel) for m in models), models
    aggregator = next(m for m in models if m.flame.get_role() == "aggregator")
    assert aggregator.flame.final_results_storage == 29.5 and aggregator.rounds == 6  # as the reference prints
    assert sorted(m.data for m in models if m is not aggregator) == [[1, 2, 3, 4], [5, 6, 7, 8]]
    for model in models:
        assert model.test_mode and model.test_kwargs["analysis_id"] == "analysis_id"
        assert model.flame.config.finished and model.flame.status == "executed"


def test_local_dp_test_mode_noises_the_stored_number():
    outcome = run_in_threads(StarLocalDPModel, [[1, 2, 3, 4], [5, 6, 7, 8]], "dp-run", epsilon=1.0,
                             sensitivity=1.0)
    aggregator = next(m for m in outcome.values() if m.flame.get_role() == "aggregator")
    assert aggregator.result == 29.5  # the aggregator's own value
    stored = aggregator.flame.final_results_storage
    assert isinstance(stored, float) and stored != 29.5


def test_a_failing_test_node_stops_every_node_naming_it():
    outcome = run_in_threads(StarModel, [[1, 2], [5, 6]], "failing-run", analyzer=CrashingAnalyzer,
                             round_timeout=30)
    failing = next(node_id for node_id, result in outcome.items()
                   if isinstance(result, NodeFailedError) and not result.relayed)
    for result in outcome.values():
        assert isinstance(result, StarRunError) and result.node_id == failing, result
        assert "the column 'age' is missing" in str(result)


def kwargs_for(**changes: Any) -> dict[str, Any]:
    """Valid test_kwargs of an analyzer, with ``changes`` (``...`` removes a key)."""
    base = {"node_id": "a", "aggregator_id": "g", "role": "default", "participants": [{"id": "g"}], "s3_data": [1]}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.mark.parametrize(("options", "message"), [
    ({"test_mode": True}, "test_mode=True needs test_kwargs"),
    ({"test_mode": True, "test_kwargs": kwargs_for(role=...)}, r"test_kwargs lacks \['role'\]"),
    ({"test_mode": True, "test_kwargs": kwargs_for(s3_data=...)}, "exactly one of 'fhir_data' and 's3_data'"),
    ({"test_mode": True, "test_kwargs": kwargs_for(participants=["g"])}, "list of dicts with an 'id'"),
    ({"test_kwargs": kwargs_for()}, "test_kwargs is only used with test_mode=True"),
])
def test_test_mode_arguments_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        StarModel(MeanAnalyzer, MeanAggregator, "s3", **options)


def test_test_mode_does_not_take_an_sdk_as_well():
    from flame_sdk.testing import FakeFlameSDK

    with pytest.raises(ValueError, match="do not also pass flame= or env="):
        StarModel(MeanAnalyzer, MeanAggregator, "s3", test_mode=True, test_kwargs=kwargs_for(),
                  flame=FakeFlameSDK("default"))


def test_a_test_node_has_only_the_data_type_it_was_given():
    from flame_sdk.testing.fake_network import sdk_from_test_kwargs

    flame = sdk_from_test_kwargs(kwargs_for(node_id="solo", analysis_id="data-type-run"))
    assert flame.get_s3_data(["ignored-key"]) == [1]
    with pytest.raises(ValueError, match="no FHIR data was given to this test node"):
        flame.get_fhir_data(["Patient"])


def test_one_node_id_cannot_run_twice_in_one_analysis():
    from flame_sdk.testing.fake_network import sdk_from_test_kwargs

    first = sdk_from_test_kwargs(kwargs_for(analysis_id="twice"))
    with pytest.raises(ValueError, match="node id 'a' is already running"):
        sdk_from_test_kwargs(kwargs_for(analysis_id="twice"))
    assert first.get_id() == "a"


def test_test_mode_local_dp_noises_one_number_per_file_and_refuses_the_rest():
    from flame_sdk.testing.fake_network import sdk_from_test_kwargs

    flame = sdk_from_test_kwargs(kwargs_for(node_id="g", role="aggregator", aggregator_id="g",
                                            participants=[{"id": "a"}], s3_data=None, analysis_id="dp-files"))
    dp = {"epsilon": 1.0, "sensitivity": 1.0}
    flame.submit_final_result([10.0, 20.0], multiple_results=True, local_dp=dp)
    noised = flame.final_results_storage
    assert len(noised) == 2 and all(isinstance(v, float) for v in noised) and noised != [10.0, 20.0]
    with pytest.raises(ValueError, match="local DP can only be applied to a single number"):
        flame.submit_final_result({"mean": 1.0}, local_dp=dp)
    with pytest.raises(ValueError, match="local_dp must be a dict with exactly the keys"):
        flame.submit_final_result(1.0, local_dp={"epsilon": 1.0})
