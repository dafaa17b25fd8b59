"""The star templates log shapes and counts: no raw data, no aggregate before local DP noise (issue 12, 7)."""

from __future__ import annotations

import pytest

from flame_sdk.star import StarAggregator, StarAnalyzer
from flame_sdk.star.log_shapes import data_shape, shape
from flame_sdk.testing import FakeFlameSDK, run_local

pytestmark = pytest.mark.sim

# Values that appear nowhere else: any of them in a log line is a leak.
ROWS = [[9171.25, 8363.5], [7459.75]]
EXACT_SUM = 24994.5  # sum of ROWS, the un-noised aggregate
PATIENT = "patient-x7q"


def split(values: list[float]) -> list[dict[str, bytes]]:
    rows = "\n".join(f"{PATIENT},{v}" for v in values)
    return [{"rows.csv": f"id,value\n{rows}\n".encode()}]


class SumAnalyzer(StarAnalyzer):
    def analysis_method(self, data, aggregator_results):
        lines = data[0]["rows.csv"].decode().split()[1:]
        return sum(float(line.split(",")[1]) for line in lines)


class SumAggregator(StarAggregator):
    def aggregation_method(self, analysis_results):
        return sum(analysis_results)

    def has_converged(self, result, last_result):
        return True


def leaks(text: str) -> list[str]:
    secrets = [str(EXACT_SUM), f"{EXACT_SUM:g}", PATIENT] + [str(v) for part in ROWS for v in part]
    return [secret for secret in secrets if secret in text]


def test_a_local_dp_run_logs_neither_raw_data_nor_the_un_noised_aggregate(capfd):
    run = run_local(SumAnalyzer, SumAggregator, "s3", data_splits=[split(v) for v in ROWS],
                    epsilon=1.0, sensitivity=1.0)
    [(_, released)] = run.final_results
    assert float(released) != EXACT_SUM  # the released value is noised
    streamed = "\n".join(node.log_text() for node in run.nodes.values())
    printed = capfd.readouterr().out
    assert "Round 1 aggregated: a number (float)" in streamed and "Data extracted: 1 source: 1 dataset" in streamed
    assert leaks(streamed) == [] and leaks(printed) == []


def test_shapes_describe_without_values():
    import numpy as np
    import pandas as pd

    assert shape(390.0) == "a number (float)" and shape("abc") == "str of 3 characters"
    assert shape({"a": 1, "b": 2}) == "dict with 2 fields" and shape([1]) == "list of 1 item"
    assert shape(np.zeros((3, 2))) == "ndarray 3x2" and shape(pd.DataFrame({"x": [1, 2]})) == "DataFrame 2x1"
    assert shape(b"xyz") == "3 bytes" and shape(None) == "NoneType"
    fhir = [{"Patient?": {"resourceType": "Bundle", "entry": [{}, {}]}, "Observation?": {"resourceType": "Bundle"}}]
    assert data_shape(fhir) == "1 source: 2 FHIR queries, 2 resources"
    assert data_shape([{"a.csv": b"12345"}, {}]) == "2 sources: 1 dataset, 5 bytes; 0 datasets, 0 bytes"
    assert data_shape([3, 1, 4]) == "list of 3 items" and data_shape(pd.DataFrame({"x": [1]})) == "DataFrame 1x1"


def test_the_fake_sdk_sees_the_same_shapes():
    from flame_sdk.star import StarModel

    flame = FakeFlameSDK("default", node_id="a1", s3_data=split(ROWS[0]))
    flame.deliver_message("aggregator", "analysis_finished", {})
    StarModel(SumAnalyzer, SumAggregator, "s3", flame=flame)
    assert leaks("\n".join(record.log for record in flame.logs)) == []
