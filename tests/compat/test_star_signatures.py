"""The star templates take the arguments of PrivateAIM/python-sdk-patterns in the same order, so calls by
position or by name work unchanged; the node classes have the attributes the templates' subclasses use."""

from __future__ import annotations

import inspect

import pytest

from flame.star import StarAggregator, StarAnalyzer, StarLocalDPModel, StarModel, StarModelTester
from flame_sdk.testing import FakeFlameSDK

MODEL = ["analyzer", "aggregator", "data_type", "query", "simple_analysis", "output_type", "multiple_results",
         "analyzer_kwargs", "aggregator_kwargs"]
REFERENCE_ORDER = {
    StarModel: [*MODEL, "test_mode", "test_kwargs"],
    StarLocalDPModel: [*MODEL, "epsilon", "sensitivity", "test_mode", "test_kwargs"],
    StarModelTester: ["data_splits", "analyzer", "aggregator", "data_type", "node_roles", "query", "simple_analysis",
                      "output_type", "multiple_results", "analyzer_kwargs", "aggregator_kwargs", "epsilon",
                      "sensitivity", "result_filepath"],
}


@pytest.mark.parametrize("template", list(REFERENCE_ORDER), ids=lambda t: t.__name__)
def test_positional_parameters_are_the_reference_ones_in_order(template):
    parameters = list(inspect.signature(template.__init__).parameters.values())[1:]
    positional = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == REFERENCE_ORDER[template]


class Analyzer(StarAnalyzer):
    def analysis_method(self, data, aggregator_results):
        return 1


class Aggregator(StarAggregator):
    def aggregation_method(self, analysis_results):
        return sum(analysis_results)

    def has_converged(self, result, last_result):
        return True


def test_node_attributes_of_the_reference_templates():
    analyzer = Analyzer(FakeFlameSDK("default", node_id="a1"))
    assert (analyzer.id, analyzer.role, analyzer.finished, analyzer.latest_result, analyzer.num_iterations) == \
        ("a1", "default", False, None, 0)
    assert analyzer.partner_node_ids == ["aggregator"] and analyzer.analyze([]) == 1 and analyzer.num_iterations == 1
    aggregator = Aggregator(FakeFlameSDK("aggregator", partner_ids=["a1", "a2"]))
    assert aggregator.delta_criteria is False
    assert aggregator.aggregate([1, 2], simple_analysis=False) == (3, False)  # never done in the first round
    assert aggregator.aggregate([1, 2], simple_analysis=False) == (3, True) and aggregator.delta_criteria
    aggregator.node_finished()
    assert aggregator.finished
