"""Field-by-field comparison of federated and pooled results, and assert_matches_pooled's report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flame_sdk.testing import assert_matches_pooled, compare, flatten
from tests.star.test_star_sim import SPLITS, MeanAggregator, SumAnalyzer, numbers


def test_flatten_handles_nested_data_frames_and_text():
    assert flatten({"a": [1, {"b": np.float64(2.5)}]}) == {"a.0": 1, "a.1.b": 2.5}
    assert flatten(np.array([[1, 2]])) == {"0.0": 1, "0.1": 2}
    assert flatten('{"x": 1}') == {"x": 1}
    assert flatten("mean,n\n7.2,5\n") == {"0.mean": 7.2, "0.n": 5}
    assert flatten(pd.Series({"a": 1.0})) == {"a": 1.0}
    assert flatten("plain words") == {"value": "plain words"}


def test_compare_reports_each_field():
    differences = {d.field: d for d in compare({"a": 1.0, "b": 2.0, "c": "x"}, {"a": 1.0 + 1e-9, "b": 2.1, "d": 1})}
    assert differences["a"].ok and differences["a"].difference == pytest.approx(1e-9)
    assert not differences["b"].ok and differences["b"].difference == pytest.approx(0.1)
    assert not differences["c"].ok and differences["c"].pooled == "<missing>"
    assert not differences["d"].ok
    assert compare({"v": 1000.0}, {"v": 1000.5}, tolerance=1e-3, relative=True)[0].ok
    assert compare({"v": float("nan")}, {"v": float("nan")})[0].ok


def pooled_mean(data) -> str:
    values = numbers(data)
    return f"mean,n\n{sum(values) / len(values)},{len(values)}\n"


@pytest.mark.slow
def test_assert_matches_pooled_passes_and_reports_a_mismatch():
    comparison = assert_matches_pooled(SumAnalyzer, MeanAggregator, "s3", pooled=pooled_mean, data_splits=SPLITS)
    assert comparison.ok and comparison.max_difference < 1e-12 and comparison.pooled_result == "mean,n\n7.2,5\n"
    assert "0.mean" in comparison.report()

    def off_by_one(data) -> str:
        values = numbers(data)
        return f"mean,n\n{sum(values) / len(values)},{len(values) + 1}\n"

    with pytest.raises(AssertionError, match=r"(?s)differs from the pooled computation.*0\.n .*MISMATCH"):
        assert_matches_pooled(SumAnalyzer, MeanAggregator, "s3", pooled=off_by_one, data_splits=SPLITS)
