"""algorithms/odds_ratio.py against statsmodels on the pooled complete cases (issue 13, points 1 and 6)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.contingency_tables import StratifiedTable, Table2x2

from flame_sdk.disclosure import derivable_cells
from tests.algorithms.test_algorithms_math import load, run_simple
from tests.sdk.test_disclosure import determined

module = load("odds_ratio")


def rows_for(counts: dict[str, list[int]], seed: int = 0) -> pd.DataFrame:
    """Patient rows whose 2x2 counts per sex are ``counts`` ([a, b, c, d] as in the result table)."""
    pattern = [(1, 1), (1, 0), (0, 1), (0, 0)]
    rows = [{"sex": sex, "smoker": e, "outcome": o}
            for sex, cells in counts.items() for (e, o), n in zip(pattern, cells, strict=True) for _ in range(n)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def split(frame: pd.DataFrame, parts: int = 3, seed: int = 0) -> list[list[dict[str, bytes]]]:
    cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, len(frame)), parts - 1, replace=False))
    bounds = [0, *cuts.tolist(), len(frame)]
    return [[{"cohort.csv": frame.iloc[start:stop].to_csv(index=False).encode()}]
            for start, stop in zip(bounds, bounds[1:], strict=False)]


def federated(frame: pd.DataFrame, **arguments) -> pd.DataFrame:
    result = run_simple(module, module.TableAnalyzer, module.TableAggregator, split(frame),
                        aggregator_kwargs=arguments)
    return pd.read_csv(io.StringIO(result)).set_index("stratum")


def reference(a: int, b: int, c: int, d: int) -> dict[str, float]:
    table = Table2x2(np.array([[a, b], [c, d]]), shift_zeros=False)
    or_low, or_high = table.oddsratio_confint()
    rr_low, rr_high = table.riskratio_confint()
    return {"odds_ratio": table.oddsratio, "or_ci_low": or_low, "or_ci_high": or_high, "risk_ratio": table.riskratio,
            "rr_ci_low": rr_low, "rr_ci_high": rr_high, "chi2_p": table.test_nominal_association().pvalue}


def test_the_measured_leak_no_longer_reveals_the_female_row():
    """female = [3, 50, 10, 100], male = [20, 60, 30, 120]: female 'exposed_events' was all - male."""
    counts = {"female": [3, 50, 10, 100], "male": [20, 60, 30, 120]}
    result = federated(rows_for(counts))
    published = result.loc[["female", "male", "all"], module.CELLS]
    assert pd.isna(published.at["female", "exposed_events"])
    exact = module.count_table(counts)
    withheld = published.isna()
    assert derivable_cells(exact, withheld) == [] and determined(exact, set(withheld[withheld].stack().index)) == []
    assert result.loc["female", "suppressed"] and result.loc["female", ESTIMATE_COLUMNS].isna().all()
    assert result.loc["mantel-haenszel", ESTIMATE_COLUMNS].isna().all()  # it would pin the withheld cells
    # what is shown is right: the crude row against statsmodels on the pooled table
    expected = reference(*exact.loc["all"])
    assert max(abs(result.at["all", k] - v) for k, v in expected.items()) < 1e-12


ESTIMATE_COLUMNS = ["odds_ratio", "or_ci_low", "or_ci_high", "risk_ratio", "rr_ci_low", "rr_ci_high", "chi2_p"]


def test_mantel_haenszel_is_shown_with_a_zero_cell():
    """A zero cell describes nobody: it is shown, and MH (which allows it) matches statsmodels."""
    counts = {"female": [0, 40, 12, 60], "male": [15, 50, 10, 70], "other": [6, 9, 5, 11]}
    result = federated(rows_for(counts, seed=3))
    assert not result["suppressed"].any()
    assert result.at["female", "exposed_events"] == 0 and pd.isna(result.at["female", "odds_ratio"])
    strata = StratifiedTable([np.array(c).reshape(2, 2) for c in counts.values()])
    low, high = strata.oddsratio_pooled_confint()
    mh = result.loc["mantel-haenszel"]
    differences = [abs(mh["odds_ratio"] - strata.oddsratio_pooled), abs(mh["or_ci_low"] - low),
                   abs(mh["or_ci_high"] - high)]
    assert max(differences) < 1e-12
    female = Table2x2(np.array(counts["female"]).reshape(2, 2), shift_zeros=False)
    assert result.at["female", "chi2_p"] == pytest.approx(female.test_nominal_association().pvalue, abs=1e-12)


def test_every_row_matches_statsmodels_on_the_pooled_complete_cases():
    rng = np.random.default_rng(5)
    frame = rows_for({"female": [30, 70, 25, 120], "male": [45, 60, 20, 90]}, seed=5)
    frame.loc[rng.random(len(frame)) < 0.1, "sex"] = np.nan  # unknown sex: left out, as statsmodels would
    frame.loc[rng.random(len(frame)) < 0.05, "smoker"] = np.nan
    result = federated(frame)
    complete = frame.dropna()
    worst = 0.0
    for stratum, group in [("all", complete), *complete.groupby("sex")]:
        table = pd.crosstab(group["smoker"], group["outcome"]).reindex(index=[1, 0], columns=[1, 0], fill_value=0)
        cells = table.to_numpy().ravel().tolist()
        assert result.loc[stratum, module.CELLS].tolist() == cells
        worst = max(worst, *(abs(result.at[stratum, k] - v) for k, v in reference(*cells).items()))
    strata = StratifiedTable([pd.crosstab(g["smoker"], g["outcome"]).reindex(index=[1, 0], columns=[1, 0]).to_numpy()
                              for _, g in complete.groupby("sex")])
    worst = max(worst, abs(result.at["mantel-haenszel", "odds_ratio"] - strata.oddsratio_pooled))
    assert worst < 1e-12


def test_rounding_and_contributing_nodes():
    frame = rows_for({"female": [30, 70, 25, 120], "male": [45, 60, 20, 90]}, seed=2)
    rounded = federated(frame, rounding_base=5)
    assert (rounded.loc[["female", "male", "all"], module.CELLS] % 5 == 0).all().all()
    assert rounded.at["all", "odds_ratio"] == pytest.approx(75 * 210 / (130 * 45))  # from the exact counts

    # one node alone holds every exposed female with the outcome: that cell is withheld (and its partner)
    nodes = [rows_for({"female": [6, 20, 10, 30], "male": [8, 20, 10, 30]}, seed=1),
             rows_for({"female": [0, 20, 10, 30], "male": [7, 20, 10, 30]}, seed=2)]
    splits = [[{"cohort.csv": n.to_csv(index=False).encode()}] for n in nodes]
    result = run_simple(module, module.TableAnalyzer, module.TableAggregator, splits,
                        aggregator_kwargs={"min_contributing_nodes": 2})
    table = pd.read_csv(io.StringIO(result)).set_index("stratum")
    assert pd.isna(table.at["female", "exposed_events"]) and pd.isna(table.at["male", "exposed_events"])
    assert table.at["all", "exposed_events"] == 21


def test_codes_other_than_0_1_are_rejected():
    frame = pd.DataFrame({"sex": ["female", "male"], "smoker": ["yes", "no"], "outcome": [0, 1]})
    with pytest.raises(ValueError, match=r"column 'smoker' must be 0/1 .*found \['no', 'yes'\]"):
        module.count_cells(frame, "smoker", "outcome", "sex")


def test_without_strata_the_table_is_one_protected_row():
    frame = rows_for({"female": [3, 50, 10, 100]})
    table = pd.read_csv(io.StringIO(module.pooled_table([{"cohort.csv": frame.to_csv(index=False).encode()}],
                                                        stratify=""))).set_index("stratum")
    assert list(table.index) == ["all"] and pd.isna(table.at["all", "exposed_events"])
    assert table.at["all", "exposed_non_events"] == 50 and table.at["all", "suppressed"]
