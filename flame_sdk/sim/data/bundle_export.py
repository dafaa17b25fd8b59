"""``flame-sim data``: every data node's default synthetic data written out as files (FHIR Bundles, S3 objects)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flame_sdk.sim.data.data_sources import default_data_sources, parse_data_sources
from flame_sdk.sim.data.synthetic import collection_bundle


def write_bundles(out_dir: Path, nodes: int, seed: int) -> list[Path]:
    """Write every data node's default synthetic data to ``out_dir``; return the files written.

    Layout (node 0 is the aggregator and has no data, as in the simulator); ``flame-sim run --data out_dir``
    serves it back (``flame_sdk.sim.data.node_folders``)::

        out_dir/node-<i>/<source name>/<ResourceType>.json   one FHIR collection Bundle per resource type
        out_dir/node-<i>/<source name>/<key>                 the S3 objects (cohort.csv, signals.npy)
        out_dir/params.json                                  the generator parameters of each node's sources
    """
    written: list[Path] = []
    params_out: dict[str, dict[str, Any]] = {}
    for index in range(1, nodes):
        node_dir = Path(out_dir) / f"node-{index}"
        node_params = params_out.setdefault(node_dir.name, {})
        for source in parse_data_sources(default_data_sources(index, seed)):
            source_dir = node_dir / source.name
            source_dir.mkdir(parents=True, exist_ok=True)
            if source.generator is not None:
                node_params[source.name] = source.generator.to_dict()
            if source.kind == "fhir":
                by_type: dict[str, list[dict[str, Any]]] = {}
                for resource in source.fhir_resources():
                    by_type.setdefault(resource["resourceType"], []).append(resource)
                for rtype, items in by_type.items():
                    path = source_dir / f"{rtype}.json"
                    path.write_text(json.dumps(collection_bundle(items)))
                    written.append(path)
            else:
                for key, body in source.s3_objects().items():
                    path = source_dir / key
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(body)
                    written.append(path)
    params_path = Path(out_dir) / "params.json"
    params_path.write_text(json.dumps(params_out, indent=2))
    written.append(params_path)
    return written
