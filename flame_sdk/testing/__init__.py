"""Local runs: a fake SDK for unit tests, and whole analyses over the simulator in one process."""

from flame_sdk.testing.fake_sdk import FakeFlameSDK
from flame_sdk.testing.local_run import LocalRun, NodeRun, run_local
from flame_sdk.testing.pooled import PooledComparison, assert_matches_pooled, compare, flatten

__all__ = ["FakeFlameSDK", "LocalRun", "NodeRun", "PooledComparison", "assert_matches_pooled", "compare",
           "flatten", "run_local"]
