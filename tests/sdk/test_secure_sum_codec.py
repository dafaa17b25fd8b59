"""The secure sum's pure parts: fixed-point ring, layouts of nested structures, pairwise masks."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flame_sdk.secure_sum import (
    KeyPair,
    LayoutError,
    apply_masks,
    decode,
    encode,
    fixed_point,
    input_digest,
    total,
)
from flame_sdk.secure_sum.layout import difference, flatten, unflatten
from flame_sdk.secure_sum.masks import KeyAgreementError, mask_stream

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-2.0**120, max_value=2.0**120)


@settings(max_examples=300, deadline=None)
@given(st.lists(finite, min_size=1, max_size=40))
def test_floats_encode_to_the_nearest_multiple_of_2_to_the_minus_64(values):
    limbs = fixed_point.encode_floats(values, addends=4)
    for value, encoded in zip(values, fixed_point._signed_ints(limbs), strict=True):
        assert encoded == round(Fraction(value) * 2**64)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=8))
def test_a_sum_decodes_to_the_double_nearest_the_exact_sum_of_the_encoded_values(rows):
    columns = np.array(rows, dtype=float)
    encoded = [fixed_point.encode_floats(row, addends=len(rows)) for row in columns]
    decoded = fixed_point.decode_floats(total(encoded))
    for j in range(3):
        exact = sum(round(Fraction(float(v)) * 2**64) for v in columns[:, j])
        assert decoded[j] == float(Fraction(exact, 2**64))


def test_values_of_magnitude_2_to_the_minus_12_or_more_round_trip_exactly():
    values = np.array([2.0**-12, -3.75, 1e300 / 1e290, 123456.789, -(2.0**100), 0.1])
    assert (fixed_point.decode_floats(fixed_point.encode_floats(values)) == values).all()
    assert abs(fixed_point.decode_floats(fixed_point.encode_floats([1e-25]))[0]) == 0.0  # below the resolution


def test_ring_arithmetic_wraps_modulo_2_to_the_192():
    a = fixed_point.encode_floats([1.5, -2.0, 0.0])
    b = fixed_point.encode_floats([-1.5, 2.0, 7.25])
    assert (fixed_point.subtract(fixed_point.add(a, b), b) == a).all()
    assert (fixed_point.add(a, fixed_point.negate(a)) == 0).all()
    ints = [0, 1, -1, 2**62, -(2**63), 2**63 - 1]
    assert fixed_point.decode_ints(fixed_point.encode_ints(ints)) == ints


def test_out_of_range_and_non_finite_values_are_refused_by_name():
    with pytest.raises(fixed_point.RangeError, match=r"beyond the secure sum's range: a sum of 10 values"):
        fixed_point.encode_floats([1.0, 2.0**124], addends=10)
    with pytest.raises(LayoutError, match=r"result\['hessian'\] \(entry 1\): .* rescale it"):
        encode({"hessian": np.array([1.0, 1e38])}, addends=3)
    with pytest.raises(LayoutError, match=r"result\['mean'\] holds NaN or infinity"):
        encode({"mean": float("nan")}, addends=2)


def test_layouts_keep_kinds_shapes_and_canonical_key_order():
    value = {"b": [1, 2.5, True], "a": (np.arange(6).reshape(2, 3), np.float64(0.25)),
             ("x", "y"): {"n": np.int64(3), "v": np.array([[0.5]])}}
    flat = flatten(value)
    back = unflatten(flat.layout, flat.floats, flat.ints.tolist())
    assert back["b"] == [1, 2.5, 1] and isinstance(back["b"][0], int) and isinstance(back["b"][1], float)
    assert back["a"][0].dtype == np.int64 and back["a"][0].shape == (2, 3) and (back["a"][0] == value["a"][0]).all()
    assert isinstance(back["a"][1], np.float64) and isinstance(back[("x", "y")]["n"], np.int64)
    reordered = {("x", "y"): value[("x", "y")], "a": value["a"], "b": value["b"]}
    assert flatten(reordered).layout == flat.layout  # insertion order does not matter


@pytest.mark.parametrize("bad, where", [
    ({"label": "female"}, r"result\['label'\] is a str"),
    ({"x": None}, r"result\['x'\] is a NoneType"),
    ([np.array(["a"])], r"result\[0\] is a numpy array of dtype <U1"),
    ({"n": 2**70}, r"result\['n'\] is 1180591620717411303424, beyond 64-bit"),
])
def test_anything_but_numbers_is_refused_with_its_path(bad, where):
    with pytest.raises(LayoutError, match=where):
        flatten(bad)


def test_layout_differences_name_the_first_differing_place():
    a = flatten({"counts": {"female": [1, 2], "male": [3, 4]}}).layout
    b = flatten({"counts": {"female": [1, 2], "other": [3, 4]}}).layout
    c = flatten({"counts": {"female": [1, 2, 3], "male": [3, 4]}}).layout
    assert "result['counts'] has keys ['male'] on one node and ['other'] on the other" in difference(a, b)
    assert "result['counts']['female'] has 2 entries on one node and 3 on the other" in difference(a, c)
    assert difference(a, a) is None


def test_pairwise_seeds_agree_and_are_fresh_per_round_and_analysis():
    a, b = KeyPair(), KeyPair()
    seed = a.pair_seed(b.public_bytes, "analysis-1", 1, "a", "b")
    assert seed == b.pair_seed(a.public_bytes, "analysis-1", 1, "b", "a")
    assert seed != a.pair_seed(b.public_bytes, "analysis-1", 2, "a", "b")
    assert seed != a.pair_seed(b.public_bytes, "analysis-2", 1, "a", "b")
    with pytest.raises(KeyAgreementError, match="not 32 raw bytes"):
        a.pair_seed(b"short", "analysis-1", 1, "a", "b")
    with pytest.raises(KeyAgreementError, match="unusable public key"):
        a.pair_seed(bytes(32), "analysis-1", 1, "a", "b")  # the zero point: a degenerate shared secret
    stream = mask_stream(seed, 1000)
    assert stream.shape == (1000, 3) and len(np.unique(stream)) == 3000  # no repeats in 192 000 random bits


def test_masks_hide_each_vector_and_cancel_in_the_sum():
    nodes = ["node-a", "node-b", "node-c"]
    keys = {n: KeyPair() for n in nodes}
    values = {n: {"n": i + 1, "g": np.array([0.5 * i, -1.25]), "sides": [i, 2]} for i, n in enumerate(nodes)}
    masked = []
    for node in nodes:
        layout, vector = encode(values[node], addends=3)
        seeds = {p: keys[node].pair_seed(keys[p].public_bytes, "an", 4, node, p) for p in nodes if p != node}
        masked.append(apply_masks(vector, node, seeds))
        assert (fixed_point.decode_floats(masked[-1]) != fixed_point.decode_floats(vector)).all()
        assert np.abs(fixed_point.decode_floats(masked[-1])).min() > 1e30  # uniform in the ring: huge numbers
    summed = decode(layout, total(masked))
    assert summed["n"] == 6 and summed["sides"] == [3, 6] and (summed["g"] == [1.5, -3.75]).all()


def test_the_round_input_digest_is_canonical_across_processes():
    value = {"coef": np.array([0.5, -1.0]), "terms": {"age", "bmi", "male"}, ("a", 1): [1, 2.0, None, "x"]}
    reordered = {("a", 1): [1, 2.0, None, "x"], "terms": {"male", "bmi", "age"}, "coef": np.array([0.5, -1.0])}
    assert input_digest(value) == input_digest(reordered)
    assert input_digest(value) != input_digest({**value, "coef": np.array([0.5, -1.0000001])})
    assert input_digest(None) != input_digest(0) != input_digest("0") != input_digest(0.0)
    script = ("import numpy as np; from flame_sdk.secure_sum import input_digest; "
              "print(input_digest({'terms': {'age', 'bmi', 'male', 'smoker'}, 'x': np.arange(3)}).hex())")
    digests = {subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed},
                              capture_output=True, text=True, check=True).stdout for seed in ("1", "2")}
    assert len(digests) == 1  # set order differs with the hash seed; the digest does not
