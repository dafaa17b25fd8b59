"""Local differential privacy for final results, SDK side: check the parameters and the value, encode it.

A result may be a number or a (nested) list, tuple, numpy array or dict of numbers. On the wire a single
number travels as its decimal text (as in the reference) and a container as JSON. The result service adds
the Laplace noise (scale sensitivity / epsilon); the simulator's version is ``flame_sdk.sim.common.laplace``.
"""

from __future__ import annotations

import json
import math
from numbers import Real
from typing import Any

import numpy as np

Numeric = float | list[Any] | dict[str, Any]


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


def normalize(value: Any, path: str = "result") -> Numeric:
    """Plain floats/lists/dicts from a numeric result; ValueError naming the first bad element."""
    if isinstance(value, np.ndarray):
        if not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
            raise ValueError(f"local DP needs numbers, but {path} is a numpy array of dtype {value.dtype}")
        value = value.tolist()
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"local DP needs numbers, but {path} is a boolean ({value!r})")
    if isinstance(value, (Real, np.integer, np.floating)):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"local DP needs finite numbers, but {path} is {number}")
        return number
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"local DP needs numbers, but {path} is empty")
        return [normalize(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        if not value:
            raise ValueError(f"local DP needs numbers, but {path} is an empty dict")
        if not all(isinstance(key, str) for key in value):
            raise ValueError(f"local DP dicts need string keys (they travel as JSON), {path} has {list(value)[:3]}")
        return {key: normalize(item, f"{path}[{key!r}]") for key, item in value.items()}
    raise ValueError(f"local DP can only be applied to numbers (or lists/arrays/dicts of numbers), but {path} is "
                     f"{type(value).__name__}")


def encode(value: Numeric) -> bytes:
    return (repr(value) if isinstance(value, float) else json.dumps(value, allow_nan=False)).encode("utf-8")
