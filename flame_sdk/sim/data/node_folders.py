"""``flame-sim run --data DIR``: one folder per data node; its files become that node's data sources.

Layout (``flame-sim data --out DIR`` writes the same, so generate, edit, run is a round trip)::

    DIR/<node folder>/        one per data node, given to node-1, node-2, ... in sorted name order

Inside a node folder:

* files directly in it are the S3 objects of a source named after the folder (keys: the file names); the FHIR
  files among them (``*.json`` holding a Bundle or a resource, ``*.ndjson``) are also loaded into a FHIR server
  named ``<folder>-fhir``;
* each subfolder is one source named after it: a FHIR server when it holds FHIR files (then every file in it must
  be one), else an S3 bucket with every file below it (keys relative to the subfolder, ``/``-separated).

Names starting with ``.`` are skipped. Anything else that cannot be served is an error naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def node_folders(data_dir: Path) -> list[Path]:
    """The data node folders of ``data_dir``, in the order they are given to node-1, node-2, ..."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"--data {data_dir}: no such folder; give a folder with one subfolder per data node "
                                f"(`flame-sim data --out {data_dir}` writes an example)")
    folders = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"--data {data_dir} has no node folders; put each data node's files in its own subfolder "
                         f"(e.g. {data_dir}/node1/data.csv)")
    return folders


def load_node_data(data_dir: Path) -> list[list[dict[str, Any]]]:
    """The data source specs (``flame_sdk.sim.data.data_sources``) of each node folder, in node order."""
    return [_node_sources(folder) for folder in node_folders(data_dir)]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _node_sources(folder: Path) -> list[dict[str, Any]]:
    sources: list[dict[str, Any]] = []
    direct = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
    if direct:
        sources.append({"kind": "s3", "name": folder.name, "objects": {p.name: p.read_bytes() for p in direct}})
        resources = [r for p in direct for r in _fhir_resources(p, strict=False)]
        if resources:
            sources.append({"kind": "fhir", "name": f"{folder.name}-fhir", "resources": resources})
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _files(sub)
        if not files:
            continue
        if any(p.suffix == ".ndjson" or _fhir_resources(p, strict=False) for p in files):
            sources.append({"kind": "fhir", "name": sub.name,
                            "resources": [r for p in files for r in _fhir_resources(p, strict=True)]})
        else:
            sources.append({"kind": "s3", "name": sub.name,
                            "objects": {p.relative_to(sub).as_posix(): p.read_bytes() for p in files}})
    if not sources:
        raise ValueError(f"data node folder {folder} holds no files")
    return sources


def _fhir_resources(path: Path, strict: bool) -> list[dict[str, Any]]:
    """The FHIR resources (or Bundles) in a ``.json`` / ``.ndjson`` file; [] for other files unless ``strict``."""
    problem = None
    if path.suffix == ".ndjson":
        items = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except ValueError as exc:
                    if not strict:
                        return []
                    raise ValueError(f"{path}, line {number}: not JSON ({exc})") from None
        if all(isinstance(i, dict) and "resourceType" in i for i in items):
            return items
        problem = "every line of an .ndjson file must be a FHIR resource with a resourceType"
    elif path.suffix == ".json":
        try:
            item = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            if not strict:
                return []
            raise ValueError(f"{path}: not JSON ({exc})") from None
        if isinstance(item, dict) and "resourceType" in item:
            return [item]
        problem = "a FHIR .json file must hold a Bundle or a resource (an object with a resourceType)"
    else:
        problem = "a FHIR source folder holds only .json (Bundle or resource) and .ndjson files"
    if strict:
        raise ValueError(f"{path}: {problem}; move other files to an S3 folder")
    return []
