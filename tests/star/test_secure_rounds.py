"""The secure-sum protocol's steps on fake nodes: keys, the round's set and what each side refuses."""

from __future__ import annotations

import numpy as np
import pytest

from flame_sdk.secure_sum import encode, fixed_point
from flame_sdk.star.exchange import Exchange
from flame_sdk.star.participation import Participation
from flame_sdk.star.run_errors import StarRunError
from flame_sdk.star.secure_rounds import (
    KEY_CATEGORY,
    SET_CATEGORY,
    STATUS_CATEGORY,
    WITHDRAWN_CATEGORY,
    MaskingNode,
    SummingAggregator,
)
from flame_sdk.testing import FakeFlameSDK

NODES = ["a1", "a2", "a3"]


def data_nodes(min_nodes: int | None = None) -> dict[str, MaskingNode]:
    """Three data nodes on fakes that exchanged their keys."""
    fakes = {n: FakeFlameSDK("default", node_id=n, partner_ids=["aggregator", *[p for p in NODES if p != n]])
             for n in NODES}
    nodes = {n: MaskingNode(f, Exchange(f, 5.0), "aggregator", min_nodes) for n, f in fakes.items()}
    for node in nodes.values():
        node.offer_key()
    for sender, fake in fakes.items():
        [sent] = [d for d in fake.sent_data if d.category == KEY_CATEGORY]
        for receiver in sent.receivers:
            fakes[receiver].push_intermediate_data(sender, sent.data, KEY_CATEGORY)
    return nodes


def aggregator(min_nodes: int | None = None) -> SummingAggregator:
    fake = FakeFlameSDK("aggregator", partner_ids=NODES)
    return SummingAggregator(fake, Exchange(fake, 5.0), Participation(list(NODES), min_nodes, True))


def contributions(nodes: dict[str, MaskingNode], values: dict[str, object], round_number: int = 1,
                  inputs: dict[str, object] | None = None) -> dict:
    out = {}
    for name, node in nodes.items():
        prepared = node.prepare(values[name])
        round_input = None if inputs is None else inputs[name]
        out[name] = node.masked(prepared, node.participants(round_number), round_number, round_input)
    return out


def test_the_aggregator_gets_masked_vectors_and_exactly_their_sum():
    values = {n: {"n": i + 1, "gradient": np.array([0.1 * (i + 1), -2.0]), "loglik": -10.5 * (i + 1)}
              for i, n in enumerate(NODES)}
    received = contributions(data_nodes(), values)
    for name, payload in received.items():  # what the aggregator sees of one node: uniformly random numbers
        _, vector = encode(values[name], addends=3)
        assert vector.shape == payload["masked"].shape
        assert not np.isclose(fixed_point.decode_floats(payload["masked"]), fixed_point.decode_floats(vector)).any()
    total = aggregator().total(received, NODES, 1)
    assert total["n"] == 6 and total["loglik"] == -63.0
    assert total["gradient"].tolist() == [0.1 + 0.2 + 0.30000000000000004, -6.0]


def test_masks_of_one_round_do_not_unmask_another():
    nodes = data_nodes()
    values = {n: {"x": np.array([1.0, 2.0])} for n in NODES}
    round1, round2 = contributions(nodes, values, 1), contributions(nodes, values, 2)
    assert not (round1["a1"]["masked"] == round2["a1"]["masked"]).any()  # fresh seeds per round
    mixed = {"a1": round1["a1"], "a2": {**round2["a2"], "round": 1}, "a3": round1["a3"]}
    assert aggregator().total(mixed, NODES, 1)["x"].tolist() != [3.0, 6.0]


def test_nodes_sent_different_parameters_get_masks_that_do_not_cancel():
    """An aggregator that gives one node other parameters than the rest learns nothing from the sum."""
    nodes = data_nodes()
    values = {n: {"x": np.array([1.0, 2.0])} for n in NODES}
    beta = {"coef": np.array([0.5, -1.0])}
    honest = contributions(nodes, values, 2, {n: beta for n in NODES})
    assert aggregator().total(honest, NODES, 2)["x"].tolist() == [3.0, 6.0]
    skewed = {**{n: beta for n in NODES}, "a3": {"coef": np.array([0.5, -1.5])}}
    received = contributions(nodes, values, 2, skewed)
    with pytest.raises(StarRunError, match=r"hold different versions of the aggregator's last answer"):
        aggregator().total(received, NODES, 2)
    forged = {n: {**payload, "input": received["a1"]["input"]} for n, payload in received.items()}
    assert np.abs(aggregator().total(forged, NODES, 2)["x"]).min() > 1e30  # uniformly random, not 3 and 6


def test_the_aggregator_names_a_node_whose_layout_differs():
    nodes = data_nodes()
    values = {"a1": {"counts": {"female": [1, 2]}}, "a2": {"counts": {"female": [3, 4]}},
              "a3": {"counts": {"male": [5, 6]}}}
    with pytest.raises(StarRunError, match=r"node a3 have different layouts \(result\['counts'\] has keys "
                                           r"\['female'\] on one node and \['male'\]") as info:
        aggregator().total(contributions(nodes, values), NODES, 1)
    assert info.value.node_id == "a3"


def announce(node: MaskingNode, members: list[str], round_number: int = 1) -> list[str]:
    node.flame.deliver_message("aggregator", SET_CATEGORY, {"round": round_number, "nodes": members})
    return node.participants(round_number)


def test_a_data_node_accepts_a_set_without_a_node_that_withdrew_to_it():
    node = data_nodes(min_nodes=2)["a1"]
    node.flame.push_intermediate_data("a3", {"round": 1, "reason": "ValueError raised"}, WITHDRAWN_CATEGORY)
    assert announce(node, ["a1", "a2"]) == ["a1", "a2"]
    [status] = [m for m in node.flame.sent_messages if m.category == STATUS_CATEGORY]
    assert status.body == {"round": 1, "state": "ready", "keys_from": ["a2", "a3"]}


@pytest.mark.parametrize("members, why", [
    (["a1", "a2"], "node a3 was left out, but it did not withdraw and it took part in the key exchange"),
    (["a1"], "a secure sum needs at least 2 data nodes"),
    (["a2", "a3"], "a set must hold this node"),
])
def test_a_data_node_refuses_a_set_that_could_single_out_a_node(members, why):
    node = data_nodes(min_nodes=2)["a1"]
    with pytest.raises(StarRunError, match=why):
        announce(node, members)


def test_a_set_may_only_shrink():
    node = data_nodes(min_nodes=2)["a1"]
    node.flame.push_intermediate_data("a3", {"round": 1, "reason": "ValueError raised"}, WITHDRAWN_CATEGORY)
    announce(node, ["a1", "a2"], 1)
    with pytest.raises(StarRunError, match="only nodes of the previous set"):
        announce(node, NODES, 2)


def test_the_aggregator_leaves_out_withdrawn_nodes_and_announces_the_set():
    side = aggregator(min_nodes=2)
    fake = side.flame
    fake.deliver_message("a1", STATUS_CATEGORY, {"round": 1, "state": "ready", "keys_from": ["a2", "a3"]})
    fake.deliver_message("a2", STATUS_CATEGORY, {"round": 1, "state": "ready", "keys_from": ["a1", "a3"]})
    fake.deliver_message("a3", STATUS_CATEGORY, {"round": 1, "state": "withdrawn", "reason": "ValueError raised"})
    assert side.participants(1) == ["a1", "a2"]
    assert [d.node_id for d in side.participation.dropped] == ["a3"]
    [announced] = [m for m in fake.sent_messages if m.category == SET_CATEGORY]
    assert announced.receivers == ["a1", "a2"] and announced.body == {"round": 1, "nodes": ["a1", "a2"]}


def test_the_aggregator_cannot_leave_out_a_silent_node_that_exchanged_keys():
    side = aggregator(min_nodes=2)
    side.flame.deliver_message("a1", STATUS_CATEGORY, {"round": 1, "state": "ready", "keys_from": ["a2", "a3"]})
    side.flame.deliver_message("a2", STATUS_CATEGORY, {"round": 1, "state": "ready", "keys_from": ["a1", "a3"]})
    with pytest.raises(StarRunError, match="node a3 sent no secure-sum status .* it cannot be left out") as info:
        side.participants(1)
    assert info.value.node_id == "a3"
