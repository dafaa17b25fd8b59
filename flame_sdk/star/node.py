"""State shared by analyzers and aggregators: node identity, partners and the round counter."""

from __future__ import annotations

from typing import Any

from flame_sdk.interface import FlameSDK


class StarNode:
    """Base of :class:`StarAnalyzer` and :class:`StarAggregator`; all state lives on the instance."""

    expected_role: str = ""

    def __init__(self, flame: FlameSDK) -> None:
        self.flame = flame
        self.id: str = flame.get_id()
        self.role: str = flame.get_role()
        if self.role != self.expected_role:
            raise ValueError(
                f"{type(self).__name__} needs a node with role {self.expected_role!r}, but this node has role "
                f"{self.role!r}; StarModel picks the class for the node's role, so pass the analyzer as "
                f"analyzer= and the aggregator as aggregator="
            )
        self.finished = False
        self.latest_result: Any = None
        self.partner_node_ids: list[str] = list(flame.get_participant_ids())
        self.num_iterations = 0

    def node_finished(self) -> None:
        self.finished = True
