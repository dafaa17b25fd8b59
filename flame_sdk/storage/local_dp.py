"""Local differential privacy for final results: the Laplace mechanism with scale sensitivity / epsilon.

The reference service noises a single number. Here a result may also be a (nested) list, tuple, numpy
array or dict of numbers; every number gets independent noise of the same scale. On the wire a single
number travels as its decimal text (as in the reference) and a container as JSON.
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


def decode(content: bytes) -> Numeric:
    """Parse an uploaded DP value; ValueError if it is not a finite number or container of them."""
    text = content.decode("utf-8", errors="replace").strip()
    try:
        return normalize(float(text))
    except ValueError:
        pass
    try:
        return normalize(json.loads(text))
    except json.JSONDecodeError:
        raise ValueError("the uploaded file must contain a number or a JSON list/object of numbers") from None


def add_laplace_noise(value: Numeric, epsilon: float, sensitivity: float, rng: np.random.Generator) -> Numeric:
    """Each number plus independent Laplace(0, sensitivity / epsilon) noise."""
    scale = sensitivity / epsilon
    if isinstance(value, float):
        return value + float(rng.laplace(0.0, scale))
    if isinstance(value, list):
        return [add_laplace_noise(item, epsilon, sensitivity, rng) for item in value]
    return {key: add_laplace_noise(item, epsilon, sensitivity, rng) for key, item in value.items()}
