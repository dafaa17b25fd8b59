"""Pure storage helpers: final-file planning, serialization, tags, local DP statistics."""

from __future__ import annotations

import re

import numpy as np
import pytest

from flame_sdk.sim.common import laplace
from flame_sdk.storage import local_dp
from flame_sdk.storage.final_files import plan_final_files
from flame_sdk.storage.serialization import dump_object, encode_final, load_object
from flame_sdk.storage.tags import check_tag, is_valid_tag

GENERATED = re.compile(r"^result_[0-9a-f]{4}_\d{12}\.(txt|pkl|bin)$")


def names(files):
    return [f.filename for f in files]


def test_single_result_names():
    assert names(plan_final_files(1, "str", False, "out.csv")) == ["out.csv"]
    (only,) = plan_final_files(1, "pickle", False, None)
    assert GENERATED.match(only.filename) and only.filename.endswith(".pkl")
    assert names(plan_final_files(1, ["bytes"], False, ["a.bin"])) == ["a.bin"]


def test_multiple_results_auto_indexed():
    files = plan_final_files(["a", b"b", {"c": 1}], ["str", "bytes", "pickle"], True, "report.txt")
    assert names(files) == ["report_1.txt", "report_2.bin", "report_3.pkl"]
    assert [f.output_type for f in files] == ["str", "bytes", "pickle"]
    assert names(plan_final_files(("x", "y"), "str", True, "table.csv")) == ["table_1.csv", "table_2.csv"]


def test_multiple_results_named_and_generated():
    assert names(plan_final_files([1, 2], "str", True, ["one.txt", "two.txt"])) == ["one.txt", "two.txt"]
    generated = names(plan_final_files([1, 2, 3], "str", True, None))
    assert all(GENERATED.match(n) for n in generated)


@pytest.mark.parametrize("args, message", [
    (([1, 2], "str", True, ["only-one.txt"]), "filename list has 1 entries but there are 2"),
    (([1, 2], ["str"], True, None), "output_type list has 1 entries"),
    ((1, "str", True, None), "needs a list or tuple"),
    (([], "str", True, None), "empty list"),
    ((1, "json", False, None), "output_type 'json' is not supported"),
    ((1, "str", False, "../x.txt"), "not a plain file name"),
    (([1, 2], "str", True, ["a.txt", "a.txt"]), "repeats a name"),
    ((1, ["str", "bytes"], False, None), "output_type list has 2 entries"),
])
def test_bad_plans_rejected(args, message):
    with pytest.raises(ValueError, match=message):
        plan_final_files(*args)


def test_encode_final():
    assert encode_final(3.5, "str") == b"3.5"
    assert encode_final(b"raw", "bytes") == b"raw"
    assert bytes(encode_final(np.arange(3, dtype=np.uint8), "bytes")) == b"\x00\x01\x02"
    assert load_object(encode_final({"a": [1]}, "pickle")) == {"a": [1]}
    with pytest.raises(ValueError, match="bytes-like"):
        encode_final("text", "bytes")
    with pytest.raises(ValueError, match="cannot pickle"):
        dump_object(lambda: None)


@pytest.mark.parametrize("tag", ["a", "ab", "round-1", "x" * 32, "0-0"])
def test_valid_tags(tag):
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "-a", "a-", "Upper", "under_score", "x" * 33, "a b", 7])
def test_invalid_tags(tag):
    assert not is_valid_tag(tag)
    with pytest.raises(ValueError, match="invalid tag"):
        check_tag(tag)


def test_dp_params_checked():
    assert local_dp.check_params({"epsilon": 2, "sensitivity": 0.5}) == (2.0, 0.5)
    for bad in ({"epsilon": 1}, {"epsilon": 0, "sensitivity": 1}, {"epsilon": float("inf"), "sensitivity": 1},
                {"epsilon": True, "sensitivity": 1}, [1, 2]):
        with pytest.raises(ValueError, match="local_dp"):
            local_dp.check_params(bad)


def test_dp_normalize_and_reject():
    assert local_dp.normalize(np.array([[1, 2]], dtype=np.int32)) == [[1.0, 2.0]]
    assert local_dp.normalize({"m": np.float32(1.5), "v": (1, 2)}) == {"m": 1.5, "v": [1.0, 2.0]}
    for bad, message in ((float("nan"), "finite"), ([1, float("inf")], r"result\[1\]"), ("1", "str"),
                         (True, "boolean"), ({"a": "x"}, r"result\['a'\]"), ([], "empty"),
                         (np.array(["a"]), "dtype")):
        with pytest.raises(ValueError, match=message):
            local_dp.normalize(bad)


def test_dp_wire_round_trip():
    for value in (1.25, [1.0, [2.0]], {"a": 1.0}):
        assert laplace.decode(local_dp.encode(value)) == value
    assert laplace.decode(b" 42 ") == 42.0
    with pytest.raises(ValueError, match="must contain a number"):
        laplace.decode(b"forty-two")


def test_laplace_noise_scale_statistics():
    """Over many seeded draws the noise has mean 0, E|X| = b and Var = 2 b^2 with b = sensitivity / epsilon."""
    rng = np.random.default_rng(1234)
    epsilon, sensitivity, draws = 0.5, 2.0, 20000
    scale = sensitivity / epsilon
    noisy = np.array(laplace.add_laplace_noise([10.0] * draws, epsilon, sensitivity, rng))
    noise = noisy - 10.0
    assert abs(noise.mean()) < 5 * scale * np.sqrt(2 / draws)
    assert abs(np.abs(noise).mean() - scale) < 0.05 * scale
    assert abs(noise.var() - 2 * scale**2) < 0.1 * 2 * scale**2
    scalar = laplace.add_laplace_noise(3.0, epsilon, sensitivity, np.random.default_rng(1))
    assert scalar != 3.0 and isinstance(scalar, float)
    nested = laplace.add_laplace_noise({"a": [1.0, 2.0]}, epsilon, sensitivity, np.random.default_rng(1))
    assert set(nested) == {"a"} and len(nested["a"]) == 2 and nested["a"] != [1.0, 2.0]
