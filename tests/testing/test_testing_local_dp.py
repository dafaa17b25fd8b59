"""LocalRun.result is the value as released: with local DP the noised one (issue 13, point 8)."""

from __future__ import annotations

import pytest

from flame_sdk.star import StarAggregator
from flame_sdk.testing import run_local
from tests.star.test_star_sim import SPLITS, SumAnalyzer

pytestmark = pytest.mark.sim


class SumsAggregator(StarAggregator):
    """The sum and the count of all values, as two results (local DP noises one number per file)."""

    def aggregation_method(self, analysis_results):
        return [float(sum(r["sum"] for r in analysis_results)), float(sum(r["n"] for r in analysis_results))]

    def has_converged(self, result, last_result):
        return True


def test_the_result_is_the_noised_release_and_the_exact_value_is_named_as_such():
    run = run_local(SumAnalyzer, SumsAggregator, "s3", data_splits=SPLITS, multiple_results=True, epsilon=1.0,
                    sensitivity=1.0)
    released = [float(content) for _, content in run.final_results]
    assert run.result == released and run.aggregator.result == released
    assert run.result_before_noise == [36.0, 5.0]
    assert run.result[0] != pytest.approx(36.0, abs=1e-9) and run.result[1] != pytest.approx(5.0, abs=1e-9)


def test_without_local_dp_nothing_is_noised():
    run = run_local(SumAnalyzer, SumsAggregator, "s3", data_splits=SPLITS, multiple_results=True)
    assert run.result == [36.0, 5.0] and run.result_before_noise is None
