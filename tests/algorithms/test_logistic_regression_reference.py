"""algorithms/logistic_regression.py against statsmodels on the pooled complete cases (issue 13, points 2-4)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.optimize import linprog

from flame_sdk.disclosure import DisclosureError
from flame_sdk.star.run_errors import NodeFailedError
from flame_sdk.testing import FakeFlameSDK, run_local
from tests.algorithms.test_algorithms_math import cohort_csv, iterate, load

module = load("logistic_regression")
FEATURES = ["age", "bmi", "systolic_bp", "cholesterol", "smoker", "male"]


def frames(sizes=(500, 400, 473), seed=11) -> list[pd.DataFrame]:
    return [pd.read_csv(io.BytesIO(cohort_csv(n, seed + i))) for i, n in enumerate(sizes)]


def splits_of(parts: list[pd.DataFrame]) -> list[list[dict[str, bytes]]]:
    return [[{"cohort.csv": part.to_csv(index=False).encode()}] for part in parts]


def statsmodels_fit(pooled: pd.DataFrame):
    """The reference: statsmodels Logit on the complete cases, male = 1 for 'male', 0 for 'female'."""
    frame = pooled.assign(male=pooled["sex"].map({"male": 1.0, "female": 0.0}))[[*FEATURES, "outcome"]].dropna()
    return sm.Logit(frame["outcome"], sm.add_constant(frame[FEATURES].astype(float))).fit(
        disp=0, method="newton", tol=1e-12, maxiter=100), len(frame)


def test_missing_sex_is_left_out_and_the_fit_equals_statsmodels():
    """The measured case: 15% of sex missing used to be coded female (206 extra rows, coefficients off)."""
    rng = np.random.default_rng(2)
    parts = frames()
    for part in parts:
        part.loc[rng.random(len(part)) < 0.15, "sex"] = np.nan
    pooled = pd.concat(parts, ignore_index=True)
    table, _ = iterate(module, splits_of(parts))
    federated = pd.read_csv(io.StringIO(table)).set_index("term")
    reference, complete = statsmodels_fit(pooled)
    excluded = len(pooled) - complete
    assert excluded == int(pooled["sex"].isna().sum()) > 150
    assert federated["n"].iloc[0] == complete and federated["n_excluded"].iloc[0] == excluded
    names = ["intercept", *FEATURES]
    coef_diff = np.abs(federated.loc[names, "coef"].to_numpy() - reference.params.to_numpy()).max()
    se_diff = np.abs(federated.loc[names, "std_error"].to_numpy() - reference.bse.to_numpy()).max()
    ci_diff = np.abs(federated.loc[names, ["ci_low", "ci_high"]].to_numpy() - reference.conf_int().to_numpy()).max()
    p_diff = np.abs(federated.loc[names, "p_value"].to_numpy() - reference.pvalues.to_numpy()).max()
    assert max(coef_diff, se_diff, ci_diff, p_diff) < 1e-8, (coef_diff, se_diff, ci_diff, p_diff)

    # what the old coding (missing -> female) would have fitted is visibly different
    wrong = pooled.assign(male=(pooled["sex"].astype(str).str.lower() == "male").astype(float))
    old = sm.Logit(wrong["outcome"], sm.add_constant(wrong[FEATURES].astype(float))).fit(disp=0)
    assert np.abs(old.params.to_numpy() - reference.params.to_numpy()).max() > 0.01


def test_hl7_codes_are_mapped_with_a_warning_and_numbers_are_rejected():
    part = frames(sizes=(60,))[0]
    part["sex"] = part["sex"].map({"male": "M", "female": "f"})
    part.loc[:4, "sex"] = "other"
    flame = FakeFlameSDK("default", s3_data=splits_of([part])[0])
    module.RegressionAnalyzer(flame).analyze(flame.s3_data)
    warnings_logged = [r.log for r in flame.logs if r.log_type == "warn"]
    males = int((part["sex"] == "M").sum())
    assert any(f"{males} rows 'M' -> male" in w for w in warnings_logged), warnings_logged
    assert any("5 rows with codes ['other'] are neither male nor female" in w for w in warnings_logged)
    assert any("5 rows left out" in w and "'male': 5" in w for w in warnings_logged)

    part["sex"] = np.where(part.index % 2 == 0, "1", "2")
    with pytest.raises(ValueError, match=r"column 'sex' has codes \{'1': 30, '2': 30\}.*ISO 5218"):
        module.design(part, FEATURES, "outcome")


def separable(pooled: pd.DataFrame, strict: bool) -> bool:
    """Independent LP check (Konis 2007): is there d != 0 with (2y-1) x.d >= 0 (> 0 with strict) for all rows?"""
    frame = pooled.assign(male=(pooled["sex"] == "male").astype(float))
    x = np.column_stack([np.ones(len(frame)), frame[FEATURES].to_numpy(dtype=float)])
    x = x / np.abs(x).max(axis=0)
    signed = (2 * frame["outcome"].to_numpy() - 1)[:, None] * x
    if strict:  # maximise t subject to signed @ d >= t, |d| <= 1
        objective = np.r_[np.zeros(x.shape[1]), -1.0]
        constraints = np.column_stack([-signed, np.ones(len(x))])
        result = linprog(objective, A_ub=constraints, b_ub=np.zeros(len(x)),
                         bounds=[(-1, 1)] * x.shape[1] + [(None, 1)], method="highs")
    else:  # maximise the sum of signed @ d subject to signed @ d >= 0, |d| <= 1
        result = linprog(-signed.sum(axis=0), A_ub=-signed, b_ub=np.zeros(len(x)), bounds=[(-1, 1)] * x.shape[1],
                         method="highs")
    return result.status == 0 and -result.fun > 1e-9


def statsmodels_diverges(pooled: pd.DataFrame, column: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit, _ = statsmodels_fit(pooled)
    return not fit.mle_retvals["converged"] and abs(fit.params[column]) > 10


def test_perfect_separation_fails_naming_the_column():
    parts = frames(sizes=(120, 90, 150), seed=1)
    for part in parts:
        part["outcome"] = (part["age"] > 60).astype(int)
    pooled = pd.concat(parts, ignore_index=True)
    assert separable(pooled, strict=True) and statsmodels_diverges(pooled, "age")
    with pytest.raises(ValueError, match=r"^perfect separation: 'age' predicts the outcome without error"):
        iterate(module, splits_of(parts))


def test_quasi_complete_separation_fails_naming_the_column():
    parts = frames(sizes=(120, 90, 150), seed=1)
    for part in parts:
        part.loc[part["smoker"] == 1, "outcome"] = 1
    pooled = pd.concat(parts, ignore_index=True)
    assert separable(pooled, strict=False) and not separable(pooled, strict=True)
    assert statsmodels_diverges(pooled, "smoker")
    with pytest.raises(ValueError, match=r"^quasi-complete separation: 'smoker' predicts the outcome"):
        iterate(module, splits_of(parts))


def test_no_false_separation_on_ordinary_small_data():
    for seed in range(8):
        parts = frames(sizes=(40, 30, 25), seed=seed)
        table, _ = iterate(module, splits_of(parts))
        reference, _ = statsmodels_fit(pd.concat(parts, ignore_index=True))
        coef = pd.read_csv(io.StringIO(table))["coef"].to_numpy()
        assert np.abs(coef - reference.params.to_numpy()).max() < 1e-6


@pytest.mark.sim
def test_separation_fails_the_run_instead_of_reporting_success():
    parts = frames(sizes=(60, 50), seed=1)
    for part in parts:
        part["outcome"] = (part["age"] > 60).astype(int)
    with pytest.raises(NodeFailedError, match="perfect separation: 'age'") as caught:
        run_local(data_splits=splits_of(parts), **module.star_arguments({}))
    run = caught.value.run
    assert run.aggregator.status == "failed" and run.final_results == []


def test_a_predictor_constant_on_every_node_is_named():
    parts = frames(sizes=(120, 90, 150), seed=1)
    for part in parts:
        part["smoker"] = 1
    pooled = pd.concat(parts, ignore_index=True).assign(male=lambda f: (f["sex"] == "male").astype(float))
    x = sm.add_constant(pooled[FEATURES].astype(float), has_constant="add").to_numpy()
    assert np.linalg.matrix_rank(x) == x.shape[1] - 1  # the pooled design is singular: no fit exists
    with pytest.raises(ValueError, match=r"predictor\(s\) 'smoker' \(always 1\) take a single value in every row"):
        iterate(module, splits_of(parts))


def test_collinear_predictors_are_named():
    parts = frames(sizes=(120, 90, 150), seed=1)
    for part in parts:
        part["bmi"] = 2 * part["age"] + 3
    with pytest.raises(ValueError, match=r"predictors \['age', 'bmi'\] are perfectly collinear"):
        iterate(module, splits_of(parts))


def test_too_few_events_are_not_published():
    parts = frames(sizes=(60, 50, 40), seed=1)
    for part in parts:
        part["outcome"] = 0
    parts[0].loc[:2, "outcome"] = 1
    with pytest.raises(DisclosureError, match=r"events \(outcome 1\) count is below min_cell_size=5"):
        iterate(module, splits_of(parts))
