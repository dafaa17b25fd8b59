"""The simulator's FHIR search semantics (pure FhirStore; the HTTP path is covered in test_data_api.py)."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest

from flame_sdk.data.bundles import next_link
from flame_sdk.sim.data.synthetic import CohortParams, cohort_resources
from flame_sdk.sim.services.fhir_server import SEARCHES_KEPT, FhirError, FhirStore

BASE = "http://gw/kong/src/fhir"
RESOURCES = cohort_resources(CohortParams(patients=30, seed=5, id_prefix="s"))


@pytest.fixture(scope="module")
def store() -> FhirStore:
    return FhirStore(RESOURCES, page_size=20)


def search(store: FhirStore, query: str) -> dict:
    rtype, _, params = query.partition("?")
    return store.search(rtype, parse_qsl(params, keep_blank_values=True), BASE)


def of_type(rtype: str) -> list[dict]:
    return [r for r in RESOURCES if r["resourceType"] == rtype]


def test_paging_visits_every_match_once(store: FhirStore) -> None:
    bundle = search(store, "Observation")
    total, ids = bundle["total"], []
    while True:
        ids += [e["resource"]["id"] for e in bundle["entry"]]
        link = next_link(bundle)
        if link is None:
            break
        assert link.startswith(BASE + "?_getpages=")  # HAPI's paging links: the base, no resource type
        bundle = store.handle("", link.removeprefix(BASE + "?"), BASE)
        assert bundle["link"][0] == {"relation": "self", "url": link}
    assert total == len(of_type("Observation")) == len(ids) == len(set(ids))


def test_paging_links_go_both_ways_and_expire(store: FhirStore) -> None:
    first = search(store, "Observation?_count=5")
    second = store.handle("", next_link(first).removeprefix(BASE + "?"), BASE)
    previous = next(x["url"] for x in second["link"] if x["relation"] == "previous")
    again = store.handle("", previous.removeprefix(BASE + "?"), BASE)
    assert [e["resource"]["id"] for e in again["entry"]] == [e["resource"]["id"] for e in first["entry"]]
    assert search(store, "Observation?_count=5&_offset=5")["entry"] == second["entry"]
    with pytest.raises(FhirError) as info:
        store.handle("", "_getpages=nope&_getpagesoffset=5&_count=5", BASE)
    assert info.value.status == 410 and "does not exist and may have expired" in info.value.diagnostics
    assert next_link(search(store, "Observation?_count=5")) == next_link(first)  # a repeated search is reused
    for n in range(SEARCHES_KEPT):  # distinct searches push the first one out
        assert next_link(search(store, f"Patient?_count=1&_id=s-p00000,s-p00001,x{n}"))
    with pytest.raises(FhirError, match="may have expired"):
        store.handle("", next_link(first).removeprefix(BASE + "?"), BASE)


def test_count_summary_and_count_parameter(store: FhirStore) -> None:
    bundle = search(store, "Patient?_summary=count")
    assert bundle["total"] == 30 and "entry" not in bundle
    assert len(search(store, "Patient?_count=7")["entry"]) == 7
    assert search(store, "Patient?_count=0")["entry"] == []


def test_code_subject_and_date_filters(store: FhirStore) -> None:
    sbp = [r for r in of_type("Observation") if r["code"]["coding"][0]["code"] == "8480-6"]
    assert search(store, "Observation?code=8480-6&_count=1000")["total"] == len(sbp)
    assert search(store, "Observation?code=http://loinc.org|8480-6")["total"] == len(sbp)
    assert search(store, "Observation?code=http://other|8480-6")["total"] == 0
    both = search(store, "Observation?code=8480-6,2093-3")["total"]
    assert both == 2 * len(sbp)
    mine = [r for r in of_type("Observation") if r["subject"]["reference"] == "Patient/s-p00003"]
    assert search(store, "Observation?subject=Patient/s-p00003")["total"] == len(mine)
    assert search(store, "Observation?patient=s-p00003")["total"] == len(mine)
    late = [r for r in sbp if r["effectiveDateTime"] >= "2022-06"]
    assert search(store, "Observation?code=8480-6&date=ge2022-06")["total"] == len(late)
    in_2022 = [r for r in sbp if r["effectiveDateTime"].startswith("2022")]
    assert search(store, "Observation?code=8480-6&date=2022")["total"] == len(in_2022)
    females = [r for r in of_type("Patient") if r["gender"] == "female"]
    assert search(store, "Patient?gender=female")["total"] == len(females)


def test_read_and_metadata(store: FhirStore) -> None:
    assert store.handle("Patient/s-p00001", "", BASE)["id"] == "s-p00001"
    capability = store.handle("metadata", "", BASE)
    assert capability["resourceType"] == "CapabilityStatement"
    assert {r["type"] for r in capability["rest"][0]["resource"]} == set(store.resource_types)


@pytest.mark.parametrize(("query", "status", "fragment"), [
    ("Observation?foo=1", 400, "unknown search parameter 'foo'"),
    ("Observation?_count=x", 400, "not an integer"),
    ("Observation?_count=5000", 400, "outside"),
    ("Observation?date=yesterday", 400, "date parameter"),
    ("Patient?_summary=true", 400, "_summary=count"),
])
def test_bad_searches_are_operation_outcomes(store: FhirStore, query: str, status: int, fragment: str) -> None:
    with pytest.raises(FhirError) as info:
        search(store, query)
    assert info.value.status == status and fragment in info.value.diagnostics
    assert info.value.outcome()["resourceType"] == "OperationOutcome"


def test_unknown_resource_and_id(store: FhirStore) -> None:
    with pytest.raises(FhirError, match="is not known"):
        store.handle("Patient/nope", "", BASE)
    with pytest.raises(FhirError, match="not a FHIR resource type"):
        store.handle("patients", "", BASE)
    assert search(store, "Encounter")["total"] == 0


def test_rendered_answers_equal_the_handled_ones(store: FhirStore) -> None:
    for tail, query in (("Observation", "_count=3&_offset=6"), ("Patient", "_summary=count"), ("metadata", "")):
        rendered = json.loads(store.render(tail, query, BASE))
        handled = store.handle(tail, query, BASE)
        rendered.pop("id", None)  # a fresh Bundle id per answer
        handled.pop("id", None)
        assert rendered == handled
