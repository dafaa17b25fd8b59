"""Result storage end to end: FlameCoreSDK objects of three simulated nodes over real HTTP."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from flame_sdk.errors import RoleError, TamperedDataError, UnknownNodeError
from flame_sdk.sim.run.simulation import SimAnalysis, Simulation
from flame_sdk.sim.services import hub_storage
from flame_sdk.sim.services.hub_storage import hub_store
from flame_sdk.storage.global_frames import ID_SEPARATOR, split_storage_id
from tests.conftest import connect_all


def results_by_name(analysis: SimAnalysis) -> dict[str, bytes]:
    return dict(analysis.final_results())


# -- final results ---------------------------------------------------------------------------------
def test_final_result_every_output_type(shared, nodes):
    analysis, _ = shared
    agg = nodes[0]
    assert agg.submit_final_result(12.5, filename="single-str.txt") == {"status": "success"}
    assert agg.submit_final_result(b"\x00raw\xff", output_type="bytes", filename="single.bin") == {"status": "success"}
    assert agg.submit_final_result({"mean": [1, 2]}, output_type="pickle", filename="single.pkl") == {
        "status": "success"}
    stored = results_by_name(analysis)
    assert stored["single-str.txt"] == b"12.5"
    assert stored["single.bin"] == b"\x00raw\xff"
    assert pickle.loads(stored["single.pkl"]) == {"mean": [1, 2]}


def test_multiple_results_each_its_own_file(shared, nodes):
    analysis, _ = shared
    agg = nodes[0]
    answer = agg.submit_final_result(["a", b"b", [3]], output_type=["str", "bytes", "pickle"],
                                     multiple_results=True, filename="multi.txt")
    assert answer == [{"status": "success"}] * 3
    stored = results_by_name(analysis)
    assert stored["multi_1.txt"] == b"a" and stored["multi_2.bin"] == b"b"
    assert pickle.loads(stored["multi_3.pkl"]) == [3]
    named = agg.submit_final_result((1, 2), multiple_results=True, filename=["one.csv", "two.csv"])
    assert len(named) == 2 and results_by_name(analysis)["two.csv"] == b"2"
    before = len(analysis.final_results())
    agg.submit_final_result([7, 8], multiple_results=True)
    generated = analysis.final_results()[before:]
    assert [content for _, content in generated] == [b"7", b"8"]
    assert all(name.startswith("result_") and name.endswith(".txt") for name, _ in generated)


def test_local_dp_noise_scale(shared, nodes):
    """The service adds Laplace noise with b = sensitivity / epsilon to each number (one file per number)."""
    analysis, _ = shared
    agg = nodes[0]
    epsilon, sensitivity, draws = 0.5, 1.0, 200
    scale = sensitivity / epsilon
    agg.submit_final_result([0.0] * draws, multiple_results=True, filename="dp-draw.txt",
                            local_dp={"epsilon": epsilon, "sensitivity": sensitivity})
    stored = results_by_name(analysis)
    noise = np.array([float(stored[f"dp-draw_{i}.txt"]) for i in range(1, draws + 1)])
    assert np.all(noise != 0.0)
    assert abs(noise.mean()) < 5 * scale * np.sqrt(2 / draws)
    assert 0.6 * scale < np.abs(noise).mean() < 1.4 * scale  # E|noise| = b; its standard error is b / sqrt(200)
    agg.submit_final_result(41.0, local_dp={"epsilon": 1.0, "sensitivity": 1.0}, filename="dp-scalar.txt")
    scalar = float(results_by_name(analysis)["dp-scalar.txt"])
    assert scalar != 41.0 and abs(scalar - 41.0) < 40  # P(|Laplace(1)| > 40) ~ 4e-18


@pytest.mark.parametrize("result, multiple, message", [
    ("not a number", False, "single number"),
    ([1.0, 2.0], False, "single number.*multiple_results=True"),
    (np.array([1.0]), False, "single number"),
    (float("inf"), False, "finite"),
    ([1.0, float("nan")], True, "finite"),
    ([1.0, [2.0]], True, "single number"),
])
def test_local_dp_rejects_bad_input(nodes, result, multiple, message):
    with pytest.raises(ValueError, match=message):
        nodes[0].submit_final_result(result, multiple_results=multiple, local_dp={"epsilon": 1.0, "sensitivity": 1.0})


def test_final_result_is_aggregator_only(shared, nodes):
    with pytest.raises(RoleError, match="role 'default'"):
        nodes[1].submit_final_result("nope")


# -- global intermediate data ------------------------------------------------------------------------
def test_global_round_trip_to_two_recipients(nodes):
    agg, first, second = nodes
    data = {"weights": np.arange(10.0), "round": 3}
    saved = agg.save_intermediate_data(data, "global", remote_node_ids=[first.get_id(), second.get_id()])
    assert set(saved) == {first.get_id(), second.get_id()}
    for node in (first, second):
        answer = saved[node.get_id()]
        frame_id, _ = split_storage_id(answer["id"])
        assert answer["status"] == "success" and answer["url"].endswith("/" + frame_id)
        got = node.get_intermediate_data("global", query=answer["id"])
        assert got["round"] == 3 and np.array_equal(got["weights"], data["weights"])


def test_send_and_await_intermediate_data(nodes):
    agg, first, second = nodes
    acked, missing = first.send_intermediate_data([agg.get_id()], {"count": 17})
    assert acked == [agg.get_id()] and missing == []
    second.send_intermediate_data([agg.get_id()], {"count": 25})
    data = agg.await_intermediate_data([first.get_id(), second.get_id()], timeout=30)
    assert data == {first.get_id(): {"count": 17}, second.get_id(): {"count": 25}}


def test_third_node_is_refused(nodes):
    agg, first, second = nodes
    saved = agg.save_intermediate_data("for first only", "global", remote_node_ids=[first.get_id()])
    object_id = saved[first.get_id()]["id"]
    assert first.get_intermediate_data("global", query=object_id) == "for first only"
    with pytest.raises(TamperedDataError):
        second.get_intermediate_data("global", query=object_id)


def _flip_middle_bit(sim: Simulation, object_id: str) -> None:
    store = hub_store(sim.hub)
    content = bytearray(store.read(object_id))
    content[len(content) // 2] ^= 0x04
    store.replace(object_id, bytes(content))


@pytest.mark.parametrize("size", [100, 600_000])  # sent inline / sealed
def test_flipped_bit_in_the_frame_the_id_names_is_detected(sim, nodes, size):
    agg, first, _ = nodes
    saved = agg.save_intermediate_data(os.urandom(size), "global", remote_node_ids=[first.get_id()])
    object_id = saved[first.get_id()]["id"]
    _flip_middle_bit(sim, split_storage_id(object_id)[0])
    with pytest.raises(TamperedDataError, match="could not decrypt"):
        first.get_intermediate_data("global", query=object_id)


def _sealed_objects(sim: Simulation, before: set[str]) -> list[str]:
    """Ids of the objects stored on the hub since ``before`` that its result service did not encrypt."""
    return [o.object_id for o in hub_store(sim.hub).objects.values()
            if o.object_id not in before and o.filename == "data.sealed"]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
@pytest.mark.parametrize("recipients", [1, 2])  # the key frame has a digest only for several recipients
@pytest.mark.parametrize("in_memory_max", [hub_storage.IN_MEMORY_MAX, 0])  # the hub keeps the object in memory / a file
def test_damaged_sealed_payload_on_the_hub_is_detected(sim, nodes, damage, recipients, in_memory_max, monkeypatch):
    monkeypatch.setattr(hub_storage, "IN_MEMORY_MAX", in_memory_max)
    agg, first, second = nodes
    payload = os.urandom(3 * 256 * 1024 + 11)  # four segments
    before = set(hub_store(sim.hub).objects)
    saved = agg.save_intermediate_data(payload, "global", remote_node_ids=[first.get_id(), second.get_id()][:recipients])
    object_id = saved[first.get_id()]["id"]
    assert first.get_intermediate_data("global", query=object_id) == payload
    [sealed] = _sealed_objects(sim, before)
    assert (hub_store(sim.hub).objects[sealed].path is None) == (in_memory_max > 0)
    if damage == "flip":
        _flip_middle_bit(sim, sealed)
    else:
        store = hub_store(sim.hub)
        store.replace(sealed, store.read(sealed)[:-100])
    with pytest.raises(TamperedDataError, match="was modified"):
        first.get_intermediate_data("global", query=object_id)


def test_storage_ids_name_the_key_frame_and_the_sealed_object(sim, nodes):
    """Small data: one UUID (its inline frame). Sealed data: the key frame's UUID and the sealed object's, so the
    recipient requests both at once; for several recipients the frame also names the object, so its id alone
    still works."""
    agg, first, second = nodes
    small = agg.save_intermediate_data("small", "global", remote_node_ids=[first.get_id()])[first.get_id()]["id"]
    assert split_storage_id(small)[1] is None
    big = os.urandom(300_000)
    for recipients in ([first], [first, second]):
        before = set(hub_store(sim.hub).objects)
        saved = agg.save_intermediate_data(big, "global", remote_node_ids=[n.get_id() for n in recipients])
        frame_id, sealed_id = split_storage_id(saved[first.get_id()]["id"])
        assert _sealed_objects(sim, before) == [sealed_id]
        assert first.get_intermediate_data("global", query=saved[first.get_id()]["id"]) == big
        if len(recipients) == 1:
            with pytest.raises(ValueError, match="only the first half of a storage id"):
                first.get_intermediate_data("global", query=frame_id)
        else:
            assert first.get_intermediate_data("global", query=frame_id) == big


@pytest.mark.parametrize("recipients", [1, 2])
def test_a_storage_id_with_another_sealed_object_is_refused(nodes, recipients):
    agg, first, second = nodes
    to = [first.get_id(), second.get_id()][:recipients]
    one = agg.save_intermediate_data(os.urandom(200_000), "global", remote_node_ids=to)[first.get_id()]["id"]
    other = agg.save_intermediate_data(os.urandom(200_000), "global", remote_node_ids=to)[first.get_id()]["id"]
    swapped = split_storage_id(one)[0] + ID_SEPARATOR + split_storage_id(other)[1]  # type: ignore[operator]
    with pytest.raises(TamperedDataError, match="altered" if recipients > 1 else "failed authentication"):
        first.get_intermediate_data("global", query=swapped)


@pytest.mark.parametrize("query", ["not-a-uuid", f"{'1' * 32}.nope", f"{'1' * 32}.{'2' * 32}.{'3' * 32}", 7])
def test_malformed_global_storage_ids_are_refused_before_any_request(nodes, query):
    with pytest.raises(ValueError, match="not a storage id"):
        nodes[1].get_intermediate_data("global", query=query)


def test_wrong_explicit_sender_is_refused(nodes):
    agg, first, second = nodes
    saved = agg.save_intermediate_data("from the aggregator", "global", remote_node_ids=[first.get_id()])
    fetch = first._core._parts.require_storage().get_intermediate_data  # the path await_intermediate_data takes, with a known sender
    object_id = saved[first.get_id()]["id"]
    assert first._run(fetch("global", object_id, sender_id=agg.get_id())) == "from the aggregator"
    with pytest.raises(TamperedDataError, match=f"could not decrypt.*not encrypted by {second.get_id()}"):
        first._run(fetch("global", object_id, sender_id=second.get_id()))
    with pytest.raises(UnknownNodeError):
        first._run(fetch("global", object_id, sender_id="stranger"))


def test_hub_never_holds_plaintext(sim, nodes):
    agg, first, second = nodes
    marker = b"PLAINTEXT-MARKER-" + os.urandom(16).hex().encode()
    agg.save_intermediate_data(marker * 1000, "global", remote_node_ids=[first.get_id(), second.get_id()])
    first.send_intermediate_data([second.get_id()], {"secret": marker.decode()})
    second.await_intermediate_data([first.get_id()], timeout=30)
    needles = (marker, marker.decode().encode("utf-16-le"), pickle.dumps(marker * 1000, protocol=5)[:64])
    for content in hub_store(sim.hub).temp_contents():
        assert not any(needle in content for needle in needles), "plaintext found in a stored object"


def test_global_requires_recipients_and_participants(nodes):
    agg = nodes[0]
    with pytest.raises(ValueError, match="remote_node_ids must be a non-empty list"):
        agg.save_intermediate_data({"x": 1}, "global")
    with pytest.raises(ValueError, match="remote_node_ids must be a non-empty list"):
        agg.save_intermediate_data({"x": 1}, "global", remote_node_ids=[])
    with pytest.raises(UnknownNodeError, match="not participants"):
        agg.save_intermediate_data({"x": 1}, "global", remote_node_ids=["no-such-node"])
    with pytest.raises(ValueError, match="location must be"):
        agg.save_intermediate_data({"x": 1}, "hub")
    with pytest.raises(ValueError, match="needs query"):
        agg.get_intermediate_data("global")


# -- local data and tags -----------------------------------------------------------------------------
def test_tags_with_every_tag_option(nodes):
    node = nodes[1]
    for value in ("first", "middle", "last"):
        node.save_intermediate_data(value, "local", tag="history")
    assert node.get_intermediate_data("local", tag="history") == ["first", "middle", "last"]
    assert node.get_intermediate_data("local", tag="history", tag_option="all") == ["first", "middle", "last"]
    assert node.get_intermediate_data("local", tag="history", tag_option="first") == ["first"]
    assert node.get_intermediate_data("local", tag="history", tag_option="last") == ["last"]
    assert node.get_intermediate_data("local", tag="never-used") == []
    assert "history" in node.get_local_tags()
    assert node.get_local_tags(filter="hist") == ["history"]
    assert node.get_local_tags(filter="zzz") == []


def test_local_by_id_is_per_node(nodes):
    _, first, second = nodes
    saved = first.save_intermediate_data({"mine": True}, "local")
    assert saved["status"] == "success" and saved["url"].endswith(saved["id"])
    assert first.get_intermediate_data("local", query=saved["id"]) == {"mine": True}
    with pytest.raises(ValueError, match="does not exist"):
        second.get_intermediate_data("local", query=saved["id"])


@pytest.mark.parametrize("tag", ["Upper", "-lead", "trail-", "with_underscore", "x" * 33])
def test_bad_tags_rejected(nodes, tag):
    with pytest.raises(ValueError, match="invalid tag"):
        nodes[1].save_intermediate_data(1, "local", tag=tag)
    with pytest.raises(ValueError, match="invalid tag"):
        nodes[1].get_intermediate_data("local", tag=tag)


def test_local_data_survives_a_second_analysis_of_the_project(sim, shared):
    analysis, sdks = shared
    node_id = analysis.data_node_ids[0]
    sdks[node_id].save_intermediate_data({"model": "v1"}, "local", tag="carry-over")
    again = sim.create_analysis(project_id=analysis.project_id)
    other_project = sim.create_analysis()
    later = connect_all(again)
    stranger = connect_all(other_project)
    try:
        assert "carry-over" in later[node_id].get_local_tags()
        assert later[node_id].get_intermediate_data("local", tag="carry-over", tag_option="last") == [{"model": "v1"}]
        assert "carry-over" not in later[again.data_node_ids[1]].get_local_tags()
        assert stranger[node_id].get_local_tags() == []
    finally:
        for sdk in (*later.values(), *stranger.values()):
            sdk.close()


def test_numpy_and_pandas_payloads_travel_sealed_as_parts(nodes):
    import pandas as pd

    agg, first, _ = nodes
    data = {"weights": np.random.default_rng(1).random((300, 7)), "frame": pd.DataFrame({"n": np.arange(500)})}
    saved = agg.save_intermediate_data(data, "global", remote_node_ids=[first.get_id()])
    got = first.get_intermediate_data("global", query=saved[first.get_id()]["id"])
    assert np.array_equal(got["weights"], data["weights"]) and got["frame"].equals(data["frame"])
    assert got["weights"].flags.writeable  # rebuilt in the recipient's own buffer
