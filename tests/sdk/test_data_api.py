"""The data API end to end: FlameCoreSDK -> gateway -> Kong/hub adapter apps -> FHIR store / moto S3."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pandas as pd
import pytest

from flame_sdk import FlameCoreSDK
from flame_sdk.clients.data import S3SourceClient
from flame_sdk.errors import DataSourceError
from flame_sdk.sim.data.data_sources import default_cohort
from flame_sdk.sim.data.synthetic import CohortParams, cohort_csv, cohort_resources, cohort_signals
from flame_sdk.sim.run.simulation import SimAnalysis, SimConfig, Simulation

pytestmark = pytest.mark.sim

SEED = 11  # tests/conftest.py's simulation seed


def node_index(sim: Simulation, node_id: str) -> int:
    return int(sim.node(node_id).spec.name.split("-")[1])


def truth(sim: Simulation, node_id: str) -> CohortParams:
    return default_cohort(node_index(sim, node_id), SEED)


def of_type(params: CohortParams, rtype: str) -> list[dict]:
    return [r for r in cohort_resources(params) if r["resourceType"] == rtype]


def http_status(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def data_sdk(analysis: SimAnalysis) -> Iterator[FlameCoreSDK]:
    """An SDK on the first data node only (cheaper than one per node)."""
    sdk = FlameCoreSDK(env=analysis.env(analysis.data_node_ids[0]), silent=True)
    yield sdk
    sdk.close()


def test_each_node_lists_only_its_own_sources(sim, analysis, sdks) -> None:
    for node_id in analysis.data_node_ids:
        index = node_index(sim, node_id)
        sources = sdks[node_id].get_data_sources()
        assert [(s["name"], s["tags"]) for s in sources] == [
            (f"node{index}-fhir", ["type:fhir"]), (f"node{index}-s3", ["type:s3"])]
        assert all(s["id"] and s["protocol"] == "http" for s in sources)
    assert sdks[analysis.aggregator_id].get_data_sources() is None  # the aggregator has no data API by default


def test_fhir_search_follows_every_page_and_counts(sim, analysis, data_sdk) -> None:
    params = truth(sim, analysis.data_node_ids[0])
    observations = of_type(params, "Observation")
    assert len(observations) > 10 * 50  # the default page size is 50: many pages
    result = data_sdk.get_fhir_data(["Observation", "Patient?_summary=count"])
    assert len(result) == 1
    bundle = result[0]["Observation"]
    assert bundle["total"] == len(bundle["entry"]) == len(observations)
    assert [e["resource"]["id"] for e in bundle["entry"]] == [o["id"] for o in observations]
    assert not any(link["relation"] == "next" for link in bundle["link"])
    assert result[0]["Patient?_summary=count"]["total"] == params.patients


def test_documented_none_semantics(data_sdk) -> None:
    assert data_sdk.get_fhir_data([]) is None
    assert data_sdk.get_fhir_data(None) is None
    assert data_sdk.get_s3_data(None) is None


def test_s3_whole_bucket_and_key_filter(sim, analysis, data_sdk) -> None:
    params = truth(sim, analysis.data_node_ids[0])
    everything = data_sdk.get_s3_data()
    assert everything == [{"cohort.csv": cohort_csv(params), "signals.npy": cohort_signals(params)}]
    assert data_sdk.get_s3_data(["cohort.csv", "absent.csv"]) == [{"cohort.csv": cohort_csv(params)}]
    frame = pd.read_csv(io.BytesIO(everything[0]["cohort.csv"]))
    assert len(frame) == params.patients


def test_nodes_see_different_data(sim, analysis, sdks) -> None:
    counts = [sdks[n].get_fhir_data(["Patient?_summary=count"])[0]["Patient?_summary=count"]["total"]
              for n in analysis.data_node_ids]
    assert counts == [truth(sim, n).patients for n in analysis.data_node_ids] and len(set(counts)) == 2


def test_unknown_data_id_names_the_known_ids(data_sdk) -> None:
    known = data_sdk.get_data_sources()
    with pytest.raises(ValueError, match="no data source with id 'nope'") as info:
        data_sdk.get_data_client("nope")
    assert all(s["id"] in str(info.value) for s in known)


def test_a_node_cannot_read_another_nodes_sources(sim, analysis) -> None:
    mine, other = analysis.data_node_ids
    own = analysis.deployments[mine]
    other_name = f"node{node_index(sim, other)}-fhir"
    apikey = {"apikey": own.data_source_token}
    assert http_status(f"{own.gateway_url}/kong/node{node_index(sim, mine)}-fhir/fhir/Patient", apikey) == 200
    assert http_status(f"{own.gateway_url}/kong/{other_name}/fhir/Patient", apikey) == 404
    assert http_status(f"{own.gateway_url}/kong/node{node_index(sim, other)}-s3/s3", apikey) == 404
    other_gateway = analysis.deployments[other].gateway_url
    assert http_status(f"{other_gateway}/kong/{other_name}/fhir/Patient", apikey) == 401  # not its apikey
    assert http_status(f"{own.gateway_url}/kong/node{node_index(sim, mine)}-fhir/fhir/Patient", {}) == 401
    assert http_status(f"{own.gateway_url}/kong/{other_name}/fhir/Patient", {}) == 404  # route match comes first
    assert http_status(f"{own.gateway_url}/kong/node{node_index(sim, mine)}-fhir/s3", apikey) == 404  # wrong type
    # the S3 route of another node, addressed through boto3 like a source of this node
    sdk = FlameCoreSDK(env=analysis.env(mine), silent=True)
    try:
        foreign = S3SourceClient(sdk._core._parts.data, {"id": "x", "name": f"node{node_index(sim, other)}-s3"})
        with pytest.raises(DataSourceError, match="HTTP 404"):
            asyncio.run(foreign.list_keys())
    finally:
        sdk.close()


def test_wrong_data_source_token_is_a_clear_error(analysis) -> None:
    env = {**analysis.env(analysis.data_node_ids[0]), "DATA_SOURCE_TOKEN": "wrong"}
    sdk = FlameCoreSDK(env=env, silent=True)
    try:
        with pytest.raises(DataSourceError, match="HTTP 401.*DATA_SOURCE_TOKEN"):
            sdk.get_fhir_data(["Patient"])
        with pytest.raises(DataSourceError, match="HTTP 401"):
            sdk.get_s3_data([])
    finally:
        sdk.close()


def test_bad_query_reports_the_operation_outcome(data_sdk) -> None:
    with pytest.raises(DataSourceError, match='HTTP 400: HAPI-0524: Unknown search parameter "colour" for '
                                              'resource type "Patient"'):
        data_sdk.get_fhir_data(["Patient?colour=green"])


def test_transient_errors_are_retried(sim, analysis, data_sdk) -> None:
    service = sim.node(analysis.data_node_ids[0]).data
    service.inject_faults(503, 502, 429)
    result = data_sdk.get_fhir_data(["Patient?_summary=count"])
    assert service.pending_faults == []
    assert result[0]["Patient?_summary=count"]["total"] == truth(sim, analysis.data_node_ids[0]).patients


def test_data_clients_work_from_the_callers_event_loop(sim, analysis, data_sdk, tmp_path) -> None:
    params = truth(sim, analysis.data_node_ids[0])
    fhir_id, s3_id = (s["id"] for s in data_sdk.get_data_sources())
    fhir, s3 = data_sdk.get_data_client(fhir_id), data_sdk.get_data_client(s3_id)

    async def use() -> tuple:
        count = await fhir.count("Patient")
        patients = await fhir.frame("Patient?_count=13")
        sbp = await fhir.frame("Observation?code=8480-6")
        models = await fhir.models("Condition")
        keys = await s3.list_keys()
        size = await s3.download("signals.npy", tmp_path / "signals.npy")
        return count, patients, sbp, models, keys, size

    count, patients, sbp, models, keys, size = asyncio.run(use())
    assert count == params.patients == len(patients)
    assert set(patients["gender"]) == {"female", "male"}
    assert len(sbp) == len([o for o in of_type(params, "Observation") if o["code"]["coding"][0]["code"] == "8480-6"])
    assert len(models) == len(of_type(params, "Condition"))
    assert keys == ["cohort.csv", "signals.npy"]
    assert (tmp_path / "signals.npy").read_bytes() == cohort_signals(params) and size == len(cohort_signals(params))


def test_fhir_to_csv_through_the_sdk_matches_the_generated_values(sim, analysis, data_sdk) -> None:
    params = truth(sim, analysis.data_node_ids[0])
    expected: dict[str, dict[str, object]] = {}
    for obs in of_type(params, "Observation"):
        code = obs["code"]["coding"][0]["code"]
        if code in ("8480-6", "29463-7"):
            expected.setdefault(code, {})[obs["subject"]["reference"]] = obs["valueQuantity"]["value"]
    args = {"col_key_seq": "resource.code.coding.code", "value_key_seq": "resource.valueQuantity.value",
            "input_resource": "Observation", "row_key_seq": "resource.subject.reference", "output_type": "dict"}
    query = "Observation?code=8480-6,29463-7"
    assert data_sdk.fhir_to_csv(data_sdk.get_fhir_data([query])[0][query], **args) == expected
    # from the first page only: fhir_to_csv follows the next links through the data API
    fhir = data_sdk.get_data_client(data_sdk.get_data_sources()[0]["id"])
    first_page = asyncio.run(fhir.fetch_page(query + "&_count=40"))
    assert len(first_page["entry"]) == 40
    assert data_sdk.fhir_to_csv(first_page, **args) == expected
    csv = data_sdk.fhir_to_csv(first_page, **{**args, "output_type": "file"}, row_col_name="patient")
    frame = pd.read_csv(csv, index_col="patient")
    assert frame.loc["Patient/n1-p00000", "8480-6"] == expected["8480-6"]["Patient/n1-p00000"]


@pytest.fixture(scope="module")
def multi() -> Iterator[Simulation]:
    """Node 1 with two FHIR stores and two buckets (generated and inline), node 2 with inline data only."""
    inline = [{"resourceType": "Patient", "id": f"i{n}", "gender": "other"} for n in range(3)]
    node1 = [
        {"kind": "fhir", "name": "gen-fhir", "generator": {"patients": 30, "seed": 1, "id_prefix": "g"}, "page_size": 7},
        {"kind": "fhir", "name": "inline-fhir", "resources": inline},
        {"kind": "s3", "name": "gen-s3", "generator": {"patients": 30, "seed": 1, "id_prefix": "g"},
         "datasets": ["cohort.csv"]},
        {"kind": "s3", "name": "inline-s3", "objects": {"cohort.csv": b"a,b\n1,2\n", "notes/read-me_1.txt": "hello"}},
    ]
    many = {f"many/{n:04d}.txt": str(n) for n in range(25)}
    node2 = [{"kind": "s3", "name": "only-s3", "objects": {"x.bin": bytes(range(256)) * 4096, **many}}]
    with Simulation(SimConfig(nodes=3, seed=5, node_data=[node1, node2], status_interval=0.2)) as simulation:
        yield simulation


def test_multiple_sources_per_node(multi) -> None:
    analysis = multi.create_analysis()
    node1, node2 = analysis.data_node_ids
    sdk1 = FlameCoreSDK(env=analysis.env(node1), silent=True)
    sdk2 = FlameCoreSDK(env=analysis.env(node2), silent=True)
    try:
        assert [s["name"] for s in sdk1.get_data_sources()] == ["gen-fhir", "inline-fhir", "gen-s3", "inline-s3"]
        fhir = sdk1.get_fhir_data(["Patient", "Patient?gender=other&_summary=count"])
        assert [len(f["Patient"]["entry"]) for f in fhir] == [30, 3]  # 30 patients at 7 per page: 5 pages
        assert [f["Patient?gender=other&_summary=count"]["total"] for f in fhir] == [0, 3]
        generated = CohortParams(patients=30, seed=1, id_prefix="g")
        assert sdk1.get_s3_data(["cohort.csv"]) == [{"cohort.csv": cohort_csv(generated)},
                                                    {"cohort.csv": b"a,b\n1,2\n"}]
        assert sdk1.get_s3_data([]) == [{"cohort.csv": cohort_csv(generated)},
                                        {"cohort.csv": b"a,b\n1,2\n", "notes/read-me_1.txt": b"hello"}]
        assert sdk2.get_fhir_data(["Patient"]) == []  # no FHIR source on this node
        assert sdk2.get_s3_data(["x.bin"]) == [{"x.bin": bytes(range(256)) * 4096}]
        assert sdk2.get_s3_data(["many/0024.txt"]) == [{"many/0024.txt": b"24"}]
        bucket = sdk2.get_data_client("only-s3")
        keys = [f"many/{n:04d}.txt" for n in range(25)] + ["x.bin"]
        assert asyncio.run(bucket.list_keys(page_size=10)) == keys  # 3 listing pages
        assert len(asyncio.run(bucket.list_keys("many/001", page_size=4))) == 10
    finally:
        sdk1.close()
        sdk2.close()


def test_hub_adapter_detailed_listing_shows_the_project_routes(sim, analysis) -> None:
    node_id = analysis.data_node_ids[0]
    deployment = analysis.deployments[node_id]
    url = f"{deployment.gateway_url}/hub-adapter/kong/datastore/{analysis.project_id}?detailed=true"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {deployment.keycloak_token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        services = json.loads(resp.read())["data"]
    index = node_index(sim, node_id)
    assert [s["routes"][0]["paths"] for s in services] == [[f"/node{index}-fhir/fhir"], [f"/node{index}-s3/s3"]]
    assert all(f"project:{analysis.project_id}" in s["routes"][0]["tags"] for s in services)
    assert http_status(url, {}) == 401  # the gateway checks the bearer token on the hub adapter path
