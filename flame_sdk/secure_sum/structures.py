"""Nested structures of numbers as ring vectors and back: what a node masks and what the aggregator decodes.

:func:`encode` flattens a structure (see :mod:`~flame_sdk.secure_sum.layout`) and encodes its floats, then
its ints, into one limb array; :func:`decode` turns the (summed) limb array back into a structure of the
same layout. A value outside the ring's range fails with the path of the value in the structure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flame_sdk.secure_sum import fixed_point
from flame_sdk.secure_sum.fixed_point import Limbs, RangeError
from flame_sdk.secure_sum.layout import Layout, LayoutError, counts, flatten, path_of, unflatten


def encode(value: Any, addends: int) -> tuple[Layout, Limbs]:
    """The layout of ``value`` and its numbers in the ring, each small enough for a sum of ``addends``."""
    flat = flatten(value)
    try:
        floats = fixed_point.encode_floats(flat.floats, addends)
    except RangeError as exc:
        raise LayoutError(f"{path_of(flat.layout, 'float', exc.index)}: {exc}; rescale it (e.g. send it in "
                          f"thousands) or leave it out of the secure sum") from None
    return flat.layout, np.concatenate([floats, fixed_point.encode_ints(flat.ints)])


def total(vectors: list[Limbs]) -> Limbs:
    """The sum of limb arrays of equal length, modulo 2**192."""
    if not vectors:
        raise ValueError("nothing to add")
    result = vectors[0]
    for vector in vectors[1:]:
        result = fixed_point.add(result, vector)
    return result


def decode(layout: Layout, limbs: Limbs) -> Any:
    """The structure of ``layout`` holding the numbers of ``limbs`` (floats first, then ints)."""
    float_count, int_count = counts(layout)
    if limbs.shape != (float_count + int_count, fixed_point.LIMBS):
        raise LayoutError(f"the vector holds {limbs.shape[0]} numbers, the layout {float_count + int_count}")
    floats = fixed_point.decode_floats(limbs[:float_count])
    ints = fixed_point.decode_ints(limbs[float_count:])
    return unflatten(layout, floats, ints)
