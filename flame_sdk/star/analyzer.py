"""StarAnalyzer: the part of a star analysis that runs on every data node."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from flame_sdk.star.node import StarNode


class StarAnalyzer(StarNode, ABC):
    """Subclass it and implement :meth:`analysis_method`; construct with ``super().__init__(flame)``."""

    expected_role = "default"

    def analyze(self, data: list[Any]) -> Any:
        """One round: run :meth:`analysis_method` with the aggregator's latest result (None in round 1)."""
        result = self.analysis_method(data, self.latest_result)
        self.latest_result = result
        self.num_iterations += 1
        return result

    @abstractmethod
    def analysis_method(self, data: list[Any], aggregator_results: Any | None) -> Any:
        """Compute this node's contribution.

        ``data`` has one entry per data source of the node: for FHIR a dict query -> Bundle dict, for S3 a
        dict dataset name -> bytes. ``aggregator_results`` is None in the first round, afterwards the
        aggregator's result of the previous round.
        """
