"""Each sample algorithm, run federated over the simulator on synthetic data, equals its pooled computation."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from flame_sdk.sim.run.runner import run_analysis
from flame_sdk.testing import assert_matches_pooled, run_local
from tests.algorithms.test_algorithms_math import ALGORITHMS, load

pytestmark = pytest.mark.sim


@pytest.mark.slow
def test_descriptive_statistics_match_the_pooled_table():
    module = load("descriptive_statistics")
    comparison = assert_matches_pooled(pooled=lambda data: module.pooled_statistics(data), nodes=3, seed=7,
                                       tolerance=1e-9, **module.star_arguments({}))
    table = pd.read_csv(io.StringIO(comparison.run.result))
    assert set(table["loinc"].astype(str)) >= {"29463-7", "8480-6", "2093-3", "4548-4"}
    assert table["suppressed"].any() and (table.loc[~table["suppressed"], "n"] >= 5).all()
    assert comparison.run.final_results[0][1].decode() == comparison.run.result


@pytest.mark.slow
def test_logistic_regression_reaches_the_pooled_coefficients():
    module = load("logistic_regression")

    def coefficient_fields(table_csv: str) -> pd.DataFrame:
        return pd.read_csv(io.StringIO(table_csv))[["term", "coef", "std_error"]]

    comparison = assert_matches_pooled(pooled=lambda data: coefficient_fields(module.pooled_fit(data).to_csv()),
                                       result_fields=coefficient_fields, nodes=3, seed=7, tolerance=1e-6,
                                       **module.star_arguments({}))
    assert comparison.run.converged and comparison.run.rounds < 20
    assert comparison.max_difference < 1e-6
    coefficients = coefficient_fields(comparison.run.result).set_index("term")["coef"]
    assert coefficients["smoker"] > 0 and np.isfinite(coefficients.to_numpy()).all()


def test_odds_ratio_matches_the_pooled_table():
    module = load("odds_ratio")
    comparison = assert_matches_pooled(pooled=lambda data: module.pooled_table(data), nodes=3, seed=7,
                                       tolerance=1e-12, **module.star_arguments({}))
    table = pd.read_csv(io.StringIO(comparison.run.result)).set_index("stratum")
    assert {"all", "mantel-haenszel"} <= set(table.index)
    assert table.loc["all", "odds_ratio"] > 0


def test_a_failing_algorithm_argument_names_the_node():
    module = load("odds_ratio")
    arguments = module.star_arguments({"ALGO_EXPOSURE": "no_such_column"})
    from flame_sdk.star.run_errors import NodeFailedError

    with pytest.raises(NodeFailedError, match=r"columns \['no_such_column'\] are not in the dataset"):
        assert_matches_pooled(pooled=module.pooled_table, nodes=2, seed=7, **arguments)


@pytest.mark.slow
def test_runs_are_repeatable_with_the_same_seed():
    module = load("odds_ratio")
    first, again = (run_local(nodes=3, seed=11, **module.star_arguments({})) for _ in range(2))
    other = run_local(nodes=3, seed=12, **module.star_arguments({}))
    assert first.result == again.result and first.analysis_id == again.analysis_id
    assert other.result != first.result


@pytest.mark.slow
@pytest.mark.parametrize("name", ["descriptive_statistics", "logistic_regression"])
def test_the_file_runs_unchanged_in_flame_sim(name, tmp_path, capsys):
    """What `make demo` does: one process per node, `python <file>` with the node's environment."""
    code = run_analysis(str(ALGORITHMS / f"{name}.py"), nodes=3, seed=7, results_dir=tmp_path, timeout=120)
    assert code == 0, capsys.readouterr().err
    [folder] = tmp_path.iterdir()
    table = pd.read_csv(folder / f"{name}.csv")
    assert len(table) > 0 and not table.empty
    assert f"== {name}.csv ==" in capsys.readouterr().out
