"""Pure storage helpers: final-file planning, serialization, tags, local DP statistics."""

from __future__ import annotations

import re

import numpy as np
import pytest

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


def test_dp_takes_single_finite_numbers_only():
    assert local_dp.check_number(3) == 3.0 and local_dp.check_number(np.float32(1.5)) == 1.5
    assert local_dp.check_number(np.array(2.0)) == 2.0
    for bad, message in ((float("nan"), "finite"), ([1.0, 2.0], "single number.*multiple_results=True"),
                         ("1", "str"), (True, "bool"), ({"a": 1.0}, "dict"), (np.array([1.0]), "ndarray")):
        with pytest.raises(ValueError, match=message):
            local_dp.check_number(bad)


def test_dp_file_is_what_the_service_parses():
    for value in (1.25, 1e-300, 123456789.0):
        assert float(local_dp.encode(value)) == value  # the service reads the file with float(...)


def test_local_names_sort_in_save_order():
    from flame_sdk.clients.storage import local_filename, save_order_key

    names = [local_filename() for _ in range(50)]
    assert sorted(names, key=save_order_key) == names
    assert save_order_key("upload.bin") == (0, 0) < save_order_key(names[0])


def test_parts_keep_buffers_out_of_band_and_rebuild_them_in_place():
    import pickle

    import pandas as pd

    from flame_sdk.storage.serialization import PART_ALIGNMENT, dump_parts, is_parts, load_parts, parts_size

    weights = np.arange(1000, dtype=np.float64)
    data = {"weights": weights, "frame": pd.DataFrame({"a": np.arange(50), "b": np.linspace(0, 1, 50)}),
            "meta": {"round": 3, "bytes": b"x" * 100}}
    pieces = dump_parts(data)
    assert any(np.shares_memory(np.frombuffer(piece, dtype=np.uint8), weights) for piece in pieces[1:]
               if isinstance(piece, memoryview))  # sent from the array's own memory
    payload = bytearray(b"".join(bytes(memoryview(piece).cast("B")) for piece in pieces))
    assert len(payload) == parts_size(pieces) and is_parts(payload) and not is_parts(dump_object(data))
    got = load_parts(payload)
    assert np.array_equal(got["weights"], weights) and got["frame"].equals(data["frame"]) and got["meta"] == data["meta"]
    assert np.shares_memory(got["weights"], np.frombuffer(payload, dtype=np.uint8))  # a view, not a copy
    assert got["weights"].ctypes.data % 16 == 0 and PART_ALIGNMENT % 16 == 0
    for broken in (payload[:-1], payload + b"\0", b"FLP5" + bytes(3)):
        with pytest.raises(pickle.UnpicklingError):
            load_parts(bytearray(broken))
