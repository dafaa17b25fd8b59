"""Secure sum: pairwise-masked fixed-point vectors whose sum, and only their sum, the aggregator learns.

Pure pieces without I/O (the star templates run the protocol over the SDK, see
:mod:`flame_sdk.star.secure_rounds`):

* :mod:`~flame_sdk.secure_sum.layout`: nested structures of numbers as a layout plus number vectors;
* :mod:`~flame_sdk.secure_sum.fixed_point`: the ring Z/2**192 with 64 fractional bits (range and precision);
* :mod:`~flame_sdk.secure_sum.masks`: X25519 key pairs, HKDF seeds per pair and round, ChaCha20 masks;
* :mod:`~flame_sdk.secure_sum.digest`: a canonical digest of a round's input, bound into the seeds;
* :mod:`~flame_sdk.secure_sum.structures`: a structure encoded into the ring, a sum decoded from it.
"""

from flame_sdk.secure_sum.digest import input_digest
from flame_sdk.secure_sum.fixed_point import RangeError
from flame_sdk.secure_sum.layout import Layout, LayoutError
from flame_sdk.secure_sum.masks import KeyAgreementError, KeyPair, apply_masks
from flame_sdk.secure_sum.structures import decode, encode, total

__all__ = ["KeyAgreementError", "KeyPair", "Layout", "LayoutError", "RangeError", "apply_masks", "decode", "encode",
           "input_digest", "total"]
