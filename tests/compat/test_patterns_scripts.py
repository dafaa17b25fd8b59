"""The StarModelTester scripts of PrivateAIM/python-sdk-patterns, restated: same imports, same calls, same data.

``test/test_star_pattern.py``, ``test/test_multiple_results.py`` and ``test/test_persistent_analyzer_state.py``
define an analyzer and an aggregator over plain lists of numbers and call ``StarModelTester`` with
``data_splits=[[1, 2, 3, 4], [5, 6, 7, 8]]``, ``data_type='s3'``, ``simple_analysis=False`` (and
``multiple_results=True`` in the second). ``test/test_e2e.py`` passes platform-shaped S3 splits (CSV bytes)
with ``query=[]``, four results of mixed output types and four result paths. The expected values are what the
reference tester prints for the same scripts (README, "Compatibility with the reference SDK").
"""

from __future__ import annotations

import io
from typing import Any, Optional

import pandas as pd
import pytest

from flame.star import StarAggregator, StarAnalyzer, StarModelTester

pytestmark = [pytest.mark.sim, pytest.mark.slow]

SPLITS = [[1, 2, 3, 4], [5, 6, 7, 8]]
PLAIN_DATA_WARNING = r"data split 1 is not in the shape a FLAME node gives an analysis"


# -- test/test_star_pattern.py ---------------------------------------------------------------------------
class PatternAnalyzer(StarAnalyzer):
    def __init__(self, flame):
        super().__init__(flame)

    def analysis_method(self, data, aggregator_results):
        self.flame.flame_log(f"aggregate seen by {self.id}: {aggregator_results}", log_type="debug")
        mean = sum(data) / len(data)
        return mean if aggregator_results is None else (mean + aggregator_results) + 1 / 2


class PatternAggregator(StarAggregator):
    def __init__(self, flame):
        super().__init__(flame)

    def aggregation_method(self, analysis_results: list[Any]) -> Any:
        self.flame.flame_log(f"results at the aggregator: {analysis_results}", log_type="notice")
        return sum(analysis_results) / len(analysis_results)

    def has_converged(self, result: Any, last_result: Optional[Any]) -> bool:  # noqa: UP045 - as the script
        self.flame.flame_log(f"round {self.num_iterations}: {last_result} -> {result}", log_type="notice")
        return self.num_iterations >= 5


def test_star_pattern_script(capsys):
    with pytest.warns(UserWarning, match=PLAIN_DATA_WARNING):
        tester = StarModelTester(data_splits=SPLITS, analyzer=PatternAnalyzer, aggregator=PatternAggregator,
                                 data_type="s3", simple_analysis=False)
    assert [content for _, content in tester.run.final_results] == [b"29.5"]
    assert tester.run.rounds == 6 and tester.run.converged
    assert sorted(n.data for n in tester.run.nodes.values() if n.role == "default") == SPLITS
    assert ": 29.5\n" in capsys.readouterr().out


# -- test/test_multiple_results.py -----------------------------------------------------------------------
class FirstElementAnalyzer(PatternAnalyzer):
    def analysis_method(self, data, aggregator_results):
        if aggregator_results:
            aggregator_results = aggregator_results[0]
        return super().analysis_method(data, aggregator_results)


class PairAggregator(PatternAggregator):
    def aggregation_method(self, analysis_results: list[Any]) -> Any:
        return super().aggregation_method(analysis_results), 1


def test_multiple_results_script():
    with pytest.warns(UserWarning, match=PLAIN_DATA_WARNING):
        tester = StarModelTester(data_splits=SPLITS, analyzer=FirstElementAnalyzer, aggregator=PairAggregator,
                                 multiple_results=True, data_type="s3", simple_analysis=False)
    assert [content for _, content in tester.run.final_results] == [b"29.5", b"1"]


# -- test/test_persistent_analyzer_state.py --------------------------------------------------------------
class HistoryAnalyzer(StarAnalyzer):
    def __init__(self, flame):
        super().__init__(flame)
        self.local_history: list[float] = []  # kept across rounds: the same analyzer object runs every round

    def analysis_method(self, data, aggregator_results):
        local_mean = sum(data) / len(data)
        if aggregator_results is None:
            result = local_mean
        else:
            weight = min(len(self.local_history) / 10, 0.9)
            result = (1 - weight) * aggregator_results + weight * local_mean
        self.local_history.append(result)
        return result


def test_persistent_analyzer_state_script():
    with pytest.warns(UserWarning, match=PLAIN_DATA_WARNING):
        tester = StarModelTester(data_splits=SPLITS, analyzer=HistoryAnalyzer, aggregator=PatternAggregator,
                                 data_type="s3", simple_analysis=False)
    assert [content for _, content in tester.run.final_results] == [b"4.5"]


# -- test/test_e2e.py (its API surface, without scikit-learn and matplotlib) ------------------------------
def labeled_csv(*ages: int) -> bytes:
    return ("age,pasc\n" + "".join(f"{age},{age % 2}\n" for age in ages)).encode()


class CsvAnalyzer(StarAnalyzer):
    def __init__(self, flame):
        super().__init__(flame)

    def analysis_method(self, data, aggregator_results):
        content = [v for k, v in data[0].items() if k.endswith("labeled.csv")][0]
        frame = pd.read_csv(io.BytesIO(content))
        return {"node_id": getattr(self, "id", "unknown"), "n_rows": len(frame), "age_sum": int(frame["age"].sum())}


class ReportAggregator(StarAggregator):
    """Summaries until round 3, then the four result files (two images, a description, one more image)."""

    def __init__(self, flame):
        super().__init__(flame)

    def aggregation_method(self, analysis_results: list) -> dict | list:
        rows = sum(r["n_rows"] for r in analysis_results)
        summary = {"rows": rows, "mean_age": sum(r["age_sum"] for r in analysis_results) / rows,
                   "iteration": self.num_iterations}
        if not self.has_converged(summary, self.latest_result):
            return summary
        return [b"\x89PNG age", f"rows: {rows}, mean age: {summary['mean_age']}", b"\x89PNG pasc", b"\x89PNG sex"]

    def has_converged(self, result, last_result) -> bool:
        return isinstance(result, list) or self.num_iterations >= 2


def test_e2e_script_api(tmp_path):
    data = [[{"synthetic_1_labeled.csv": labeled_csv(30, 50), "synthetic_1.csv": b"age\n1\n"}],
            [{"synthetic_2_labeled.csv": labeled_csv(40, 60, 70)}]]
    paths = [str(tmp_path / name) for name in ("age.png", "description.txt", "pasc.png", "sex.png")]
    StarModelTester(data_splits=data, analyzer=CsvAnalyzer, aggregator=ReportAggregator, data_type="s3", query=[],
                    multiple_results=True, simple_analysis=False, output_type=["bytes", "str", "bytes", "bytes"],
                    result_filepath=paths)
    assert [open(p, "rb").read() for p in paths] == [b"\x89PNG age", b"rows: 5, mean age: 50.0", b"\x89PNG pasc",
                                                     b"\x89PNG sex"]
