"""Alias: ``from flame.star import StarModel, StarAnalyzer, ...`` as in the FLAME star templates."""

from flame_sdk.star import (
    CountTable,
    NodeFailedError,
    RoundTimeoutError,
    StarAggregator,
    StarAnalyzer,
    StarLocalDPModel,
    StarModel,
    StarModelTester,
    StarRunError,
)

__all__ = [
    "CountTable",
    "NodeFailedError",
    "RoundTimeoutError",
    "StarAggregator",
    "StarAnalyzer",
    "StarLocalDPModel",
    "StarModel",
    "StarModelTester",
    "StarRunError",
]
