"""The SDK's storage calls against the faithful simulated result service, one test per point of issue 10
(1-6). Each fails on the SDK before the fix: slash-less routes, a required sender header, 401-only token
handling, raw 422s, non-scalar local DP uploads, a decrypt limit reported as tampering, "oldest first" tags
that depended on the service's order."""

from __future__ import annotations

import os
import pickle
import uuid

import aiohttp
import pytest

from flame_sdk.errors import DecryptionLimitError, TamperedDataError, TokenExpiredError, UnknownNodeError
from flame_sdk.protocol import result_api
from flame_sdk.sim.services.local_store import LocalStore
from flame_sdk.storage.global_frames import Route, inline_frame


def test_point1_upload_routes_end_in_a_slash(shared, nodes):
    analysis, _ = shared
    agg, first, _ = nodes
    assert (result_api.FINAL, result_api.INTERMEDIATE, result_api.LOCAL) == ("/final/", "/intermediate/", "/local/")
    agg.submit_final_result("done", filename="point1.txt")
    assert dict(analysis.final_results())["point1.txt"] == b"done"
    saved = first.save_intermediate_data({"local": 1}, "local")
    assert first.get_intermediate_data("local", query=saved["id"]) == {"local": 1}
    ids = agg.save_intermediate_data([1, 2], "global", remote_node_ids=[first.get_id()])
    assert first.get_intermediate_data("global", query=ids[first.get_id()]["id"]) == [1, 2]


def test_point2_global_reads_rely_on_the_services_200_not_a_header(shared, nodes):
    agg, first, second = nodes
    acked, _ = first.send_intermediate_data([agg.get_id()], {"from": "first"})
    assert acked == [agg.get_id()]
    assert agg.await_intermediate_data([first.get_id()], timeout=30) == {first.get_id(): {"from": "first"}}
    saved = second.save_intermediate_data("from second", "global", remote_node_ids=[first.get_id()])
    assert first.get_intermediate_data("global", query=saved[first.get_id()]["id"]) == "from second"


def test_point2_authorship_is_also_bound_inside_the_payload(shared, nodes, sim):
    """A frame whose sender, recipient or analysis differs from what the service authenticated is refused."""
    analysis, _ = shared
    agg, first, second = nodes
    deployment = analysis.deployments[second.get_id()]
    for route in (Route(analysis.analysis_id, agg.get_id(), first.get_id()),  # second poses as the aggregator
                  Route("another-analysis", second.get_id(), first.get_id()),  # replayed from another analysis
                  Route(analysis.analysis_id, second.get_id(), agg.get_id())):  # meant for someone else
        async def upload(frame: bytes = inline_frame(route, pickle.dumps("forged"))) -> str:
            form = aiohttp.FormData()
            form.add_field("remote_node_id", first.get_id())
            form.add_field("file", frame, filename="data.pkl")
            async with aiohttp.ClientSession() as session, session.put(
                    f"{deployment.gateway_url}/storage/intermediate/", data=form,
                    headers={"Authorization": f"Bearer {deployment.keycloak_token}"}) as resp:
                return str((await resp.json())["object_id"])

        with pytest.raises(TamperedDataError, match="replayed"):
            first.get_intermediate_data("global", query=sim.run(upload()))


def test_point3_403_means_token_refused(nodes):
    agg = nodes[0]
    good = agg._core._tokens.token
    agg._core._tokens.set("not-a-jwt")
    try:
        with pytest.raises(TokenExpiredError, match="403.*JWT is malformed"):
            agg.get_local_tags()
    finally:
        agg._core._tokens.set(good or "")
    assert isinstance(agg.get_local_tags(), list)


def test_point3_statuses_name_their_cause(shared, nodes):
    agg, first, second = nodes
    with pytest.raises(ValueError, match="valid UUID.*Storage ids are the UUIDs"):
        first.get_intermediate_data("global", query="not-a-uuid")
    with pytest.raises(ValueError, match="valid UUID"):
        first.get_intermediate_data("local", query="not-a-uuid")
    with pytest.raises(ValueError, match="does not exist"):
        first.get_intermediate_data("global", query=str(uuid.uuid4()))
    saved = agg.save_intermediate_data("for first", "global", remote_node_ids=[first.get_id()])
    with pytest.raises(TamperedDataError, match=f"not encrypted by {second.get_id()} for this node"):
        first._run(first._core._parts.require_storage().get_intermediate_data("global", saved[first.get_id()]["id"], sender_id=second.get_id()))
    stranger = str(uuid.uuid4())  # a participant the hub does not know: the service answers 404
    store = agg._core._parts.require_storage()
    original = store.participant_ids
    store.participant_ids = lambda: [*original(), stranger]
    try:
        with pytest.raises(UnknownNodeError, match=f"Remote node with ID {stranger} does not exist"):
            agg.save_intermediate_data("x", "global", remote_node_ids=[stranger])
    finally:
        store.participant_ids = original


def test_point4_local_dp_rejects_non_scalars_before_upload(shared, nodes, monkeypatch):
    analysis, _ = shared
    agg = nodes[0]
    sent = []
    store = agg._core._parts.require_storage()
    original = store._upload

    async def spy(path, *args, **kwargs):
        sent.append(path)
        return await original(path, *args, **kwargs)

    monkeypatch.setattr(store, "_upload", spy)
    with pytest.raises(ValueError, match="single number.*multiple_results=True"):
        agg.submit_final_result([1.0, 2.0], local_dp={"epsilon": 1.0, "sensitivity": 1.0})
    assert sent == []
    agg.submit_final_result([1.0, 2.0], multiple_results=True, filename="p4.txt",
                            local_dp={"epsilon": 1.0, "sensitivity": 1.0})
    assert sent == ["/final/localdp", "/final/localdp"]
    stored = dict(analysis.final_results())
    assert all(isinstance(float(stored[name]), float) for name in ("p4_1.txt", "p4_2.txt"))


@pytest.mark.parametrize("size", [10, 960, 997, 5000, 1_500_000])
def test_point5_global_payloads_of_any_size_arrive(nodes, size):
    agg, first, second = nodes
    data = os.urandom(size)
    saved = agg.save_intermediate_data(data, "global", remote_node_ids=[first.get_id(), second.get_id()])
    for node in (first, second):
        assert node.get_intermediate_data("global", query=saved[node.get_id()]["id"]) == data


def test_point5_an_object_over_the_limit_is_reported_as_such(shared, nodes, sim):
    analysis, _ = shared
    agg, first, _ = nodes
    deployment = analysis.deployments[agg.get_id()]

    async def upload_as_another_client() -> str:  # a plain pickle of 2 kB, as the reference SDK sends it
        form = aiohttp.FormData()
        form.add_field("remote_node_id", first.get_id())
        form.add_field("file", pickle.dumps(os.urandom(2000)), filename="data.pkl")
        async with aiohttp.ClientSession() as session, session.put(
                f"{deployment.gateway_url}/storage/intermediate/", data=form,
                headers={"Authorization": f"Bearer {deployment.keycloak_token}"}) as resp:
            return str((await resp.json())["object_id"])

    object_id = sim.run(upload_as_another_client())
    with pytest.raises(DecryptionLimitError, match="1024-byte chunks"):
        first.get_intermediate_data("global", query=object_id)


def test_point6_tagged_results_come_back_in_save_order_whatever_the_service_order(nodes, monkeypatch):
    node = nodes[1]
    for value in ("first", "second", "third"):
        node.save_intermediate_data(value, "local", tag="point-six")
    original = LocalStore.tagged
    monkeypatch.setattr(LocalStore, "tagged", lambda self, project, tag: list(reversed(original(self, project, tag))))
    assert node.get_intermediate_data("local", tag="point-six") == ["first", "second", "third"]
    assert node.get_intermediate_data("local", tag="point-six", tag_option="first") == ["first"]
    assert node.get_intermediate_data("local", tag="point-six", tag_option="last") == ["third"]
    for tag in ("zz-last", "aa-first"):
        node.save_intermediate_data(tag, "local", tag=tag)
    tags = node.get_local_tags()
    assert tags == sorted(tags)
