"""run_local's rough edges, each as an analyst met it (issue 12, point 5)."""

from __future__ import annotations

import inspect

import pytest

from flame_sdk.star import NodeFailedError, StarAggregator, StarAnalyzer
from flame_sdk.testing import assert_matches_pooled, run_local
from tests.sim.test_cli import flame_sim

pytestmark = pytest.mark.sim

SPLITS = [[{"x.csv": b"x\n1\n2\n"}], [{"x.csv": b"x\n3\n"}]]


class Count(StarAnalyzer):
    def analysis_method(self, data, aggregator_results):
        return sum(len(content.get("entry", [])) if isinstance(content, dict) else len(content.split()) - 1
                   for source in data for content in source.values())


class Total(StarAggregator):
    def aggregation_method(self, analysis_results):
        return sum(analysis_results)

    def has_converged(self, result, last_result):
        return True


CSV_ANALYSIS = """
from flame.star import StarModel, StarAnalyzer, StarAggregator

class Count(StarAnalyzer):
    def analysis_method(self, data, aggregator_results):
        return 1

class Total(StarAggregator):
    def aggregation_method(self, analysis_results):
        return sum(analysis_results)

    def has_converged(self, result, last_result):
        return True

if __name__ == "__main__":
    StarModel(Count, Total, "csv", query="x.csv")
"""


@pytest.mark.slow
def test_a_wrong_data_type_is_reported_as_flame_sim_reports_it(tmp_path):
    with pytest.raises(ValueError) as info:
        run_local(Count, Total, "csv", query="x.csv", data_splits=SPLITS)  # type: ignore[arg-type]
    assert str(info.value) == "data_type must be 'fhir' or 's3', got 'csv'"
    (tmp_path / "analysis.py").write_text(CSV_ANALYSIS)
    run = flame_sim("run", "analysis.py", "--nodes", "2", "--results", "out", cwd=tmp_path)
    assert run.returncode != 0 and f"ValueError: {info.value}" in run.stdout + run.stderr


def test_other_bad_arguments_fail_before_anything_starts():
    with pytest.raises(ValueError, match="a FHIR analysis needs query="):
        run_local(Count, Total, "fhir")
    with pytest.raises(ValueError, match="give both epsilon and sensitivity"):
        run_local(Count, Total, "s3", data_splits=SPLITS, epsilon=1.0)
    with pytest.raises(TypeError, match="pass the class, not an instance"):
        run_local(Count, object(), "s3")  # type: ignore[arg-type]


def test_run_local_and_assert_matches_pooled_take_the_same_positional_arguments():
    def positional(function) -> list[str]:
        return [p.name for p in inspect.signature(function).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

    assert positional(run_local) == positional(assert_matches_pooled) == ["analyzer", "aggregator", "data_type"]
    with pytest.raises(TypeError, match="positional argument"):
        run_local(Count, Total, "fhir", "Patient?_summary=count")  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional argument"):
        assert_matches_pooled(Count, Total, "s3", lambda data: 3)  # type: ignore[misc]


def test_quiet_prints_nothing_and_keeps_the_logs(capfd):
    run = run_local(Count, Total, "s3", data_splits=SPLITS, quiet=True)
    assert run.result == 3 and capfd.readouterr().out == ""
    assert any("Data extracted" in r["log"] for r in run.logs("node-1"))


def test_without_quiet_every_printed_line_names_its_node(capfd):
    run_local(Count, Total, "s3", data_splits=SPLITS)
    lines = capfd.readouterr().out.splitlines()
    assert lines and [line for line in lines if not line.startswith("[node-")] == []
    assert any(line.startswith("[node-1] Awaiting contact with 1 partner node(s)...") and line.endswith("success")
               for line in lines)


def test_a_missing_s3_key_fails_naming_the_keys_that_exist():
    with pytest.raises(NodeFailedError, match=r"none of the S3 keys \['y.csv'\] exists .*they hold '[^']+': x.csv"):
        run_local(Count, Total, "s3", query=["y.csv"], data_splits=SPLITS, quiet=True)


def test_a_fhir_query_without_matches_is_noticed_per_node():
    run = run_local(Count, Total, "fhir", query="Observation?code=http://loinc.org|0000-0", nodes=2, quiet=True)
    [notice] = [r for r in run.logs("node-1") if r["log_type"] == "notice"]
    assert notice["log"].startswith("FHIR query 'Observation?code=http://loinc.org|0000-0' matched no resources in "
                                    "data source 'node1-fhir' of node node-1")
