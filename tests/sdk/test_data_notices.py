"""Data requests that find nothing say so: missing S3 keys name the keys that exist, empty FHIR searches get
a notice naming the node, source and query (issue 12, point 5)."""

from __future__ import annotations

import pytest

from flame_sdk import FlameCoreSDK
from flame_sdk.errors import DataSourceError
from flame_sdk.testing import FakeFlameSDK

pytestmark = pytest.mark.sim


@pytest.fixture
def node1(analysis):
    sdk = FlameCoreSDK(env={**analysis.env(analysis.data_node_ids[0]), "FLAME_LOG_PREFIX": "node-1"}, silent=True)
    yield sdk
    sdk.close()


def records(sdk, log_type: str) -> list[str]:
    return [r.log for r in sdk._core._logger.history if r.log_type == log_type]


def test_missing_s3_keys_name_the_keys_that_exist(node1) -> None:
    with pytest.raises(DataSourceError, match=r"none of the S3 keys \['cohort2.csv'\] exists in the S3 source\(s\) "
                                              r"of node node-1; they hold 'node1-s3': cohort.csv, signals.npy"):
        node1.get_s3_data(["cohort2.csv"])
    found = node1.get_s3_data(["cohort.csv", "absent.csv"])
    assert list(found[0]) == ["cohort.csv"]
    [warning] = records(node1, "warn")
    assert "['absent.csv'] exist in no S3 source of node node-1" in warning and "cohort.csv, signals.npy" in warning


def test_a_fhir_search_without_matches_gets_a_notice(node1) -> None:
    result = node1.get_fhir_data(["Observation?code=http://loinc.org|0000-0", "Patient?_summary=count"])
    assert result[0]["Observation?code=http://loinc.org|0000-0"]["total"] == 0
    assert records(node1, "notice") == [
        "FHIR query 'Observation?code=http://loinc.org|0000-0' matched no resources in data source 'node1-fhir' of "
        "node node-1; check the resource type, codes and dates (an empty Bundle is returned)"]


def test_the_fake_sdk_gives_the_same_answers() -> None:
    fake = FakeFlameSDK("default", node_id="node-1", s3_data=[{"cohort.csv": b"x"}],
                        fhir_data=[{"Encounter?": {"resourceType": "Bundle", "total": 0}}])
    with pytest.raises(DataSourceError, match=r"none of the S3 keys \['cohort2.csv'\].*'fake-s3': cohort.csv"):
        fake.get_s3_data(["cohort2.csv"])
    assert fake.get_s3_data(["cohort.csv", "b.csv"]) == [{"cohort.csv": b"x"}]
    assert "['b.csv'] exist in no S3 source of node node-1" in fake.logs[-1].log
    fake.get_fhir_data(["Encounter?"])
    assert fake.logs[-1].log_type == "notice" and "'Encounter?' matched no resources" in fake.logs[-1].log
    with pytest.raises(DataSourceError, match="cannot be read through the node's S3 gateway.*'notes/read me.txt'"):
        fake.get_s3_data(["notes/read me.txt"])
