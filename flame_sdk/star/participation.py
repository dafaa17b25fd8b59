"""Which data nodes contribute to a star run, which were dropped and why (opt-in ``min_nodes``).

With ``StarModel(min_nodes=k)`` a data node whose analysis raises (too little data, a data source that
fails, ...) withdraws instead of failing the run, and the aggregator drops a node that sends nothing within
``round_timeout``, as long as at least ``k`` data nodes remain; a dropped node stays out for the rest of the
run. :class:`Participation` is the aggregator's record of it: it is on the aggregator object while it
aggregates (``self.participation``), on the model after the run, and submitted next to the result as
``participation.json``. Reasons name the kind of failure, never its message (which may quote data): the
message is in the dropped node's own log.

Control notices travel in the round's data channel as plain dicts (they pass the restricted unpickler), so a
node waiting for a partner's data gets them at once: :func:`notice` builds one, :func:`notice_kind` reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flame_sdk.star.run_errors import StarRunError

#: Key of a control notice in the data channel; its value is the notice's kind.
NOTICE = "flame_sdk.star.notice"
#: A data node tells the aggregator that it leaves the run (its analysis raised).
WITHDRAWN = "withdrawn"
#: The aggregator tells a data node it dropped (for silence) that it is no longer part of the run.
DROPPED = "dropped"
#: Name of the metadata file submitted next to the result when ``min_nodes`` is set.
METADATA_FILENAME = "participation.json"


def notice(kind: str, round_number: int, reason: str) -> dict[str, Any]:
    return {NOTICE: kind, "round": round_number, "reason": reason}


def notice_kind(value: Any) -> str | None:
    """The kind of a control notice, or None for anything else (ordinary round data)."""
    if isinstance(value, dict) and isinstance(value.get(NOTICE), str):
        return str(value[NOTICE])
    return None


def failure_reason(exc: BaseException) -> str:
    """What a dropped node's record says about its failure: the kind, not the message."""
    return f"{type(exc).__name__} raised on the node (the message is in that node's log)"


class TooFewNodesError(StarRunError):
    """Fewer data nodes than ``min_nodes`` are left in a round."""


@dataclass(frozen=True)
class Dropout:
    node_id: str
    round: int
    reason: str


@dataclass
class Participation:
    """The data nodes of a run, the ones dropped (in order) and the minimum that must remain."""

    data_nodes: list[str]
    min_nodes: int | None = None
    secure_sum: bool = False
    dropped: list[Dropout] = field(default_factory=list)

    @property
    def contributors(self) -> list[str]:
        """The data nodes whose results are in the current round (all but the dropped ones), in run order."""
        out = {d.node_id for d in self.dropped}
        return [node for node in self.data_nodes if node not in out]

    def drop(self, node_id: str, round_number: int, reason: str) -> None:
        if node_id in self.contributors:
            self.dropped.append(Dropout(node_id, round_number, reason))

    def check(self, round_number: int, aggregator_id: str) -> None:
        """Raise TooFewNodesError if fewer than ``min_nodes`` data nodes remain."""
        needed = len(self.data_nodes) if self.min_nodes is None else self.min_nodes
        if len(self.contributors) < needed:
            dropped = "; ".join(f"{d.node_id} (round {d.round}: {d.reason})" for d in self.dropped)
            raise TooFewNodesError(aggregator_id, f"round {round_number}: only {len(self.contributors)} of "
                                                  f"{len(self.data_nodes)} data nodes are left, fewer than "
                                                  f"min_nodes={needed}; dropped: {dropped}")

    def to_json(self) -> str:
        """The record as submitted next to the result."""
        return json.dumps({"data_nodes": self.data_nodes, "contributors": self.contributors,
                           "min_nodes": self.min_nodes, "secure_sum": self.secure_sum,
                           "dropped": [{"node": d.node_id, "round": d.round, "reason": d.reason}
                                       for d in self.dropped]}, indent=2)
