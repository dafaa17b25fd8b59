"""Star templates: analyzers on data nodes, one aggregator; ``from flame.star import ...`` re-exports them."""

from flame_sdk.star.aggregator import StarAggregator
from flame_sdk.star.analyzer import StarAnalyzer
from flame_sdk.star.local_dp_model import StarLocalDPModel
from flame_sdk.star.model import StarModel
from flame_sdk.star.participation import Participation, TooFewNodesError
from flame_sdk.star.release import CountTable
from flame_sdk.star.run_errors import NodeFailedError, RoundTimeoutError, StarRunError
from flame_sdk.star.tester import StarModelTester

__all__ = [
    "CountTable",
    "NodeFailedError",
    "Participation",
    "RoundTimeoutError",
    "StarAggregator",
    "StarAnalyzer",
    "StarLocalDPModel",
    "StarModel",
    "StarModelTester",
    "StarRunError",
    "TooFewNodesError",
]
