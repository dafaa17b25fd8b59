"""Fixed-point numbers in the ring of integers modulo 2**192, as arrays of three 64-bit limbs.

A number x is encoded as round(x * 2**64) modulo 2**192 (two's complement): 64 fractional bits and a signed
128-bit integer part. Sums in the ring are exact, so masks added modulo 2**192 cancel exactly, and the sum
of encoded numbers decodes to the exact sum of the rounded inputs:

* **resolution**: each float is rounded to the nearest multiple of 2**-64 (about 5.4e-20); a float of
  magnitude 2**-12 or more is encoded without any rounding (its last mantissa bit is coarser than 2**-64).
  Decoding returns the double nearest to the exact sum, so a sum differs from the exact sum of its inputs
  by at most half an ulp plus n * 2**-65 (n values added).
* **range**: a sum must stay below 2**127 (about 1.7e38) in magnitude; :func:`encode_floats` refuses any
  value that could take a sum of ``addends`` values beyond that (:class:`RangeError`), so a sum never wraps.
  Integers are exact up to 2**63 (numpy int64) per value.

Limb arrays have shape ``(n, 3)``, dtype uint64, least significant limb first. Pure numpy; no I/O.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FRACTIONAL_BITS = 64
RING_BITS = 192
LIMBS = RING_BITS // 64
#: Sums must stay below 2**SUM_BITS in magnitude (one bit of the integer part is the sign).
SUM_BITS = RING_BITS - FRACTIONAL_BITS - 1

Limbs = npt.NDArray[np.uint64]
_ALL_ONES = np.uint64(2**64 - 1)


class RangeError(ValueError):
    """A value cannot be encoded: not finite, or so large that a sum of it could leave the ring's range."""

    def __init__(self, index: int, value: float, reason: str) -> None:
        self.index, self.value = index, value
        super().__init__(reason)


def magnitude_bits(addends: int) -> int:
    """Bits each of ``addends`` values may use so that their sum stays within :data:`SUM_BITS`."""
    if addends < 1:
        raise ValueError(f"a sum needs at least one addend, got {addends}")
    return SUM_BITS - math.ceil(math.log2(addends))


def zeros(count: int) -> Limbs:
    return np.zeros((count, LIMBS), dtype=np.uint64)


def encode_floats(values: npt.ArrayLike, addends: int = 1) -> Limbs:
    """Encode floats (rounded to multiples of 2**-64); RangeError names the first value that does not fit."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(x)
    if bad.any():
        index = int(np.argmax(bad))
        raise RangeError(index, float(x[index]), f"{x[index]} cannot be added securely (not a finite number)")
    bits = magnitude_bits(addends)
    large = np.abs(x) >= 2.0**bits
    if large.any():
        index = int(np.argmax(large))
        raise RangeError(index, float(x[index]),
                         f"{x[index]:.6g} is beyond the secure sum's range: a sum of {addends} values must stay "
                         f"below 2**{SUM_BITS} (about {2.0**SUM_BITS:.3g}), so each value must be below 2**{bits} "
                         f"(about {2.0**bits:.3g}) in magnitude")
    # Every step below is exact in double precision: scaling by powers of two, rounding to an integer, and
    # splitting an integer of at most 53 significant bits into 64-bit pieces.
    scaled = np.rint(np.ldexp(x, FRACTIONAL_BITS))
    magnitude = np.abs(scaled)
    high = np.floor(np.ldexp(magnitude, -128))
    rest = magnitude - np.ldexp(high, 128)
    middle = np.floor(np.ldexp(rest, -64))
    low = rest - np.ldexp(middle, 64)
    limbs = np.stack([low, middle, high], axis=1).astype(np.uint64)
    return np.where((scaled < 0)[:, None], negate(limbs), limbs)


def encode_ints(values: npt.ArrayLike) -> Limbs:
    """Encode 64-bit signed integers exactly (no fractional part)."""
    x = np.asarray(values, dtype=np.int64).reshape(-1)
    limbs = zeros(len(x))
    limbs[:, 1] = x.astype(np.uint64)  # two's complement bits of the integer part
    limbs[:, 2] = np.where(x < 0, _ALL_ONES, np.uint64(0))
    return limbs


def negate(limbs: Limbs) -> Limbs:
    """-x modulo 2**192: every bit flipped, plus one."""
    one = zeros(len(limbs))
    one[:, 0] = 1
    return add(~limbs, one)


def add(a: Limbs, b: Limbs) -> Limbs:
    """a + b modulo 2**192, limb by limb with carries (uint64 arrays wrap silently)."""
    if a.shape != b.shape:
        raise ValueError(f"cannot add limb arrays of shapes {a.shape} and {b.shape}")
    out = np.empty_like(a)
    carry = np.zeros(len(a), dtype=np.uint64)
    for k in range(LIMBS):
        partial = a[:, k] + b[:, k]
        total = partial + carry
        carry = ((partial < a[:, k]) | (total < partial)).astype(np.uint64)
        out[:, k] = total
    return out


def subtract(a: Limbs, b: Limbs) -> Limbs:
    """a - b modulo 2**192."""
    return add(a, negate(b))


def _signed_ints(limbs: Limbs) -> list[int]:
    """Each row as a Python int in [-2**191, 2**191) (two's complement)."""
    out = []
    for low, middle, high in limbs.tolist():
        value = (high << 128) | (middle << 64) | low
        out.append(value - (1 << RING_BITS) if high >> 63 else value)
    return out


def decode_floats(limbs: Limbs) -> npt.NDArray[np.float64]:
    """The doubles nearest to the encoded numbers (Python's int division rounds correctly)."""
    scale = 1 << FRACTIONAL_BITS
    return np.array([value / scale for value in _signed_ints(limbs)], dtype=np.float64)


def decode_ints(limbs: Limbs) -> list[int]:
    """The encoded integers; ValueError if one has a fractional part (it was not a sum of integers)."""
    values = _signed_ints(limbs)
    scale = 1 << FRACTIONAL_BITS
    for index, value in enumerate(values):
        if value % scale:
            raise ValueError(f"integer entry {index} of the sum has a fractional part: the vectors added were not "
                             f"encoded alike (different layouts or masks)")
    return [value >> FRACTIONAL_BITS for value in values]
