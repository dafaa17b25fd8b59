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
    ("Observation?foo=1", 400, 'HAPI-0524: Unknown search parameter "foo" for resource type "Observation". Valid '
                               'search parameters for this search are: [_content, _id, _lastUpdated, _profile, '),
    ("Observation?_count=x", 400, "not an integer"),
    ("Observation?_count=5000", 400, "outside"),
    ("Observation?date=yesterday", 400, "date parameter"),
    ("Patient?_summary=true", 400, "_summary=count"),
    ("Patient?phonetic=smith", 400, "search parameter 'phonetic' of Patient; it searches Patient by _id, "),
    ("Observation?patient.gender=female", 400, "chained search parameter 'patient.gender' (the simulated FHIR "
                                               "server does not implement this; a real node's HAPI server does)"),
    ("Observation?date=ap2022", 400, "the 'ap' prefix"),
    ("Observation?_include=Patient:link", 400, "is not an include this server can follow"),
    ("Observation?_sort=foo", 400, "has no search parameter 'foo'"),
    ("Observation?value-quantity=abc", 400, "quantity value 'abc'"),
])
def test_bad_searches_are_operation_outcomes(store: FhirStore, query: str, status: int, fragment: str) -> None:
    with pytest.raises(FhirError) as info:
        search(store, query)
    assert info.value.status == status and fragment in info.value.diagnostics
    assert info.value.outcome()["resourceType"] == "OperationOutcome"


def test_unknown_resource_and_id(store: FhirStore) -> None:
    with pytest.raises(FhirError, match="Resource Patient/nope is not known"):
        store.handle("Patient/nope", "", BASE)
    with pytest.raises(FhirError) as info:
        store.handle("patients", "", BASE)
    assert info.value.status == 404 and info.value.diagnostics.startswith(
        "HAPI-0302: Unknown resource type 'patients' - Server knows how to handle: [Account, ")
    # a type HAPI knows, without data here: an empty searchset, as HAPI answers an empty table
    assert search(store, "Procedure?code=123")["total"] == 0 and search(store, "Procedure")["entry"] == []


def test_rendered_answers_equal_the_handled_ones(store: FhirStore) -> None:
    for tail, query in (("Observation", "_count=3&_offset=6"), ("Patient", "_summary=count"), ("metadata", "")):
        rendered = json.loads(store.render(tail, query, BASE))
        handled = store.handle(tail, query, BASE)
        rendered.pop("id", None)  # a fresh Bundle id per answer
        handled.pop("id", None)
        assert rendered == handled


def ids(bundle: dict, mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == mode]


def test_the_five_common_types_are_held_and_searchable(store: FhirStore) -> None:
    for rtype in ("Patient", "Observation", "Condition", "Encounter", "MedicationStatement"):
        assert search(store, f"{rtype}?_summary=count")["total"] == len(of_type(rtype)) > 0, rtype
    visits = [r for r in of_type("Encounter") if r["subject"]["reference"] == "Patient/s-p00002"]
    assert search(store, "Encounter?patient=s-p00002&_count=10")["total"] == len(visits)
    assert search(store, "Encounter?class=http://terminology.hl7.org/CodeSystem/v3-ActCode|AMB")["total"] == len(
        of_type("Encounter"))
    metformin = [r for r in of_type("MedicationStatement") if r["medicationCodeableConcept"]["text"] == "metformin"]
    assert search(store, "MedicationStatement?code=http://www.whocc.no/atc|A10BA02")["total"] == len(metformin)
    assert search(store, "MedicationStatement?code=http://www.nlm.nih.gov/research/umls/rxnorm|")["total"] == len(
        of_type("MedicationStatement"))
    active = [r for r in of_type("MedicationStatement") if r["status"] == "active"]
    assert search(store, "MedicationStatement?status=active")["total"] == len(active)
    hypertension = [r for r in of_type("Condition") if r["code"]["coding"][0]["code"] == "38341003"]
    assert search(store, "Condition?code=http://snomed.info/sct|38341003")["total"] == len(hypertension)
    resolved = [r for r in hypertension if r["clinicalStatus"]["coding"][0]["code"] == "resolved"]
    assert search(store, "Condition?code=38341003&clinical-status=resolved")["total"] == len(resolved)
    assert search(store, "Condition?code=38341003&abatement-date:missing=false")["total"] == len(resolved)


def test_dates_follow_the_ranges_of_the_r4_prefixes(store: FhirStore) -> None:
    born = sorted(r["birthDate"] for r in of_type("Patient"))
    year = born[len(born) // 2][:4]
    assert search(store, f"Patient?birthdate={year}")["total"] == sum(b.startswith(year) for b in born)
    assert search(store, f"Patient?birthdate=lt{year}")["total"] == sum(b < year for b in born)
    assert search(store, f"Patient?birthdate=ge{year}")["total"] == sum(b >= year for b in born)
    assert search(store, f"Patient?birthdate=sa{year}")["total"] == sum(b[:4] > year for b in born)
    assert search(store, f"Patient?birthdate=ne{year}")["total"] == sum(not b.startswith(year) for b in born)
    both = search(store, f"Patient?birthdate=ge{year}-01-01&birthdate=le{year}-12-31")["total"]
    assert both == sum(b.startswith(year) for b in born)  # a repeated parameter is AND
    ongoing = [r for r in of_type("MedicationStatement") if "end" not in r["effectivePeriod"]]
    assert search(store, "MedicationStatement?effective=gt2030")["total"] == len(ongoing)  # open periods reach on


def test_strings_quantities_and_modifiers() -> None:
    store = FhirStore([
        {"resourceType": "Patient", "id": "a", "name": [{"family": "Müller", "given": ["Anna"]}],
         "address": [{"city": "Köln"}]},
        {"resourceType": "Patient", "id": "b", "name": [{"family": "Mueller-Schmidt"}], "gender": "male"},
        {"resourceType": "Observation", "id": "o1", "subject": {"reference": "http://x/fhir/Patient/a"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}], "text": "Systolic BP"},
         "valueQuantity": {"value": 141.5, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
        {"resourceType": "Observation", "id": "o2", "subject": {"reference": "Patient/b"},
         "valueQuantity": {"value": 120, "code": "mm[Hg]"}},
    ])
    assert ids(search(store, "Patient?family=muller")) == ["a"]  # accents and case folded, starts with
    assert ids(search(store, "Patient?family:exact=Müller")) == ["a"]
    assert ids(search(store, "Patient?name:contains=schmidt")) == ["b"]
    assert ids(search(store, "Patient?address-city=koln")) == ["a"]
    assert ids(search(store, "Patient?gender:not=male")) == ["a"]
    assert ids(search(store, "Patient?gender:missing=true")) == ["a"]
    assert ids(search(store, "Observation?value-quantity=gt130")) == ["o1"]
    assert ids(search(store, "Observation?value-quantity=141.5|http://unitsofmeasure.org|mm[Hg]")) == ["o1"]
    assert ids(search(store, "Observation?value-quantity=141")) == []  # 141.5 is outside [140.5, 141.5)
    assert ids(search(store, "Observation?value-quantity=142")) == ["o1"]  # inside [141.5, 142.5)
    assert ids(search(store, "Observation?value-quantity=le120")) == ["o2"]
    assert ids(search(store, "Observation?subject=Patient/a")) == ["o1"]  # absolute references resolve
    assert ids(search(store, "Observation?subject:Patient=b")) == ["o2"]
    assert ids(search(store, "Observation?code:text=systolic")) == ["o1"]
    assert ids(search(store, "Observation?code=|8480-6")) == []  # a system is given
    assert ids(search(store, "Observation?_id=o2,o1&_sort=-_id")) == ["o2", "o1"]


def test_include_revinclude_sort_elements_and_total(store: FhirStore) -> None:
    bundle = search(store, "Observation?code=8480-6&_count=5&_include=Observation:subject")
    patients = {e["resource"]["subject"]["reference"].split("/")[1] for e in bundle["entry"]
                if e["search"]["mode"] == "match"}
    assert set(ids(bundle, "include")) == patients and bundle["total"] == len(
        [r for r in of_type("Observation") if r["code"]["coding"][0]["code"] == "8480-6"])
    second = store.handle("", next_link(bundle).removeprefix(BASE + "?"), BASE)  # later pages include too
    assert ids(second, "include")
    both = search(store, "Observation?_id=s-p00001-o0-8480-6&_include=Observation:encounter"
                         "&_include=Observation:patient")
    assert sorted(ids(both, "include")) == ["s-p00001", "s-p00001-e0"]
    assert ids(search(store, "Observation?_id=s-p00001-o0-8480-6&_include=*"), "include") == [
        "s-p00001", "s-p00001-e0"]
    rev = search(store, "Patient?_id=s-p00001&_revinclude=Encounter:subject")
    assert ids(rev) == ["s-p00001"] and sorted(ids(rev, "include")) == sorted(
        r["id"] for r in of_type("Encounter") if r["subject"]["reference"] == "Patient/s-p00001")
    dates = [e["resource"]["birthDate"] for e in search(store, "Patient?_sort=-birthdate&_count=1000")["entry"]]
    assert dates == sorted(dates, reverse=True)
    slim = search(store, "Patient?_elements=gender&_count=2&_total=none")
    assert "total" not in slim and set(slim["entry"][0]["resource"]) == {"resourceType", "id", "meta", "gender"}
    assert slim["entry"][0]["resource"]["meta"]["tag"][0]["code"] == "SUBSETTED"
    rendered = json.loads(store.render("Patient", "_id=s-p00001&_revinclude=Encounter:subject", BASE))
    assert {e["search"]["mode"] for e in rendered["entry"]} == {"match", "include"}
