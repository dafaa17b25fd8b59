"""fhir_to_csv on generated bundles, checked against values computed directly from the same resources."""

from __future__ import annotations

from io import StringIO

import pandas as pd
import pytest

from flame_sdk.data.fhir_to_csv import fhir_to_csv
from flame_sdk.data.frames import resources_frame, to_models
from flame_sdk.sim.data.synthetic import CohortParams, cohort_resources

RESOURCES = cohort_resources(CohortParams(patients=25, seed=8, id_prefix="x"))
OBSERVATIONS = [r for r in RESOURCES if r["resourceType"] == "Observation"]
RESPONSES = [r for r in RESOURCES if r["resourceType"] == "QuestionnaireResponse"]
OBS_ARGS = {"col_key_seq": "resource.code.coding.code", "value_key_seq": "resource.valueQuantity.value",
            "input_resource": "Observation", "row_key_seq": "resource.subject.reference"}
QR_ARGS = {"col_key_seq": "resource.item.linkId", "value_key_seq": "resource.item.answer.value",
           "input_resource": "QuestionnaireResponse"}


def bundle(resources: list[dict], link: list[dict] | None = None) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources), "link": link or [],
            "entry": [{"resource": r} for r in resources]}


def paged(resources: list[dict], size: int) -> tuple[dict, dict[str, dict]]:
    """The first page and a {url: page} map, linked by ``next`` URLs."""
    chunks = [resources[i:i + size] for i in range(0, len(resources), size)]
    urls = [f"http://gw/kong/src/fhir/Observation?_offset={i * size}" for i in range(len(chunks))]
    pages = {}
    for i, chunk in enumerate(chunks):
        link = [{"relation": "next", "url": urls[i + 1]}] if i + 1 < len(chunks) else []
        pages[urls[i]] = bundle(chunk, link)
    return pages[urls[0]], pages


def expected_observations() -> dict[str, dict[str, object]]:
    table: dict[str, dict[str, object]] = {}
    for obs in OBSERVATIONS:
        code = obs["code"]["coding"][0]["code"]
        table.setdefault(code, {})[obs["subject"]["reference"]] = (obs.get("valueQuantity") or {}).get("value")
    return table


def read_csv(out: StringIO, sep: str = ",") -> pd.DataFrame:
    return pd.read_csv(out, sep=sep, dtype=str, keep_default_na=False, index_col=0)


def test_observation_csv_matches_independent_pivot() -> None:
    frame = read_csv(fhir_to_csv(bundle(OBSERVATIONS), **OBS_ARGS))
    expected = expected_observations()
    assert list(frame.columns) == list(expected)
    patients = list(dict.fromkeys(o["subject"]["reference"] for o in OBSERVATIONS))
    assert list(frame.index) == patients
    for code, cells in expected.items():
        for patient in patients:
            value = cells.get(patient)
            assert frame.loc[patient, code] == ("" if value is None else str(value))


def test_dict_output_equals_independent_pivot() -> None:
    assert fhir_to_csv(bundle(OBSERVATIONS), output_type="dict", **OBS_ARGS) == expected_observations()


def test_next_pages_are_followed() -> None:
    first, pages = paged(OBSERVATIONS, 37)
    fetched: list[str] = []

    def next_page(url: str) -> dict:
        fetched.append(url)
        return pages[url]

    table = fhir_to_csv(first, output_type="dict", next_page=next_page, **OBS_ARGS)
    assert table == expected_observations() and len(fetched) == len(pages) - 1
    without = fhir_to_csv(first, output_type="dict", **OBS_ARGS)
    assert sum(len(c) for c in without.values()) < sum(len(c) for c in table.values())


def test_paging_loop_is_an_error() -> None:
    loop = "http://gw/kong/src/fhir/Observation?_offset=0"
    page = bundle(OBSERVATIONS[:3], [{"relation": "next", "url": loop}])
    with pytest.raises(ValueError, match="paging loop"):
        fhir_to_csv(page, next_page=lambda url: page, **OBS_ARGS)
    first, pages = paged(OBSERVATIONS, 10)
    with pytest.raises(ValueError, match="more than 3 FHIR pages"):
        fhir_to_csv(first, next_page=pages.__getitem__, max_pages=3, **OBS_ARGS)


def test_filters_separator_and_row_column_name() -> None:
    out = fhir_to_csv(bundle(OBSERVATIONS), row_id_filters=["x-p00001", "x-p00002"], col_id_filters=["8480"],
                      row_col_name="patient", separator=";", **OBS_ARGS)
    text = out.getvalue()
    assert text.splitlines()[0] == "patient;8480-6"
    frame = read_csv(StringIO(text), sep=";")
    rows = {"Patient/x-p00001", "Patient/x-p00002"}
    assert set(frame.index) == rows & set(expected_observations()["8480-6"])


def test_questionnaire_responses_pivot_items_per_response() -> None:
    frame = read_csv(fhir_to_csv(bundle(RESPONSES), **QR_ARGS))
    assert list(frame.index) == [str(i) for i in range(len(RESPONSES))]
    for i, response in enumerate(RESPONSES):
        for item in response["item"]:
            answer = item["answer"][0]
            value = next(v for k, v in answer.items() if k.startswith("value"))
            assert frame.loc[str(i), item["linkId"]] == str(value)
    by_subject = fhir_to_csv(bundle(RESPONSES), row_key_seq="resource.subject.reference", output_type="dict",
                             col_id_filters=["phq2"], **QR_ARGS)
    assert list(by_subject) == ["phq2-score"]
    assert set(by_subject["phq2-score"]) == {r["subject"]["reference"] for r in RESPONSES}


@pytest.mark.parametrize(("kwargs", "error", "fragment"), [
    ({"input_resource": "Patient"}, ValueError, "not supported"),
    ({"row_key_seq": None}, ValueError, "needs row_key_seq"),
    ({"col_key_seq": "resource.code.codng.code"}, ValueError, "col_key_seq='resource.code.codng.code' matched nothing"),
    ({"row_key_seq": "resource.subjct.reference"}, ValueError, "row_key_seq='resource.subjct.reference'"),
    ({"value_key_seq": ""}, ValueError, "dot-separated key sequence"),
    ({"output_type": "xlsx"}, ValueError, "output_type"),
    ({"separator": ";;"}, ValueError, "one character"),
    ({"row_id_filters": "abc"}, TypeError, "list of substrings"),
])
def test_bad_arguments_name_the_problem(kwargs: dict, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace("?", r"\?")):
        fhir_to_csv(bundle(OBSERVATIONS), **{**OBS_ARGS, **kwargs})


def test_questionnaire_key_sequences_must_start_at_items() -> None:
    with pytest.raises(ValueError, match="starts with 'resource.item.'"):
        fhir_to_csv(bundle(RESPONSES), **{**QR_ARGS, "col_key_seq": "resource.linkId"})


def test_not_a_bundle() -> None:
    with pytest.raises(TypeError, match=r"get_fhir_data\(\['Observation'\]\)\[0\]\['Observation'\]"):
        fhir_to_csv([bundle(OBSERVATIONS)], **OBS_ARGS)  # type: ignore[arg-type]


def test_frames_and_models() -> None:
    patients = resources_frame(bundle(RESOURCES), "Patient")
    assert len(patients) == 25 and list(patients.columns[:3]) == ["id", "gender", "birth_date"]
    observations = resources_frame({"Observation": bundle(OBSERVATIONS)})
    sbp = observations[observations["code"] == "8480-6"]
    assert set(sbp["unit"]) == {"mm[Hg]"} and sbp["value"].notna().all()
    smoking = observations[observations["code"] == "72166-2"]
    assert set(smoking["value"]) <= {"77176002", "266919005"}
    conditions = resources_frame(bundle(RESOURCES), "Condition")
    assert set(conditions["clinical_status"]) <= {"active", "resolved"}
    assert len(to_models(bundle(OBSERVATIONS[:5]))) == 5
    with pytest.raises(ValueError, match="no frame builder"):
        resources_frame(bundle(RESPONSES))


def _pandas_csv(table: dict, row_col_name: str, separator: str) -> str:
    """What pandas writes for the pivot table (the oracle the csv module writer must match)."""
    columns = list(table)
    rows = list(dict.fromkeys(row for column in table.values() for row in column))
    data = {col: pd.Series([table[col].get(row) for row in rows], dtype=object) for col in columns}
    frame = pd.DataFrame(data, columns=columns)
    frame.index = pd.Index(rows, name=row_col_name or None, dtype=object)
    out = StringIO()
    frame.to_csv(out, sep=separator, index_label=row_col_name, lineterminator="\n")
    return out.getvalue()


@pytest.mark.parametrize("table", [
    {},
    {"a": {}},
    {"a": {"r1": 1.5, "r2": None}, "b": {"r2": float("nan"), "r3": "x,y"}},
    {"8480-6": {"Patient/1": 120.0, "Patient/2": 1e-7}, "c;d": {"Patient/1": 'he said "hi"\nnext', "Patient/3": True}},
    {"q1": {"0": [1, 2], "1": {"a": 1}}, 2: {"0": 10**20, "": ""}},
    {"x": {"r": 0.1 + 0.2, "s": -0.0, "t": float("inf")}},
])
def test_csv_is_written_as_pandas_writes_the_table(table: dict) -> None:
    from flame_sdk.data.fhir_to_csv import write_csv

    for row_col_name in ("", "id", "a,b"):
        for separator in (",", ";", "\t"):
            out = StringIO()
            write_csv(table, out, row_col_name, separator)
            assert out.getvalue() == _pandas_csv(table, row_col_name, separator)


def test_fhir_to_csv_does_not_import_pandas() -> None:
    import subprocess
    import sys

    code = ("import sys; from flame_sdk.data.fhir_to_csv import fhir_to_csv; "
            "fhir_to_csv({'resourceType': 'Bundle', 'entry': []}, 'a.b', 'a.c', 'Observation', row_key_seq='a.d'); "
            "assert 'pandas' not in sys.modules, 'pandas was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
