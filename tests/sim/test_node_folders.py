"""``flame-sim run --data DIR``: which files of a node folder become which data sources; ``flame-sim data --out``
writes the same layout, so generate, edit, run is a round trip."""

from __future__ import annotations

import json

import pytest

from flame_sdk.sim.data.bundle_export import write_bundles
from flame_sdk.sim.data.data_sources import default_data_sources, parse_data_sources
from flame_sdk.sim.data.node_folders import load_node_data

PATIENT = {"resourceType": "Patient", "id": "p1"}


def test_flat_files_are_s3_objects_and_fhir_files_are_also_loaded(tmp_path):
    node = tmp_path / "site-b"
    node.mkdir()
    (node / "data.csv").write_bytes(b"a\n1\n")
    (node / "bundle.json").write_text(json.dumps({"resourceType": "Bundle", "entry": [{"resource": PATIENT}]}))
    (node / "other.json").write_text('{"not": "fhir"}')
    (node / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "site-a").mkdir()
    (tmp_path / "site-a" / "x.bin").write_bytes(b"\x00")
    (tmp_path / "README.txt").write_text("files next to the node folders are not data")
    first, second = load_node_data(tmp_path)  # sorted: site-a is node-1
    assert first == [{"kind": "s3", "name": "site-a", "objects": {"x.bin": b"\x00"}}]
    s3, fhir = parse_data_sources(second)
    assert sorted(s3.s3_objects()) == ["bundle.json", "data.csv", "other.json"]
    assert fhir.name == "site-b-fhir" and fhir.fhir_resources() == [PATIENT]


def test_subfolders_are_sources_named_after_them(tmp_path):
    node = tmp_path / "n1"
    (node / "store" / "nested").mkdir(parents=True)
    (node / "records").mkdir()
    (node / "store" / "nested" / "k.csv").write_bytes(b"k")
    (node / "records" / "p.ndjson").write_text(json.dumps(PATIENT) + "\n\n" + json.dumps({**PATIENT, "id": "p2"}))
    ((fhir, s3),) = [parse_data_sources(specs) for specs in load_node_data(tmp_path)]
    assert (fhir.kind, fhir.name, [r["id"] for r in fhir.fhir_resources()]) == ("fhir", "records", ["p1", "p2"])
    assert (s3.kind, s3.name, s3.s3_objects()) == ("s3", "store", {"nested/k.csv": b"k"})


def test_flame_sim_data_output_is_served_back_as_the_default_data(tmp_path):
    write_bundles(tmp_path, nodes=3, seed=4)
    for index, specs in enumerate(load_node_data(tmp_path), start=1):
        served = {s.name: s for s in parse_data_sources(specs)}
        default = {s.name: s for s in parse_data_sources(default_data_sources(index, 4))}
        assert served.keys() == default.keys()
        for name, source in default.items():
            if source.kind == "fhir":
                key = lambda r: (r["resourceType"], r["id"])  # noqa: E731
                assert sorted(map(key, served[name].fhir_resources())) == sorted(map(key, source.fhir_resources()))
            else:
                assert served[name].s3_objects() == source.s3_objects()


@pytest.mark.parametrize(("layout", "message"), [
    ({}, "has no node folders"),
    ({"n1/fhir/a.json": json.dumps(PATIENT), "n1/fhir/notes.txt": "x"}, "notes.txt: a FHIR source folder holds only"),
    ({"n1/fhir/a.ndjson": json.dumps(PATIENT) + "\n{broken"}, "a.ndjson, line 2: not JSON"),
    ({"bad name/a.csv": "x"}, "'name' must be letters"),
])
def test_unusable_folders_are_refused_naming_the_file(tmp_path, layout, message):
    for relative, text in layout.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    with pytest.raises(ValueError, match=message):
        for specs in load_node_data(tmp_path):
            parse_data_sources(specs)


def test_a_missing_data_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="flame-sim data --out"):
        load_node_data(tmp_path / "nope")
