"""The sample algorithms' math on small fixtures: federated pieces combine to the pooled computation.

Each node's analyzer and the aggregator run on FakeFlameSDK objects (no servers); the integration tests
in test_algorithms_sim.py run the same files over the simulator.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import sys
from datetime import date, timedelta
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from flame_sdk.disclosure import DisclosureConfig, derivable_cells
from flame_sdk.testing import FakeFlameSDK, compare

ALGORITHMS = Path(__file__).resolve().parents[2] / "algorithms"
NAMES = ["descriptive_statistics", "logistic_regression", "odds_ratio"]


def load(name: str) -> ModuleType:
    """Import algorithms/<name>.py as a module (the files are scripts, not a package)."""
    module_name = f"flame_algorithm_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, ALGORITHMS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


# ----------------------------------------------------------------------------- fixtures
def cohort_csv(rows: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    age = rng.integers(25, 85, rows)
    bmi = np.round(rng.normal(27, 4, rows), 1)
    sbp = np.round(118 + 0.5 * (age - 50) + rng.normal(0, 10, rows))
    chol = np.round(rng.normal(200, 35, rows))
    smoker = (rng.random(rows) < 0.3).astype(int)
    sex = np.where(rng.random(rows) < 0.5, "female", "male")
    logit = -1 + 0.5 * (age - 55) / 10 + 0.3 * (bmi - 27) / 5 + 0.8 * smoker + 0.3 * (sex == "male")
    outcome = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({"patient_id": [f"p{seed}-{i}" for i in range(rows)], "age": age, "sex": sex, "bmi": bmi,
                          "systolic_bp": sbp, "cholesterol": chol, "smoker": smoker, "outcome": outcome})
    return frame.to_csv(index=False).encode()


def s3_splits(sizes=(120, 90, 150), seed=1) -> list[list[dict[str, bytes]]]:
    return [[{"cohort.csv": cohort_csv(n, seed + i)}] for i, n in enumerate(sizes)]


def fhir_resources(patients: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    codes = load("descriptive_statistics").CODES
    means = {"29463-7": 78, "8302-2": 170, "39156-5": 27, "8480-6": 128, "2093-3": 200, "4548-4": 5.8}
    out = []
    for i in range(patients):
        pid = f"s{seed}-p{i}"
        birth = date(1935, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 70)))
        out.append({"resourceType": "Patient", "id": pid, "gender": "female" if rng.random() < 0.5 else "male",
                    "birthDate": birth.isoformat()})
        for visit in range(int(rng.integers(1, 3))):
            when = (date(2021, 1, 1) + timedelta(days=int(rng.integers(0, 900)) + visit)).isoformat()
            for code in codes:
                out.append({"resourceType": "Observation", "id": f"{pid}-{code}-{visit}", "status": "final",
                            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
                            "valueQuantity": {"value": round(float(rng.normal(means[code], means[code] / 8)), 1),
                                              "system": "http://unitsofmeasure.org", "code": codes[code].unit}})
    return out


def bundle(resources: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"resource": r} for r in resources]}


def fhir_splits(sizes=(40, 25, 60), seed=3) -> list[list[dict]]:
    splits = []
    for i, n in enumerate(sizes):
        resources = fhir_resources(n, seed + i)
        patients = [r for r in resources if r["resourceType"] == "Patient"]
        observations = [r for r in resources if r["resourceType"] == "Observation"]
        splits.append([{"Patient?_count=1000": bundle(patients), "Observation?_count=1000": bundle(observations)}])
    return splits


def run_simple(module: ModuleType, analyzer_cls, aggregator_cls, splits, analyzer_kwargs=None,
               aggregator_kwargs=None, data_type="s3"):
    """One round of a simple analysis over fake nodes: every analyzer, then the aggregator."""
    ids = [f"a{i}" for i in range(len(splits))]
    results = []
    for node_id, split in zip(ids, splits, strict=True):
        flame = FakeFlameSDK("default", node_id=node_id, **{f"{data_type}_data": split})
        analyzer = analyzer_cls(flame, **(analyzer_kwargs or {}))
        results.append(analyzer.analyze(split))
    aggregator = aggregator_cls(FakeFlameSDK("aggregator", partner_ids=ids), **(aggregator_kwargs or {}))
    result, converged = aggregator.aggregate(results)
    assert converged
    return result


def pooled(splits):
    return [source for split in splits for source in split]


# ----------------------------------------------------------------------------- metadata
@pytest.mark.parametrize("name", NAMES)
def test_metadata_is_a_literal_with_every_field(name):
    source = (ALGORITHMS / f"{name}.py").read_text()
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.Assign)
                and any(getattr(t, "id", None) == "ALGORITHM" for t in n.targets))
    metadata = ast.literal_eval(node.value)  # machine-readable without importing the file
    assert metadata == load(name).ALGORITHM and metadata["name"] == name
    assert {"name", "description", "data_type", "query", "arguments"} <= set(metadata)
    for arg in metadata["arguments"]:
        assert {"name", "type", "default", "description"} <= set(arg)
        assert isinstance(arg["default"], {"int": int, "float": float, "str": str, "bool": bool}[arg["type"]])
    assert json.loads((ALGORITHMS / "catalog.json").read_text())[name] == metadata


def test_arguments_come_from_the_environment():
    module = load("descriptive_statistics")
    assert module.read_arguments({})["min_cell_size"] == 5
    args = module.read_arguments({"ALGO_MIN_CELL_SIZE": "10", "ALGO_LATEST_ONLY": "false"})
    assert args["min_cell_size"] == 10 and args["latest_only"] is False


# ----------------------------------------------------------------------------- descriptive statistics
def test_descriptive_statistics_match_pooled_and_numpy():
    module = load("descriptive_statistics")
    splits = fhir_splits()
    federated = run_simple(module, module.StatisticsAnalyzer, module.StatisticsAggregator, splits,
                           aggregator_kwargs={"min_cell_size": 5}, data_type="fhir")
    reference = module.pooled_statistics(pooled(splits), min_cell_size=5)
    differences = compare(federated, reference, tolerance=1e-9)
    assert differences and all(d.ok for d in differences), [d for d in differences if not d.ok]

    table = pd.read_csv(io.StringIO(federated))
    frame = module.observation_rows(module.read_sources(pooled(splits)))
    for code in ("8480-6", "2093-3"):
        values = frame.loc[frame["loinc"] == code, "value"].to_numpy()
        row = table[(table["loinc"] == code) & (table["sex"] == "all") & (table["age_band"] == "all")].iloc[0]
        assert row["n"] == len(values) == 125  # latest value per patient: one per patient
        assert row["mean"] == pytest.approx(values.mean(), abs=1e-9)
        assert row["sd"] == pytest.approx(values.std(ddof=1), abs=1e-9)
        assert row["median"] == pytest.approx(np.median(values), rel=0.005)  # the sketch's stated accuracy


def test_descriptive_statistics_suppress_small_cells():
    module = load("descriptive_statistics")
    table = pd.read_csv(io.StringIO(module.pooled_statistics(pooled(fhir_splits()), min_cell_size=30)))
    small = table[table["suppressed"]]
    assert len(small) > 0 and small[["n", "mean", "sd", "median"]].isna().all().all()
    assert (table.loc[~table["suppressed"], "n"] >= 30).all()


def test_descriptive_statistics_withhold_complementary_cells():
    """The counts of one code as a sex x age band table with margins: no withheld count is derivable."""
    module = load("descriptive_statistics")
    code = "8480-6"
    counts = {("female", "0-39"): 10, ("female", "40-59"): 12, ("female", "80+"): 2,
              ("male", "0-39"): 9, ("male", "40-59"): 11, ("male", "80+"): 8}
    gamma = module.sketch_gamma(0.005)
    cells = {}
    for (sex, band), n in counts.items():
        values = np.linspace(110.0, 150.0, n)
        cells[(code, sex, band)] = {"n": n, "mean": values.mean(), "m2": ((values - values.mean()) ** 2).sum(),
                                    "sketch": module.sketch(code, values, gamma), "out_of_range": 0,
                                    "unit_rejected": 0}
    table = module.statistics_table([cells], DisclosureConfig(), 0.005).set_index(["sex", "age_band"])
    assert table.loc[("female", "80+"), "suppressed"]  # primary
    exact = pd.DataFrame(0, index=["female", "male", "all"], columns=["0-39", "40-59", "80+", "all"])
    for (sex, band), n in counts.items():
        exact.loc[sex, band] = n
    exact["all"] = exact.sum(axis=1)
    exact.loc["all"] = exact.loc[["female", "male"]].sum()
    withheld = pd.DataFrame({band: [bool(table.loc[(sex, band), "suppressed"]) for sex in exact.index]
                             for band in exact.columns}, index=exact.index)
    assert withheld.to_numpy().sum() == 4  # the primary and the cheapest rectangle through it
    assert derivable_cells(exact, withheld) == []
    assert table.loc[withheld.stack()[withheld.stack()].index, ["n", "mean", "median"]].isna().all().all()


def test_descriptive_statistics_follow_next_page_links():
    module = load("descriptive_statistics")
    first = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "x"}}],
             "link": [{"relation": "next", "url": "http://fhir/base/Patient?_count=1&_offset=1"}]}
    second = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "y"}}]}
    asked = []

    def fetch(query, index):
        asked.append((query, index))
        return second

    [resources] = module.read_sources([{"Patient?_count=1": first}], fetch)
    assert [r["id"] for r in resources] == ["x", "y"] and asked == [("Patient?_count=1&_offset=1", 0)]


def test_age_bands():
    module = load("descriptive_statistics")
    edges = module.parse_bands("0,40,60,80")
    assert [module.band_label(a, edges) for a in (0, 39, 40, 79, 80, 101)] == \
        ["0-39", "0-39", "40-59", "60-79", "80+", "80+"]
    with pytest.raises(ValueError, match="ascending"):
        module.parse_bands("40,20")


# ----------------------------------------------------------------------------- logistic regression
def iterate(module, splits, tolerance=1e-10, max_rounds=50):
    ids = [f"a{i}" for i in range(len(splits))]
    analyzers = [module.RegressionAnalyzer(FakeFlameSDK("default", node_id=n, s3_data=s))
                 for n, s in zip(ids, splits, strict=True)]
    aggregator = module.RegressionAggregator(FakeFlameSDK("aggregator", partner_ids=ids), tolerance=tolerance)
    for _ in range(max_rounds):
        results = [a.analyze(a.flame.s3_data) for a in analyzers]
        table, converged = aggregator.aggregate(results, simple_analysis=False)
        if converged:
            return table, aggregator.num_iterations
        for a in analyzers:
            a.latest_result = table
    raise AssertionError("no convergence")


def test_logistic_regression_reaches_the_pooled_fit():
    module = load("logistic_regression")
    splits = s3_splits()
    table, rounds = iterate(module, splits)
    federated = pd.read_csv(io.StringIO(table))
    reference = module.pooled_fit(pooled(splits))
    assert 3 <= rounds <= 15
    assert np.max(np.abs(federated["coef"] - reference["coef"])) < 1e-6
    assert np.max(np.abs(federated["std_error"] - reference["std_error"])) < 1e-6
    # the pooled fit solves the score equations: an independent check of the reference itself
    rows = module.design(module.read_table(pooled(splits)), module.feature_list("age,bmi,systolic_bp,"
                                                                               "cholesterol,smoker,male"), "outcome")
    assert np.max(np.abs(module.local_terms(rows.x, rows.y, reference["coef"].to_numpy())["gradient"])) < 1e-6


def test_logistic_regression_rejects_a_tiny_node():
    module = load("logistic_regression")
    analyzer = module.RegressionAnalyzer(FakeFlameSDK("default", s3_data=s3_splits((5,))[0]), min_rows=10)
    with pytest.raises(ValueError, match="fewer than min_rows=10"):
        analyzer.analyze(analyzer.flame.s3_data)


def test_logistic_regression_names_missing_columns():
    module = load("logistic_regression")
    with pytest.raises(ValueError, match=r"columns \['weight'\] are not in the dataset"):
        module.design(pd.DataFrame({"outcome": [0, 1]}), ["weight"], "outcome")


# ----------------------------------------------------------------------------- odds ratio
def test_odds_ratio_matches_pooled_and_hand_computation():
    module = load("odds_ratio")
    splits = s3_splits()
    federated = run_simple(module, module.TableAnalyzer, module.TableAggregator, splits)
    reference = module.pooled_table(pooled(splits))
    assert all(d.ok for d in compare(federated, reference, tolerance=1e-12))
    table = pd.read_csv(io.StringIO(federated)).set_index("stratum")
    a, b, c, d = (int(table.loc["all", cell]) for cell in module.CELLS)
    assert a + b + c + d == 360
    assert table.loc["all", "odds_ratio"] == pytest.approx(a * d / (b * c))
    assert set(table.index) == {"all", "female", "male", "mantel-haenszel"}


def test_odds_ratio_textbook_values():
    module = load("odds_ratio")
    m = module.measures(20, 80, 10, 90)  # OR 2.25 (Woolf SE 0.41667), RR 2
    assert m["odds_ratio"] == pytest.approx(2.25) and m["risk_ratio"] == pytest.approx(2.0)
    assert m["or_ci_low"] == pytest.approx(0.99429, abs=1e-4) and m["or_ci_high"] == pytest.approx(5.09155, abs=1e-4)
    mh = module.mantel_haenszel([[20, 80, 10, 90]])
    assert mh["odds_ratio"] == pytest.approx(2.25) and mh["or_ci_low"] == pytest.approx(m["or_ci_low"], rel=1e-6)


def test_odds_ratio_suppresses_small_cells():
    module = load("odds_ratio")
    table = module.result_table({"female": [3, 50, 20, 40], "male": [10, 40, 30, 50]}, DisclosureConfig())
    rows = table.set_index("stratum")
    assert rows.loc["female", "suppressed"] and pd.isna(rows.loc["female", "exposed_events"])
    assert rows.loc["female", "exposed_non_events"] == 50 and pd.isna(rows.loc["female", "odds_ratio"])
    assert rows.loc["mantel-haenszel", "suppressed"] and pd.isna(rows.loc["mantel-haenszel", "odds_ratio"])
    assert rows.loc["male", "suppressed"] and pd.isna(rows.loc["male", "exposed_events"])  # complementary
    assert not rows.loc["all", "suppressed"] and rows.loc["all", "exposed_events"] == 13
