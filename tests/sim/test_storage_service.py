"""The simulated result service and hub storage on the wire: paths, form fields, status codes."""

from __future__ import annotations

import os
import pickle
from typing import Any

import aiohttp
import pytest

from flame_sdk.sim.common import crypto
from flame_sdk.sim.run.simulation import SimAnalysis, Simulation


async def call(analysis: SimAnalysis, node_id: str, method: str, path: str, *, fields: dict[str, str] | None = None,
               file: bytes | None = None, file_first: bool = False, **kwargs: Any) -> tuple[int, Any, dict]:
    """One request through a node's gateway with its bearer token: (status, body, headers)."""
    deployment = analysis.deployments[node_id]
    if file is not None:
        form = aiohttp.FormData()
        items = [("field", k, v) for k, v in (fields or {}).items()]
        items.insert(0 if file_first else len(items), ("file", "file", file))
        for kind, name, value in items:
            if kind == "file":
                form.add_field(name, value, filename="upload.bin", content_type="application/octet-stream")
            else:
                form.add_field(name, value)
        kwargs["data"] = form
    headers = {"Authorization": f"Bearer {deployment.keycloak_token}"}
    async with aiohttp.ClientSession() as session, session.request(
            method, deployment.gateway_url + path, headers=headers, **kwargs) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.read()
        return resp.status, body, dict(resp.headers)


async def hub_call(sim: Simulation, node_id: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession(headers={"X-Node-Id": node_id}) as session, session.request(
            method, sim.hub_url + path, **kwargs) as resp:
        return resp.status, (await resp.json() if resp.content_type == "application/json" else await resp.read())


@pytest.fixture(scope="module")
def analysis(sim: Simulation) -> SimAnalysis:
    return sim.create_analysis()


def test_intermediate_put_and_get_wire_format(sim, analysis):
    agg, first, second = analysis.aggregator_id, *analysis.data_node_ids
    status, body, _ = sim.run(call(analysis, agg, "PUT", "/storage/intermediate", fields={"remote_node_id": first},
                                   file=b"hello"))
    assert status == 200 and set(body) == {"url", "object_id"}
    assert body["url"] == f"{analysis.deployments[agg].gateway_url}/storage/intermediate/{body['object_id']}"
    object_id = body["object_id"]
    status, plain, headers = sim.run(call(analysis, first, "GET", f"/storage/intermediate/{object_id}",
                                          params={"node_id": agg}))
    assert (status, plain, headers["X-Flame-Sender"]) == (200, b"hello", agg)
    # no node_id: the stored envelope as the reference service does, which is ciphertext
    status, raw, _ = sim.run(call(analysis, first, "GET", f"/storage/intermediate/{object_id}"))
    assert status == 200 and raw.startswith(crypto.MAGIC) and b"hello" not in raw
    status, body, _ = sim.run(call(analysis, first, "GET", f"/storage/intermediate/{object_id}",
                                   params={"node_id": second}))
    assert status == 400 and "cannot be decrypted" in body["detail"]
    status, body, _ = sim.run(call(analysis, second, "GET", f"/storage/intermediate/{object_id}",
                                   params={"node_id": agg}))
    assert status == 403 and "another node" in body["detail"]


def test_fields_after_the_file_are_spooled(sim, analysis):
    agg, first = analysis.aggregator_id, analysis.data_node_ids[0]
    payload = os.urandom(3 * crypto.DEFAULT_SEGMENT_SIZE + 5)
    status, body, _ = sim.run(call(analysis, agg, "PUT", "/storage/intermediate", fields={"remote_node_id": first},
                                   file=payload, file_first=True))
    assert status == 200
    status, plain, _ = sim.run(call(analysis, first, "GET", f"/storage/intermediate/{body['object_id']}",
                                    params={"node_id": agg}))
    assert status == 200 and plain == payload


@pytest.mark.parametrize("fields, status, detail", [
    ({}, 400, "remote_node_id is required"),
    ({"remote_node_id": "unknown-node"}, 404, "does not exist"),
])
def test_intermediate_upload_rejections(sim, analysis, fields, status, detail):
    answer = sim.run(call(analysis, analysis.aggregator_id, "PUT", "/storage/intermediate", fields=fields, file=b"x"))
    assert answer[0] == status and detail in answer[1]["detail"]


def test_non_participant_recipient_rejected(sim, analysis):
    other = sim.create_analysis(nodes=[analysis.aggregator_id, analysis.data_node_ids[0]])
    status, body, _ = sim.run(call(other, other.aggregator_id, "PUT", "/storage/intermediate",
                                   fields={"remote_node_id": analysis.data_node_ids[1]}, file=b"x"))
    assert status == 400 and "not a participant" in body["detail"]


def test_objects_stay_in_their_analysis(sim, analysis):
    agg, first = analysis.aggregator_id, analysis.data_node_ids[0]
    _, body, _ = sim.run(call(analysis, agg, "PUT", "/storage/intermediate", fields={"remote_node_id": first},
                              file=b"scoped"))
    other = sim.create_analysis()
    status, _, _ = sim.run(call(other, first, "GET", f"/storage/intermediate/{body['object_id']}",
                                params={"node_id": agg}))
    assert status == 404
    outsider = sim.create_analysis(nodes=[agg, first])
    status, _ = sim.run(hub_call(sim, analysis.data_node_ids[1], "GET",
                                 f"/analyses/{outsider.analysis_id}/buckets/temp/{body['object_id']}"))
    assert status == 403


def test_final_routes(sim, analysis):
    agg, first = analysis.aggregator_id, analysis.data_node_ids[0]
    status, _, _ = sim.run(call(analysis, agg, "PUT", "/storage/final", file=b"final bytes"))
    assert status == 204
    status, body, _ = sim.run(call(analysis, first, "PUT", "/storage/final", file=b"no"))
    assert status == 403 and "only the aggregator" in body["detail"]
    status, _, _ = sim.run(call(analysis, agg, "PUT", "/storage/final/localdp",
                                fields={"epsilon": "1", "sensitivity": "1"}, file=b"10"))
    assert status == 204
    for fields, file, detail in (({"epsilon": "1"}, b"1", "'sensitivity' is required"),
                                 ({"epsilon": "0", "sensitivity": "1"}, b"1", "finite positive"),
                                 ({"epsilon": "1", "sensitivity": "1"}, b"ten", "must contain a number")):
        status, body, _ = sim.run(call(analysis, agg, "PUT", "/storage/final/localdp", fields=fields, file=file))
        assert status == 400 and detail in body["detail"]
    status, listing = sim.run(hub_call(sim, agg, "GET", f"/analyses/{analysis.analysis_id}/results"))
    assert status == 200 and [r["size"] for r in listing][:1] == [len(b"final bytes")]
    status, content = sim.run(hub_call(sim, agg, "GET", f"/analyses/{analysis.analysis_id}/results/{listing[0]['id']}"))
    assert content == b"final bytes"
    assert float(analysis.final_results()[1][1]) != 10.0


def test_local_routes(sim, analysis):
    first, gateway = analysis.data_node_ids[0], analysis.deployments[analysis.data_node_ids[0]].gateway_url
    status, body, _ = sim.run(call(analysis, first, "PUT", "/storage/local", fields={"tag": "wire-tag"},
                                   file=pickle.dumps(1)))
    assert status == 200 and set(body) == {"url"} and body["url"].startswith(f"{gateway}/storage/local/")
    status, tags, _ = sim.run(call(analysis, first, "GET", "/storage/local/tags"))
    assert {"name": "wire-tag", "url": f"{gateway}/storage/local/tags/wire-tag"} in tags["tags"]
    status, tagged, _ = sim.run(call(analysis, first, "GET", "/storage/local/tags/wire-tag"))
    assert tagged == {"results": [{"filename": "upload.bin", "url": body["url"]}]}
    status, content, _ = sim.run(call(analysis, first, "GET", body["url"][len(gateway):]))
    assert (status, content) == (200, pickle.dumps(1))
    status, body, _ = sim.run(call(analysis, first, "PUT", "/storage/local", fields={"tag": "Bad_Tag"}, file=b"x"))
    assert status == 400 and "invalid tag" in body["detail"]
    assert sim.run(call(analysis, first, "GET", "/storage/local/not-a-uuid"))[0] == 404
    assert sim.run(call(analysis, first, "PUT", "/storage/local", data=b"not multipart"))[0] == 400
