"""StarLocalDPModel: a StarModel whose final result gets Laplace noise from the result service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from flame_sdk.interface import FlameSDK
from flame_sdk.star.aggregator import StarAggregator
from flame_sdk.star.analyzer import StarAnalyzer
from flame_sdk.star.model import OutputType, StarModel


def check_local_dp(epsilon: Any, sensitivity: Any) -> None:
    """Raise ValueError unless both are positive numbers, or both None."""
    if (epsilon is None) != (sensitivity is None):
        raise ValueError("give both epsilon and sensitivity for local differential privacy, or neither "
                         f"(got epsilon={epsilon!r}, sensitivity={sensitivity!r})")
    for name, value in (("epsilon", epsilon), ("sensitivity", sensitivity)):
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")


class StarLocalDPModel(StarModel):
    """Like :class:`StarModel`; with ``epsilon`` and ``sensitivity`` the final result is submitted with
    ``local_dp={'epsilon': ..., 'sensitivity': ...}``.

    Noise is applied to the submitted result whatever ``has_converged`` returned (also when the run
    stopped at ``max_rounds``): an unprotected release is never the fallback.
    """

    def __init__(
        self,
        analyzer: type[StarAnalyzer],
        aggregator: type[StarAggregator],
        data_type: Literal["fhir", "s3"],
        query: str | list[str] | None = None,
        simple_analysis: bool = True,
        output_type: OutputType = "str",
        multiple_results: bool = False,
        analyzer_kwargs: dict[str, Any] | None = None,
        aggregator_kwargs: dict[str, Any] | None = None,
        epsilon: float | None = None,
        sensitivity: float | None = None,
        test_mode: bool = False,
        test_kwargs: dict[str, Any] | None = None,
        *,
        flame: FlameSDK | None = None,
        env: Mapping[str, str] | None = None,
        **limits: Any,
    ) -> None:
        check_local_dp(epsilon, sensitivity)
        self.epsilon = epsilon
        self.sensitivity = sensitivity
        super().__init__(analyzer, aggregator, data_type, query, simple_analysis, output_type, multiple_results,
                         analyzer_kwargs, aggregator_kwargs, test_mode, test_kwargs, flame=flame, env=env, **limits)

    def _local_dp(self, aggregator: StarAggregator) -> dict[str, float] | None:
        if self.epsilon is None or self.sensitivity is None:
            return None
        return {"epsilon": float(self.epsilon), "sensitivity": float(self.sensitivity)}
