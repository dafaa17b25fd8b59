"""The synthetic data generator: determinism, node differences, FHIR validity, datasets and bundle files."""

from __future__ import annotations

import io
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from fhir.resources.R4B import get_fhir_model_class

from flame_sdk.sim.data.bundle_export import write_bundles
from flame_sdk.sim.data.data_sources import (
    default_cohort,
    default_data_sources,
    parse_data_source,
    parse_data_sources,
    sources_from_split,
)
from flame_sdk.sim.data.synthetic import (
    CONDITION_CODES,
    CSV_COLUMNS,
    OBSERVATION_CODES,
    CohortParams,
    cohort_csv,
    cohort_resources,
    cohort_signals,
    generate_patients,
)

SMALL = CohortParams(patients=40, seed=3, id_prefix="t")


def test_same_params_give_identical_resources_and_datasets() -> None:
    assert json.dumps(cohort_resources(SMALL)) == json.dumps(cohort_resources(SMALL))
    assert cohort_csv(SMALL) == cohort_csv(SMALL)
    assert cohort_signals(SMALL) == cohort_signals(SMALL)


def test_other_seed_or_prefix_changes_the_data() -> None:
    other_seed = CohortParams(patients=40, seed=4, id_prefix="t")
    assert cohort_csv(other_seed) != cohort_csv(SMALL)
    other_prefix = CohortParams(patients=40, seed=3, id_prefix="u")
    assert generate_patients(other_prefix)[0].id.startswith("u-")


def test_every_resource_validates_as_fhir_r4() -> None:
    resources = cohort_resources(CohortParams(patients=60, seed=9, id_prefix="v"))
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    kinds = Counter(r["resourceType"] for r in resources)
    assert kinds["Patient"] == 60
    assert kinds["Observation"] >= 60 * len(OBSERVATION_CODES)
    assert kinds["Condition"] > 0 and kinds["QuestionnaireResponse"] > 0


def test_observations_carry_the_documented_loinc_codes_and_units() -> None:
    observations = [r for r in cohort_resources(SMALL) if r["resourceType"] == "Observation"]
    seen = {}
    for obs in observations:
        coding = obs["code"]["coding"][0]
        assert coding["system"] == "http://loinc.org"
        seen[coding["code"]] = (obs.get("valueQuantity") or {}).get("unit")
    assert seen == {code: unit for code, (_, unit, _) in OBSERVATION_CODES.items()}
    conditions = {r["code"]["coding"][0]["code"] for r in cohort_resources(SMALL) if r["resourceType"] == "Condition"}
    assert conditions <= set(CONDITION_CODES)


def test_csv_has_one_row_per_patient_matching_the_fhir_patients() -> None:
    frame = pd.read_csv(io.BytesIO(cohort_csv(SMALL)))
    assert tuple(frame.columns) == CSV_COLUMNS
    patients = {r["id"]: r for r in cohort_resources(SMALL) if r["resourceType"] == "Patient"}
    assert list(frame["patient_id"]) == list(patients)
    assert list(frame["sex"]) == [p["gender"] for p in patients.values()]
    assert set(frame["outcome"]) <= {0, 1} and set(frame["smoker"]) <= {0, 1}


def test_outcome_follows_the_logistic_model() -> None:
    frame = pd.read_csv(io.BytesIO(cohort_csv(CohortParams(patients=3000, seed=1, id_prefix="big"))))
    older = frame[frame["age"] > 60]["outcome"].mean()
    younger = frame[frame["age"] < 50]["outcome"].mean()
    smokers = frame[frame["smoker"] == 1]["outcome"].mean()
    non_smokers = frame[frame["smoker"] == 0]["outcome"].mean()
    assert older > younger + 0.1 and smokers > non_smokers + 0.05


def test_signals_are_a_float32_array_per_patient() -> None:
    array = np.load(io.BytesIO(cohort_signals(SMALL)), allow_pickle=False)
    assert array.shape == (40, SMALL.signal_length) and array.dtype == np.float32


def test_default_sources_differ_per_node() -> None:
    first, second = default_cohort(1, 5), default_cohort(2, 5)
    assert first.patients != second.patients and first.age_mean != second.age_mean
    kinds = [s["kind"] for s in default_data_sources(1, 5)]
    assert kinds == ["fhir", "s3"]
    names = {s["name"] for n in (1, 2, 3) for s in default_data_sources(n, 5)}
    assert len(names) == 6


def test_spec_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="'kind' must be one of"):
        parse_data_source({"kind": "sql", "name": "x", "generator": {}})
    with pytest.raises(ValueError, match="not a bare UUID"):
        parse_data_source({"kind": "fhir", "name": "6f1e5a0c-4b7e-4d55-9a53-6a1d1c0f1a5e", "resources": []})
    with pytest.raises(ValueError, match="unknown generator parameter"):
        parse_data_source({"kind": "fhir", "name": "x", "generator": {"patient": 3}})
    with pytest.raises(ValueError, match="give a 'generator' or inline data"):
        parse_data_source({"kind": "s3", "name": "x"})
    with pytest.raises(ValueError, match="without 'id'"):
        parse_data_source({"kind": "fhir", "name": "x", "resources": [{"resourceType": "Patient"}]})
    with pytest.raises(ValueError, match="used twice"):
        parse_data_sources([{"kind": "s3", "name": "x", "objects": {}}] * 2)


def test_inline_specs_load_bundles_and_objects() -> None:
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "a"}}]}
    fhir = parse_data_source({"kind": "fhir", "name": "f", "resources": [bundle, {"resourceType": "Patient", "id": "b"}]})
    assert [r["id"] for r in fhir.fhir_resources()] == ["a", "b"]
    s3 = parse_data_source({"kind": "s3", "name": "s", "objects": {"a.txt": "hi", "b.bin": b"\x00"},
                            "generator": {"patients": 5}, "datasets": ["cohort.csv"]})
    assert set(s3.s3_objects()) == {"a.txt", "b.bin", "cohort.csv"} and s3.s3_objects()["a.txt"] == b"hi"


def test_write_bundles_layout(tmp_path) -> None:
    written = write_bundles(tmp_path, nodes=3, seed=2)
    assert not (tmp_path / "node-0").exists()
    for node in (1, 2):
        fhir_dir = tmp_path / f"node-{node}" / f"node{node}-fhir"
        bundle = json.loads((fhir_dir / "Patient.json").read_text())
        assert bundle["resourceType"] == "Bundle" and bundle["total"] == default_cohort(node, 2).patients
        assert (tmp_path / f"node-{node}" / f"node{node}-s3" / "cohort.csv").exists()
        params = json.loads((tmp_path / "params.json").read_text())[f"node-{node}"]
        assert params[f"node{node}-fhir"]["patients"] == default_cohort(node, 2).patients
    assert all(p.exists() for p in written)


def test_sources_from_an_analysts_split() -> None:
    patient = {"resourceType": "Patient", "id": "a", "gender": "female"}
    split = {"Patient": {"resourceType": "Bundle", "entry": [{"resource": patient}]},
             "Patient?gender=female": {"resourceType": "Bundle", "entry": [{"resource": patient}]}}
    (fhir,) = parse_data_sources(sources_from_split(split, "fhir", "tester-fhir"))
    assert fhir.fhir_resources() == [patient]
    (s3,) = parse_data_sources(sources_from_split({"a.csv": b"x"}, "s3", "tester-s3"))
    assert s3.s3_objects() == {"a.csv": b"x"}
    with pytest.raises(ValueError, match="data_type must be"):
        sources_from_split({}, "sql", "x")
