"""The simulated result service's local DP: parse an uploaded value and add Laplace noise to it.

Only the simulator uses this (on a real node the result service adds the noise); the SDK side, which checks
and encodes the value it uploads, is ``flame_sdk.storage.local_dp``.
"""

from __future__ import annotations

import json

import numpy as np

from flame_sdk.storage.local_dp import Numeric, normalize


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
