"""Secure sum in a star run (``StarModel(secure_sum=True)``): the aggregator learns the sum of the data nodes'
results, never one node's result.

Protocol, over the documented SDK methods only:

1. **Keys.** Every data node creates an X25519 key pair for the run and sends its public key to every other
   data node with ``send_intermediate_data`` (category ``secure_sum_key``). That path is authenticated: the
   result services encrypt it between the two nodes' registered storage keys (which never leave them), and
   the receiver fetches it as coming from the claimed sender, so no one else (not the aggregator) can put a
   key in a data node's name.
2. **Participants.** Without ``min_nodes`` every data node takes part in every round. With ``min_nodes``,
   each data node reports to the aggregator (``secure_sum_status``: ready, with the peers whose keys it
   holds, or withdrawn) and the aggregator announces the round's set (``secure_sum_set``). A data node
   accepts a set only if it holds every member's key and every data node left out either withdrew to it
   through the authenticated path (``secure_sum_withdrawn``) or never delivered a key; so the aggregator
   cannot single out nodes by leaving honest ones out.
3. **Masking.** The node encodes its result in the ring Z/2**192 with 64 fractional bits
   (:mod:`flame_sdk.secure_sum.fixed_point`), adds for every other member of the set the ChaCha20 mask
   seeded by HKDF(X25519 secret, analysis id, round, both ids, digest of the aggregator's last answer) (one
   node adds, the other subtracts), and sends the masked vector with its layout to the aggregator (the
   ordinary round data). Nodes that were sent different answers derive different seeds, so an aggregator
   that feeds one node other parameters than the rest gets a sum with masks that do not cancel.
4. **Sum.** The aggregator checks that every member sent the same layout for the same round and set, adds
   the vectors (the masks cancel exactly) and decodes the sum, which ``aggregation_method`` gets as the
   only entry of its list.

A member of the set that sends nothing fails the run: its masks are in the others' vectors, and there is
no mask recovery.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flame_sdk.interface import FlameSDK
from flame_sdk.secure_sum import (
    KeyAgreementError,
    KeyPair,
    Layout,
    LayoutError,
    apply_masks,
    decode,
    encode,
    total,
)
from flame_sdk.secure_sum.digest import input_digest
from flame_sdk.secure_sum.fixed_point import LIMBS, Limbs
from flame_sdk.secure_sum.layout import difference
from flame_sdk.star.exchange import Exchange
from flame_sdk.star.participation import Participation
from flame_sdk.star.run_errors import RoundTimeoutError, StarRunError

KEY_CATEGORY = "secure_sum_key"
STATUS_CATEGORY = "secure_sum_status"
SET_CATEGORY = "secure_sum_set"
WITHDRAWN_CATEGORY = "secure_sum_withdrawn"
#: Key marking a masked contribution in the round data (its value is the format version).
PAYLOAD = "flame_sdk.secure_sum"
VERSION = 1
READY, WITHDRAW = "ready", "withdrawn"


def minimum_set(min_nodes: int | None, data_nodes: int) -> int:
    """How many data nodes a round's set needs: all without ``min_nodes``, else ``min_nodes`` (at least 2)."""
    return data_nodes if min_nodes is None else max(2, min_nodes)


class MaskingNode:
    """A data node's side: its key pair, its partners' public keys, the round's set and the masking."""

    def __init__(self, flame: FlameSDK, exchange: Exchange, aggregator_id: str, min_nodes: int | None) -> None:
        self.flame, self.exchange = flame, exchange
        self.aggregator_id, self.min_nodes = aggregator_id, min_nodes
        self.own_id = flame.get_id()
        self.analysis_id = flame.get_analysis_id()
        self.data_nodes = sorted({self.own_id, *(p for p in flame.get_participant_ids() if p != aggregator_id)})
        self.peers = [node for node in self.data_nodes if node != self.own_id]
        self.keys = KeyPair()
        self.peer_keys: dict[str, bytes] | None = None
        self.withdrawn: set[str] = set()
        self.last_set = list(self.data_nodes)

    @property
    def timeout(self) -> float:
        return self.exchange.round_timeout

    # -- keys -------------------------------------------------------------------------------------------
    def offer_key(self) -> None:
        """Send this run's public key to every other data node (authenticated storage path)."""
        if not self.peers:
            return
        _, not_acked = self.flame.send_intermediate_data(
            self.peers, {"public_key": self.keys.public_bytes}, KEY_CATEGORY, max_attempts=3,
            timeout=self.timeout, attempt_timeout=min(30.0, self.timeout))
        if not_acked:
            if self.min_nodes is None:
                self.exchange.raise_partner_failure()
                raise RoundTimeoutError(not_acked, 1, self.timeout, "an acknowledgement of our secure-sum key")
            self.flame.flame_log(f"secure sum: node(s) {not_acked} did not acknowledge this node's key; they can "
                                 f"take part only if they received it", log_type="warn")

    def collect_keys(self) -> dict[str, bytes]:
        """The other data nodes' public keys (once); a node whose key does not come is named."""
        if self.peer_keys is not None:
            return self.peer_keys
        received = self.exchange.receive(self.peers, 1, "their secure-sum key", category=KEY_CATEGORY,
                                         allow_missing=self.min_nodes is not None)
        keys: dict[str, bytes] = {}
        for peer, value in received.items():
            if value is None:
                continue
            key = value.get("public_key") if isinstance(value, dict) else None
            if not isinstance(key, bytes) or len(key) != 32:
                raise StarRunError(peer, f"node {peer} sent a malformed secure-sum key ({str(value)[:80]})")
            keys[peer] = key
        missing = [peer for peer in self.peers if peer not in keys]
        if missing:
            self.flame.flame_log(f"secure sum: no key from node(s) {missing}; they cannot be in this node's sums",
                                 log_type="warn")
        self.peer_keys = keys
        return keys

    # -- the round's set ---------------------------------------------------------------------------------
    def participants(self, round_number: int) -> list[str]:
        """The data nodes whose masked results are summed this round (this node among them)."""
        keys = self.collect_keys()
        if self.min_nodes is None:
            return list(self.data_nodes)
        self._send_status(round_number, {"state": READY, "keys_from": sorted(keys)})
        body = self.exchange.listen([self.aggregator_id], SET_CATEGORY, round_number, "the secure-sum set")\
            .get(self.aggregator_id)
        if body is None:
            if self.exchange.finished():
                raise StarRunError(self.aggregator_id, "the aggregator finished the run while this node waited for "
                                                       f"round {round_number}'s secure-sum set")
            self.exchange.raise_partner_failure()
            raise RoundTimeoutError([self.aggregator_id], round_number, self.timeout, "the secure-sum set")
        nodes = body.get("nodes")
        if body.get("round") != round_number or not isinstance(nodes, list) or \
                not all(isinstance(n, str) for n in nodes):
            raise StarRunError(self.aggregator_id, f"round {round_number}: malformed secure-sum set {str(body)[:120]}")
        self._check_set(sorted(nodes), round_number)
        self.last_set = sorted(nodes)
        return self.last_set

    def _check_set(self, nodes: list[str], round_number: int) -> None:
        """Refuse a set this node cannot or should not mask for (see the module docstring, step 2)."""
        keys = self.peer_keys or {}

        def refuse(why: str) -> StarRunError:
            return StarRunError(self.aggregator_id, f"round {round_number}: this node refuses the secure-sum set "
                                                    f"{nodes} announced by the aggregator: {why}")

        if len(set(nodes)) != len(nodes) or self.own_id not in nodes or not set(nodes) <= set(self.last_set):
            raise refuse(f"a set must hold this node, no duplicates, and only nodes of the previous set "
                         f"{self.last_set}")
        needed = minimum_set(self.min_nodes, len(self.data_nodes))
        if len(nodes) < needed:
            raise refuse(f"a secure sum needs at least {needed} data nodes (a sum of fewer would reveal a node's "
                         f"result to the aggregator)")
        keyless = [n for n in nodes if n != self.own_id and n not in keys]
        if keyless:
            raise refuse(f"this node holds no key of {keyless}")
        for left_out in sorted(set(self.data_nodes) - set(nodes) - self.withdrawn):
            if left_out not in keys:
                continue  # it never took part in the key exchange: nobody masks with it
            notice = self.exchange.receive([left_out], round_number, "its withdrawal", category=WITHDRAWN_CATEGORY,
                                           allow_missing=True)
            if notice.get(left_out) is None:
                raise refuse(f"node {left_out} was left out, but it did not withdraw and it took part in the key "
                             f"exchange")
            self.withdrawn.add(left_out)

    # -- masking ------------------------------------------------------------------------------------------
    def prepare(self, result: Any) -> tuple[Layout, Limbs]:
        """The result's layout and ring vector; LayoutError if it holds anything but numbers in range."""
        return encode(result, len(self.data_nodes))

    def masked(self, prepared: tuple[Layout, Limbs], nodes: list[str], round_number: int,
               round_input: Any) -> dict[str, Any]:
        """The round data this node sends: its vector plus the masks it shares with the other set members.

        ``round_input`` is what the aggregator sent for this round (None in round 1); the masks depend on its
        digest, which travels along so that the aggregator can tell nodes that were sent different inputs.
        """
        layout, vector = prepared
        keys = self.collect_keys()
        digest = input_digest(round_input)
        try:
            seeds = {peer: self.keys.pair_seed(keys[peer], self.analysis_id, round_number, self.own_id, peer, digest)
                     for peer in nodes if peer != self.own_id}
        except KeyAgreementError as exc:
            raise StarRunError(None, f"secure sum: {exc}") from None
        return {PAYLOAD: VERSION, "round": round_number, "nodes": nodes, "layout": layout, "input": digest.hex(),
                "masked": apply_masks(vector, self.own_id, seeds)}

    # -- leaving ------------------------------------------------------------------------------------------
    def withdraw(self, round_number: int, reason: str) -> None:
        """Tell the aggregator (status) and every other data node (authenticated) that this node leaves."""
        self._send_status(round_number, {"state": WITHDRAW, "reason": reason})
        if self.peers:
            self.flame.send_intermediate_data(self.peers, {"round": round_number, "reason": reason},
                                              WITHDRAWN_CATEGORY, max_attempts=3, timeout=self.timeout,
                                              attempt_timeout=min(30.0, self.timeout))

    def _send_status(self, round_number: int, body: dict[str, Any]) -> None:
        self.exchange.tell([self.aggregator_id], STATUS_CATEGORY, {"round": round_number, **body}, round_number,
                           "this node's secure-sum status")


class SummingAggregator:
    """The aggregator's side: it fixes the round's set (with ``min_nodes``) and adds the masked vectors."""

    def __init__(self, flame: FlameSDK, exchange: Exchange, participation: Participation) -> None:
        self.flame, self.exchange, self.participation = flame, exchange, participation
        self.own_id = flame.get_id()

    def participants(self, round_number: int) -> list[str]:
        """The round's set: all remaining data nodes, minus (with ``min_nodes``) those that withdrew."""
        active = sorted(self.participation.contributors)
        if self.participation.min_nodes is None:
            return active
        answers = self.exchange.listen(active, STATUS_CATEGORY, round_number, "the secure-sum statuses")
        ready: dict[str, set[str]] = {}
        silent = []
        for node in active:
            body = answers.get(node)
            if body is None:
                silent.append(node)
            elif body.get("round") != round_number or body.get("state") not in (READY, WITHDRAW):
                raise StarRunError(node, f"round {round_number}: malformed secure-sum status {str(body)[:120]}")
            elif body["state"] == WITHDRAW:
                self.participation.drop(node, round_number, str(body.get("reason", "withdrew")))
            else:
                ready[node] = {str(n) for n in body.get("keys_from", [])}
        for node in silent:
            holders = sorted(n for n, keys in ready.items() if node in keys)
            if holders:
                self.exchange.raise_partner_failure()
                raise StarRunError(node, f"round {round_number}: node {node} sent no secure-sum status within "
                                         f"{self.exchange.round_timeout:g} s, and it took part in the key exchange "
                                         f"(node(s) {holders} hold its key), so it cannot be left out: its partners "
                                         f"could not tell its absence from an aggregator excluding it. A node can "
                                         f"leave a secure sum only by withdrawing")
            self.participation.drop(node, round_number, "no secure-sum status within round_timeout (no key "
                                                        "exchanged)")
        nodes = sorted(ready)
        for node in nodes:
            lacking = sorted(set(nodes) - {node} - ready[node])
            if lacking:
                raise StarRunError(lacking[0], f"round {round_number}: node {node} holds no secure-sum key of "
                                               f"{lacking}, so their results cannot be summed securely")
        self.participation.check(round_number, self.own_id)
        needed = minimum_set(self.participation.min_nodes, len(self.participation.data_nodes))
        if len(nodes) < needed:
            raise StarRunError(self.own_id, f"round {round_number}: only {len(nodes)} data node(s) left; a secure sum "
                                            f"needs at least {needed}")
        self.exchange.tell(nodes, SET_CATEGORY, {"round": round_number, "nodes": nodes}, round_number,
                           "the secure-sum set")
        return nodes

    def total(self, received: dict[str, Any], nodes: list[str], round_number: int) -> Any:
        """The sum of the members' results, from their masked vectors (checked to belong together)."""
        layout: Layout | None = None
        vectors: list[Limbs] = []
        inputs = {node: payload.get("input") for node, payload in received.items() if isinstance(payload, dict)}
        if len(set(inputs.values())) > 1:
            groups: dict[Any, list[str]] = {}
            for node, digest in inputs.items():
                groups.setdefault(digest, []).append(node)
            raise StarRunError(self.own_id, f"round {round_number}: the data nodes hold different versions of the "
                                            f"aggregator's last answer (groups {sorted(groups.values())}), so their "
                                            f"masks do not cancel. Do all nodes run the same image?")
        for node in nodes:
            payload = received.get(node)
            if not isinstance(payload, dict) or payload.get(PAYLOAD) != VERSION:
                raise StarRunError(node, f"round {round_number}: node {node} sent no masked secure-sum vector; are "
                                         f"all nodes running the same analysis with secure_sum=True?")
            if payload.get("round") != round_number or payload.get("nodes") != nodes:
                raise StarRunError(node, f"round {round_number}: node {node} masked for round {payload.get('round')} "
                                         f"and set {payload.get('nodes')}, not for this round's set {nodes}")
            vector = payload.get("masked")
            if not isinstance(vector, np.ndarray) or vector.dtype != np.uint64 or vector.ndim != 2 \
                    or vector.shape[1] != LIMBS:
                raise StarRunError(node, f"round {round_number}: node {node} sent a malformed masked vector")
            if layout is None:
                layout = payload["layout"]
            else:
                differs = difference(layout, payload["layout"])
                if differs:
                    raise StarRunError(node, f"round {round_number}: the results of node {nodes[0]} and node {node} "
                                             f"have different layouts ({differs}). A secure sum adds results "
                                             f"entry by entry, so every node must send the same keys, lengths and "
                                             f"shapes: build them from the analysis' arguments, not from the data")
            vectors.append(vector)
        try:
            return decode(layout or ("list", ()), total(vectors))
        except (LayoutError, ValueError) as exc:
            raise StarRunError(self.own_id, f"round {round_number}: the secure sum could not be decoded: {exc}") \
                from None
