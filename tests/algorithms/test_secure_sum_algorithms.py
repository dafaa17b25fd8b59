"""The three sample analyses with ALGO_SECURE_SUM=true give the plain mode's table, to floating-point precision.

Both runs share one simulator (same nodes and synthetic data, seed 7, two data nodes). Measured: the odds
ratio table is identical; descriptive statistics differ by at most 1e-15 relative (the secure sum adds the
values exactly and the standard deviations come from a second pass); logistic regression coefficients by
about 1e-14 relative, p-values far below 1e-10 by about 1e-12 (erfc amplifies the last bits of z).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from flame_sdk.sim.run.simulation import SimConfig, Simulation
from flame_sdk.testing import run_local
from tests.algorithms.test_algorithms_math import load


def plain_and_secure(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    module = load(name)
    with Simulation(SimConfig(nodes=3, seed=7, status_interval=0.2)) as sim:
        plain = run_local(simulation=sim, **module.star_arguments({}))
        secure = run_local(simulation=sim, **module.star_arguments({"ALGO_SECURE_SUM": "true"}))
    assert secure.participation.secure_sum and not plain.participation.secure_sum
    return pd.read_csv(io.StringIO(plain.result)), pd.read_csv(io.StringIO(secure.result))


def assert_same_table(plain: pd.DataFrame, secure: pd.DataFrame, rtol: float) -> None:
    assert list(secure.columns) == list(plain.columns) and secure.shape == plain.shape
    numbers = plain.select_dtypes("number").columns
    pd.testing.assert_frame_equal(secure.drop(columns=numbers), plain.drop(columns=numbers))
    np.testing.assert_allclose(secure[numbers].to_numpy(float), plain[numbers].to_numpy(float), rtol=rtol, atol=0,
                               equal_nan=True)


@pytest.mark.sim
@pytest.mark.slow
def test_odds_ratio_with_secure_sum_equals_the_plain_table():
    plain, secure = plain_and_secure("odds_ratio")
    pd.testing.assert_frame_equal(secure, plain)
    assert plain["suppressed"].notna().all() and len(plain) == 4  # female, male, all, mantel-haenszel


@pytest.mark.sim
@pytest.mark.slow
def test_descriptive_statistics_with_secure_sum_equal_the_plain_table():
    plain, secure = plain_and_secure("descriptive_statistics")
    assert_same_table(plain, secure, rtol=1e-14)
    assert plain["suppressed"].any() and plain["sd"].notna().sum() > 20


@pytest.mark.sim
@pytest.mark.slow
def test_logistic_regression_with_secure_sum_equals_the_plain_fit():
    plain, secure = plain_and_secure("logistic_regression")
    assert_same_table(plain[["term", "coef", "std_error", "odds_ratio", "n"]],
                      secure[["term", "coef", "std_error", "odds_ratio", "n"]], rtol=1e-12)
    assert_same_table(plain, secure, rtol=1e-10)


def test_secure_sum_needs_fixed_strata_and_checks_the_data_against_them():
    module = load("odds_ratio")
    arguments = module.star_arguments({"ALGO_SECURE_SUM": "1"})
    assert arguments["secure_sum"] is True and arguments["analyzer_kwargs"]["strata"] == module.SEX_CODES
    with pytest.raises(ValueError, match="with secure_sum, list the values of 'region' in ALGO_STRATA"):
        module.star_arguments({"ALGO_SECURE_SUM": "1", "ALGO_STRATIFY": "region"})
    frame = pd.DataFrame({"smoker": [1, 0, 1], "outcome": [0, 1, 1], "sex": ["female", "female", "F"]})
    with pytest.raises(ValueError, match=r"value\(s\) \['F'\], which are not among the strata"):
        module.count_cells(frame, "smoker", "outcome", "sex", module.SEX_CODES)
    cells = module.count_cells(frame[:2], "smoker", "outcome", "sex", module.SEX_CODES)
    assert list(cells["counts"]) == module.SEX_CODES and cells["counts"]["male"] == [0, 0, 0, 0]
    assert cells["nonzero"]["female"] == [0, 1, 1, 0] and cells["nonzero"]["all"] == [0, 1, 1, 0]


def test_every_sample_analysis_can_run_with_secure_sum_and_min_nodes():
    for name in ("descriptive_statistics", "logistic_regression", "odds_ratio"):
        arguments = load(name).star_arguments({"ALGO_SECURE_SUM": "true", "ALGO_MIN_NODES": "2"})
        assert arguments["secure_sum"] is True and arguments["min_nodes"] == 2, name
        assert "secure_sum" not in load(name).star_arguments({}), name
