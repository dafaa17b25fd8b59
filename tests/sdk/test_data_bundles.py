"""Bundle helpers: mapping next links of various FHIR servers onto a Kong route, extracting resources."""

from __future__ import annotations

import pytest

from flame_sdk.data.bundles import bundle_resources, fhir_suffix, next_link


@pytest.mark.parametrize(("link", "bases", "suffix"), [
    ("Patient?_count=5", (), "/Patient?_count=5"),
    ("/Observation", (), "/Observation"),
    ("http://gw:81/kong/src/fhir/Observation?_count=50&_offset=50", (), "/Observation?_count=50&_offset=50"),
    ("http://hapi:8080/fhir?_getpages=abc&_getpagesoffset=20", (), "?_getpages=abc&_getpagesoffset=20"),
    ("https://blaze/fhir/Patient/__page?__t=3", ("/fhir",), "/Patient/__page?__t=3"),
    ("http://server/baseR4/Patient?page=2", ("/baseR4/",), "/Patient?page=2"),
    ("http://server/baseR4?page=2", ("/baseR4",), "?page=2"),
])
def test_next_links_map_to_the_route_suffix(link: str, bases: tuple[str, ...], suffix: str) -> None:
    assert fhir_suffix(link, bases) == suffix


def test_a_link_without_a_known_base_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot find the FHIR base path"):
        fhir_suffix("http://server/r4/Patient?page=2", ["/baseR4"])


def test_next_link_and_resources() -> None:
    patient = {"resourceType": "Patient", "id": "a"}
    bundle = {"resourceType": "Bundle", "link": [{"relation": "self", "url": "s"}, {"relation": "next", "url": "n"}],
              "entry": [{"resource": patient}, {"fullUrl": "no-resource"}]}
    assert next_link(bundle) == "n" and next_link({"resourceType": "Bundle"}) is None
    assert bundle_resources(bundle) == [patient]
    assert bundle_resources({"q": bundle, "r": bundle}) == [patient, patient]
    assert bundle_resources([patient, [bundle]]) == [patient, patient]
    with pytest.raises(TypeError, match="expected FHIR Bundles"):
        bundle_resources(42)


def test_a_query_containing_a_code_system_url_is_a_query():
    from flame_sdk.data.bundles import fhir_suffix

    assert fhir_suffix("Observation?code=http://loinc.org|8480-6") == "/Observation?code=http://loinc.org|8480-6"
