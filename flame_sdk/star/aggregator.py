"""StarAggregator: the part of a star analysis that combines the analyzers' results."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from flame_sdk.interface import FlameSDK
from flame_sdk.star.node import StarNode
from flame_sdk.star.participation import Participation


class StarAggregator(StarNode, ABC):
    """Subclass it and implement :meth:`aggregation_method` and :meth:`has_converged`.

    ``self.participation`` (set by :class:`~flame_sdk.star.model.StarModel`) names the data nodes whose results
    are in the current round (``contributors``) and those dropped under ``min_nodes``.
    """

    expected_role = "aggregator"

    def __init__(self, flame: FlameSDK) -> None:
        super().__init__(flame)
        self.delta_criteria = False
        self.participation: Participation | None = None

    def aggregate(self, node_results: list[Any], simple_analysis: bool = True) -> tuple[Any, bool]:
        """One round: aggregate, then decide whether the run is done; returns (result, converged).

        A simple analysis is done after one round. An iterative one is done once :meth:`has_converged` holds,
        but never in the first round (there is no previous result to compare with).
        """
        result = self.aggregation_method(node_results)
        self.delta_criteria = bool(self.has_converged(result, self.latest_result))
        converged = True if simple_analysis else (self.delta_criteria and self.num_iterations > 0)
        self.latest_result = result
        self.num_iterations += 1
        return result, converged

    @abstractmethod
    def aggregation_method(self, analysis_results: list[Any]) -> Any:
        """Combine one result per analyzer (in the order of ``partner_node_ids``) into the round's result."""

    @abstractmethod
    def has_converged(self, result: Any, last_result: Any | None) -> bool:
        """For iterative runs: True when ``result`` is final (``last_result`` is None in round 1)."""
