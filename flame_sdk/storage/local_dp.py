"""Local differential privacy for final results: what the SDK checks before ``PUT /final/localdp``.

The node result service adds the Laplace noise (scale sensitivity / epsilon) itself, and only to a single
number: it parses the uploaded file with ``float(...)`` and answers 400 "Uploaded file must contain a
single numerical value." otherwise (node-result-service ``project/routers/final.py``,
``submit_final_single_value_with_local_dp_result_to_hub``). So the SDK accepts one finite number per
file and says so before anything is sent; several numbers go as ``multiple_results=True``, one file each.
The simulator's side (parse and noise) is ``flame_sdk.sim.common.laplace``.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np


def check_params(local_dp: object) -> tuple[float, float]:
    """``(epsilon, sensitivity)`` from ``{'epsilon': ..., 'sensitivity': ...}``, both finite and positive."""
    if not isinstance(local_dp, dict) or set(local_dp) != {"epsilon", "sensitivity"}:
        raise ValueError(f"local_dp must be a dict with exactly the keys 'epsilon' and 'sensitivity', got {local_dp!r}")
    values = []
    for key in ("epsilon", "sensitivity"):
        value = local_dp[key]
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"local_dp[{key!r}] must be a finite positive number, got {value!r}")
        values.append(float(value))
    return values[0], values[1]


def check_number(value: object, what: str = "the result") -> float:
    """The result as a finite float; ValueError (naming the fix) for anything the service would refuse."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Real, np.integer, np.floating)):
        raise ValueError(
            f"local DP can only be applied to a single number, but {what} is {type(value).__name__}: the node result "
            f"service noises one number per file. Submit several numbers with multiple_results=True (one file "
            f"each), or submit the container without local_dp")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"local DP needs a finite number, but {what} is {number}")
    return number


def encode(value: float) -> bytes:
    """The file content: the number's shortest round-trip decimal text."""
    return repr(value).encode("utf-8")
