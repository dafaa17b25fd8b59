"""The simulated result service's local DP, as the real one does it: parse one number, add Laplace noise.

Restated from PrivateAIM/node-result-service ``project/routers/final.py``
(``submit_final_single_value_with_local_dp_result_to_hub``): the file is read with ``float(...)``, noise of
scale sensitivity / epsilon is added (opendp ``make_laplace``), and ``str(noisy)`` is stored. Only the
simulator uses this; the SDK side, which checks the value it uploads, is ``flame_sdk.storage.local_dp``.
"""

from __future__ import annotations

import numpy as np


def parse_value(content: bytes | bytearray) -> float:
    """The uploaded number (``float`` accepts surrounding whitespace); ValueError for anything else."""
    return float(content)


def add_noise(value: float, epsilon: float, sensitivity: float, rng: np.random.Generator) -> float:
    """``value`` plus Laplace(0, sensitivity / epsilon) noise."""
    return value + float(rng.laplace(0.0, sensitivity / epsilon))
