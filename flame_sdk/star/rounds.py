"""One round of a star run as each role sees it: plain or secure sum, with or without ``min_nodes``.

:class:`AggregatorRounds` collects what ``aggregation_method`` gets (one result per data node, or in
secure-sum mode their sum as the only entry) and sends the aggregated result back to the nodes still in the
run. :class:`AnalyzerRounds` sends a data node's contribution (masked in secure-sum mode), or with
``min_nodes`` withdraws the node when its analysis raises, and waits for the aggregator's answer. The
model (:mod:`flame_sdk.star.model`) drives the rounds; :mod:`flame_sdk.star.participation` keeps the record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flame_sdk.interface import FlameSDK
from flame_sdk.star.exchange import FINISHED_CATEGORY, NOTICE_ATTEMPT_TIMEOUT, NOTICE_TIMEOUT, Exchange
from flame_sdk.star.participation import (
    DROPPED,
    WITHDRAWN,
    Participation,
    failure_reason,
    notice,
    notice_kind,
)
from flame_sdk.star.run_errors import StarRunError
from flame_sdk.star.secure_rounds import MaskingNode, SummingAggregator

#: What :meth:`AnalyzerRounds.reply` returns when the node is no longer part of the run.
LEFT = object()


class AggregatorRounds:
    """The aggregator's rounds over the data nodes in ``participation``."""

    def __init__(self, flame: FlameSDK, exchange: Exchange, participation: Participation) -> None:
        self.flame, self.exchange, self.participation = flame, exchange, participation
        self.secure = SummingAggregator(flame, exchange, participation) if participation.secure_sum else None

    def drop_unready(self, silent: list[str]) -> None:
        """Leave out data nodes that did not answer the ready check (only with ``min_nodes``)."""
        for node in silent:
            self.participation.drop(node, 0, "did not answer the ready check within ready_timeout")
        self._announce_drops(silent, 0)
        self.participation.check(0, self.flame.get_id())

    def collect(self, round_number: int) -> list[Any]:
        """What ``aggregation_method`` gets in this round."""
        if self.secure is not None:
            nodes = self.secure.participants(round_number)
            received = self.exchange.receive(nodes, round_number, "their masked analysis results")
            return [self.secure.total(received, nodes, round_number)]
        active = self.participation.contributors
        tolerant = self.participation.min_nodes is not None
        received = self.exchange.receive(active, round_number, "their analysis results", allow_missing=tolerant)
        silent = []
        for node in active:
            value = received.get(node)
            if value is None:
                silent.append(node)
                self.participation.drop(node, round_number, "sent nothing within round_timeout")
            elif notice_kind(value) == WITHDRAWN:
                if not tolerant:
                    raise StarRunError(node, f"round {round_number}: node {node} withdrew from the analysis, but "
                                             f"this aggregator runs without min_nodes; give every node the same "
                                             f"min_nodes")
                self.participation.drop(node, round_number, str(value.get("reason", "withdrew")))
        for dropout in self.participation.dropped:
            if dropout.round == round_number:
                self.flame.flame_log(f"round {round_number}: data node {dropout.node_id} dropped ({dropout.reason})",
                                     log_type="warn")
        self._announce_drops(silent, round_number)
        self.participation.check(round_number, self.flame.get_id())
        return [received[node] for node in self.participation.contributors]

    def reply(self, result: Any, round_number: int) -> None:
        """Send the round's aggregated result to the data nodes still in the run."""
        self.exchange.send(self.participation.contributors, result, round_number)

    def _announce_drops(self, nodes: list[str], round_number: int) -> None:
        """Tell silent nodes they were dropped (best effort: a node that never started cannot hear it)."""
        for node in nodes:
            try:
                self.flame.send_intermediate_data([node], notice(DROPPED, round_number, "no answer in time"),
                                                  max_attempts=1, timeout=NOTICE_TIMEOUT,
                                                  attempt_timeout=NOTICE_ATTEMPT_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - the run goes on without the node either way
                self.flame.flame_log(f"could not tell node {node} that it was dropped: {exc}", log_type="warn")


class AnalyzerRounds:
    """A data node's rounds: contribute (or withdraw), then wait for the aggregator's answer."""

    def __init__(self, flame: FlameSDK, exchange: Exchange, aggregator_id: str, min_nodes: int | None,
                 secure_sum: bool, max_rounds: int) -> None:
        self.flame, self.exchange, self.aggregator_id = flame, exchange, aggregator_id
        self.min_nodes, self.max_rounds = min_nodes, max_rounds
        self.secure = MaskingNode(flame, exchange, aggregator_id, min_nodes) if secure_sum else None
        #: The aggregator's last answer as received (None before round 2): the round's input.
        self.last_reply: Any = None

    def peers(self) -> list[str]:
        """The other data nodes this node must reach before round 1 (secure sum only)."""
        return [] if self.secure is None else self.secure.peers

    def start(self) -> None:
        if self.secure is not None:
            self.secure.offer_key()

    def contribute(self, round_number: int, compute: Callable[[], Any]) -> Any:
        """Run ``compute`` and send its result; return it, or :data:`LEFT` when the node withdrew.

        Without ``min_nodes`` an exception propagates (and fails the run); with it, the node withdraws.
        """
        try:
            result = compute()
            prepared = self.secure.prepare(result) if self.secure is not None else None
        except Exception as exc:
            if self.min_nodes is None:
                raise
            self._withdraw(round_number, exc)
            return LEFT
        if self.secure is not None and prepared is not None:
            nodes = self.secure.participants(round_number)
            payload = self.secure.masked(prepared, nodes, round_number, self.last_reply)
            self.exchange.send([self.aggregator_id], payload, round_number)
        else:
            self.exchange.send([self.aggregator_id], result, round_number)
        return result

    def reply(self, round_number: int) -> Any:
        """The aggregator's answer: its result, None once it finished the run, or :data:`LEFT` if dropped."""
        reply = self.exchange.receive([self.aggregator_id], round_number, "the aggregated result")[self.aggregator_id]
        if notice_kind(reply) == DROPPED:
            self.flame.flame_log(f"the aggregator dropped this node in round {reply.get('round')} "
                                 f"({reply.get('reason')}); waiting for the run to end", log_type="warn")
            self.wait_for_end(round_number)
            return LEFT
        self.last_reply = reply
        return reply

    def _withdraw(self, round_number: int, exc: Exception) -> None:
        self.flame.flame_log(f"this node withdraws from the analysis in round {round_number} (min_nodes="
                             f"{self.min_nodes} lets the run go on without it): {type(exc).__name__}: {exc}",
                             log_type="warn")
        reason = failure_reason(exc)
        if self.secure is not None:
            self.secure.withdraw(round_number, reason)
        else:
            self.exchange.send([self.aggregator_id], notice(WITHDRAWN, round_number, reason), round_number)
        self.wait_for_end(round_number)

    def wait_for_end(self, round_number: int) -> None:
        """Stay (status executing) until the aggregator finishes the run; leaving earlier would end it.

        A node that stops reports a final status, which status sync would spread to every partner. The
        wait is bounded by the rounds the run may still take.
        """
        bound = self.exchange.round_timeout * (self.max_rounds - round_number + 2)
        self.flame.await_messages([self.aggregator_id], FINISHED_CATEGORY, timeout=bound)
