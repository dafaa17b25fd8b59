"""The simulated result service on the wire, through the gateway, answering as node-result-service 0.1.4 does.

One test per fact of issue 10 (points 1-6); docs/protocol.md cites the real source of each.
"""

from __future__ import annotations

import os
import pickle
import uuid
from typing import Any

import aiohttp
import pytest

from flame_sdk.sim.run.simulation import SimAnalysis, Simulation
from flame_sdk.sim.services.hub_storage import hub_store

FORBIDDEN_NO_TOKEN = {"detail": "Not authenticated"}
FORBIDDEN_BAD_TOKEN = {"detail": "JWT is malformed"}


async def call(analysis: SimAnalysis, node_id: str, method: str, path: str, *, fields: dict[str, str] | None = None,
               file: bytes | None = None, token: str | None = "own", follow: bool = False,
               **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
    """One request through a node's gateway: (status, JSON or bytes body, headers)."""
    deployment = analysis.deployments[node_id]
    if file is not None:
        form = aiohttp.FormData()
        for name, value in (fields or {}).items():
            form.add_field(name, value)
        form.add_field("file", file, filename="upload.bin", content_type="application/octet-stream")
        kwargs["data"] = form
    token = deployment.keycloak_token if token == "own" else token
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as session, session.request(
            method, deployment.gateway_url + path, headers=headers, allow_redirects=follow, **kwargs) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.read()
        return resp.status, body, dict(resp.headers)


@pytest.fixture(scope="module")
def analysis(sim: Simulation) -> SimAnalysis:
    return sim.create_analysis()


def put_global(sim: Simulation, analysis: SimAnalysis, sender: str, recipient: str | None, content: bytes) -> str:
    fields = {} if recipient is None else {"remote_node_id": recipient}
    status, body, _ = sim.run(call(analysis, sender, "PUT", "/storage/intermediate/", fields=fields, file=content))
    assert status == 200 and set(body) == {"url", "object_id"}
    return str(body["object_id"])


# -- point 1: routes with trailing slashes; the slash-less spelling is lost behind the gateway -----------------
@pytest.mark.parametrize("route", ["/final", "/local", "/intermediate"])
def test_slash_less_uploads_are_redirected_out_of_storage_and_end_in_405(sim, analysis, route):
    node = analysis.aggregator_id
    gateway = analysis.deployments[node].gateway_url
    status, _, headers = sim.run(call(analysis, node, "PUT", f"/storage{route}", file=b"x"))
    assert status == 307 and headers["Location"] == f"{gateway}{route}/"  # the /storage prefix is gone
    status, body, _ = sim.run(call(analysis, node, "PUT", f"/storage{route}", file=b"x", follow=True))
    assert status == 405 and b"405 Not Allowed" in body  # nginx's answer for a path no location matches


def test_upload_routes_with_the_slash(sim, analysis):
    agg, first = analysis.aggregator_id, analysis.data_node_ids[0]
    assert sim.run(call(analysis, agg, "PUT", "/storage/final/", file=b"final bytes"))[0] == 204
    status, body, _ = sim.run(call(analysis, first, "PUT", "/storage/local/", file=b"local"))
    # URLs are built from the Host header without the gateway's /storage prefix, as url_for does behind nginx
    assert status == 200 and body["url"].startswith(f"{analysis.deployments[first].gateway_url}/local/")
    object_id = put_global(sim, analysis, agg, first, b"global")
    assert sim.run(call(analysis, first, "GET", f"/storage/intermediate/{object_id}",
                        params={"node_id": agg}))[:2] == (200, b"global")


# -- point 2: a verified download carries no sender header ----------------------------------------------------
def test_global_download_has_no_sender_header(sim, analysis):
    agg, first = analysis.aggregator_id, analysis.data_node_ids[0]
    object_id = put_global(sim, analysis, agg, first, b"hello")
    status, plain, headers = sim.run(call(analysis, first, "GET", f"/storage/intermediate/{object_id}",
                                          params={"node_id": agg}))
    assert (status, plain) == (200, b"hello")
    assert not any(name.lower().startswith("x-flame") for name in headers)
    # without node_id: the stored object as it is (the IV and the ciphertext, not the plaintext)
    status, raw, _ = sim.run(call(analysis, first, "GET", f"/storage/intermediate/{object_id}"))
    assert status == 200 and len(raw) == 12 + 5 + 16 and b"hello" not in raw


# -- point 3: status codes and bodies --------------------------------------------------------------------------
@pytest.mark.parametrize("token, body", [
    (None, FORBIDDEN_NO_TOKEN),
    ("not-a-jwt", FORBIDDEN_BAD_TOKEN),
    ("expired", FORBIDDEN_BAD_TOKEN),
])
def test_refused_tokens_answer_403(sim, analysis, token, body):
    if token == "expired":
        token = sim.tokens.issue(analysis.analysis_id, ttl_seconds=-60)
    for method, path in (("GET", "/storage/local/tags"), ("PUT", "/storage/final/"),
                         ("GET", f"/storage/intermediate/{uuid.uuid4()}")):
        status, answer, _ = sim.run(call(analysis, analysis.aggregator_id, method, path, token=token,
                                         file=b"x" if method == "PUT" else None))
        assert (status, answer) == (403, body), (method, path)


def test_undecryptable_answers_400_whatever_the_cause(sim, analysis):
    agg, first, second = analysis.aggregator_id, *analysis.data_node_ids
    object_id = put_global(sim, analysis, agg, first, b"for first")
    expected = (f"File with ID {object_id} cannot be decrypted under the assumption that the file was encrypted by "
                f"node {second} for this node.")
    # wrong sender
    status, body, _ = sim.run(call(analysis, first, "GET", f"/storage/intermediate/{object_id}",
                                   params={"node_id": second}))
    assert (status, body) == (400, {"detail": expected})
    # wrong recipient
    status, body, _ = sim.run(call(analysis, second, "GET", f"/storage/intermediate/{object_id}",
                                   params={"node_id": agg}))
    assert status == 400 and "cannot be decrypted" in body["detail"]
    # tampered on the hub
    store = hub_store(sim.hub)
    content = bytearray(store.read(object_id))
    content[-1] ^= 1
    store.replace(object_id, bytes(content))
    status, body, _ = sim.run(call(analysis, first, "GET", f"/storage/intermediate/{object_id}",
                                   params={"node_id": agg}))
    assert status == 400 and "cannot be decrypted" in body["detail"]


def test_unknown_nodes_and_objects_answer_404(sim, analysis):
    agg, first = analysis.aggregator_id, analysis.data_node_ids[0]
    stranger = str(uuid.uuid4())
    status, body, _ = sim.run(call(analysis, agg, "PUT", "/storage/intermediate/", fields={"remote_node_id": stranger},
                                   file=b"x"))
    assert (status, body) == (404, {"detail": f"Remote node with ID {stranger} does not exist."})
    object_id = put_global(sim, analysis, agg, first, b"x")
    status, body, _ = sim.run(call(analysis, first, "GET", f"/storage/intermediate/{object_id}",
                                   params={"node_id": stranger}))
    assert (status, body) == (404, {"detail": f"Remote node with ID {stranger} does not exist."})
    missing = str(uuid.uuid4())
    for path in (f"/storage/intermediate/{missing}", f"/storage/local/{missing}"):
        status, body, _ = sim.run(call(analysis, first, "GET", path))
        assert (status, body) == (404, {"detail": f"Object with ID {missing} does not exist"})


@pytest.mark.parametrize("path", ["/storage/intermediate/not-a-uuid", "/storage/local/not-a-uuid"])
def test_malformed_ids_answer_422(sim, analysis, path):
    status, body, _ = sim.run(call(analysis, analysis.aggregator_id, "GET", path))
    assert status == 422
    [error] = body["detail"]
    assert error["loc"] == ["path", "object_id"] and error["type"] == "uuid_parsing" and error["input"] == "not-a-uuid"


def test_upload_without_file_answers_422(sim, analysis):
    status, body, _ = sim.run(call(analysis, analysis.aggregator_id, "PUT", "/storage/local/", data=b"not multipart"))
    assert status == 422 and body["detail"][0]["loc"] == ["body", "file"]


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=xyz", "multipart/form-data"])
def test_malformed_form_answers_fastapi_s_400(sim, analysis, content_type):
    status, body, _ = sim.run(call(analysis, analysis.aggregator_id, "PUT", "/storage/intermediate/",
                                   data=aiohttp.BytesPayload(b"--abc\r\ngarbage", content_type=content_type)))
    assert (status, body) == (400, {"detail": "There was an error parsing the body"})


# -- point 4: local DP takes one number --------------------------------------------------------------------------
def test_local_dp_takes_a_single_number(sim, analysis):
    agg = analysis.aggregator_id
    fields = {"epsilon": "1", "sensitivity": "1"}
    before = len(analysis.final_results())
    assert sim.run(call(analysis, agg, "PUT", "/storage/final/localdp", fields=fields, file=b" 10 "))[0] == 204
    [(_, noisy)] = analysis.final_results()[before:]
    assert float(noisy) != 10.0
    for content in (b"[1, 2]", b'{"a": 1}', b"ten"):
        status, body, _ = sim.run(call(analysis, agg, "PUT", "/storage/final/localdp", fields=fields, file=content))
        assert (status, body) == (400, {"detail": "Uploaded file must contain a single numerical value."})
    status, body, _ = sim.run(call(analysis, agg, "PUT", "/storage/final/localdp", fields={"epsilon": "1"},
                                   file=b"1"))
    assert status == 422 and body["detail"][0]["loc"] == ["body", "sensitivity"]


# -- point 5: the 1024-byte decrypt chunk; local downloads are streamed -----------------------------------------
@pytest.mark.parametrize("size, status", [(1, 200), (996, 200), (997, 400), (20_000, 400)])
def test_global_decrypt_limit(sim, analysis, size, status):
    agg, first = analysis.aggregator_id, analysis.data_node_ids[0]
    payload = os.urandom(size)
    object_id = put_global(sim, analysis, agg, first, payload)
    answer = sim.run(call(analysis, first, "GET", f"/storage/intermediate/{object_id}", params={"node_id": agg}))
    assert answer[0] == status
    if status == 200:
        assert answer[1] == payload
    # stored without remote_node_id: not encrypted, returned whole at any size
    raw_id = put_global(sim, analysis, agg, None, payload)
    assert sim.run(call(analysis, first, "GET", f"/storage/intermediate/{raw_id}"))[:2] == (200, payload)


def test_local_download_is_chunked(sim, analysis):
    first = analysis.data_node_ids[0]
    payload = os.urandom(300_000)
    _, body, _ = sim.run(call(analysis, first, "PUT", "/storage/local/", file=payload))
    status, content, headers = sim.run(call(analysis, first, "GET", "/storage/local/" + body["url"].rsplit("/")[-1]))
    assert (status, content) == (200, payload) and "Content-Length" not in headers


# -- point 6: tags in insertion order ------------------------------------------------------------------------------
def test_tags_and_tagged_results_in_insertion_order(sim, analysis):
    node = analysis.data_node_ids[1]
    gateway = analysis.deployments[node].gateway_url
    urls = []
    for tag, name in (("zeta", "a"), ("alpha", "b"), ("zeta", "c"), ("mid", "d"), ("zeta", "e")):
        form = {"tag": tag}
        status, body, _ = sim.run(call(analysis, node, "PUT", "/storage/local/", fields=form, file=pickle.dumps(name)))
        urls.append((tag, body["url"]))
    _, tags, _ = sim.run(call(analysis, node, "GET", "/storage/local/tags"))
    assert [t["name"] for t in tags["tags"]] == ["zeta", "alpha", "mid"]
    assert tags["tags"][0]["url"] == f"{gateway}/local/tags/zeta"
    _, tagged, _ = sim.run(call(analysis, node, "GET", "/storage/local/tags/zeta"))
    assert [r["url"] for r in tagged["results"]] == [url for tag, url in urls if tag == "zeta"]
    assert sim.run(call(analysis, node, "GET", "/storage/local/tags/Never_Valid"))[:2] == (200, {"results": []})
    status, body, _ = sim.run(call(analysis, node, "PUT", "/storage/local/", fields={"tag": "Bad_Tag"}, file=b"x"))
    assert (status, body) == (400, {"detail": "Invalid tag `Bad_Tag`"})


# -- hub side ----------------------------------------------------------------------------------------------------
def test_objects_stay_in_their_analysis(sim, analysis):
    agg, first = analysis.aggregator_id, analysis.data_node_ids[0]
    object_id = put_global(sim, analysis, agg, first, b"scoped")
    other = sim.create_analysis()
    status, _, _ = sim.run(call(other, first, "GET", f"/storage/intermediate/{object_id}", params={"node_id": agg}))
    assert status == 404
