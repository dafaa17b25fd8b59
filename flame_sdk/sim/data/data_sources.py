"""Data source specs of a simulated node: which FHIR stores and S3 buckets it links to its projects.

A node's ``NodeSpec.data_sources`` is a list of plain dicts (from the simulation config or a test harness):

FHIR store::

    {"kind": "fhir", "name": "node1-fhir",
     "generator": {"patients": 200, "seed": 7, "id_prefix": "n1", ...},   # CohortParams fields, optional
     "resources": [{"resourceType": "Patient", "id": "a", ...}, ...],     # inline resources, optional
     "page_size": 50}                                                     # default _count, optional

    ``resources`` may also hold FHIR Bundles; their entries' resources are loaded (a resource type and id
    present twice is served once, the last one wins).

S3 bucket::

    {"kind": "s3", "name": "node1-s3",
     "generator": {...CohortParams fields...},             # optional: generated datasets
     "datasets": ["cohort.csv", "signals.npy"],            # which generated datasets (default: both)
     "objects": {"my/key.csv": b"..." or "text"}}          # inline objects, optional

``sources_from_split`` builds these specs from an analyst's data split (``{query: Bundle}`` or
``{key: bytes}``, the shapes get_fhir_data / get_s3_data return for one source).

Common optional keys: ``"id"`` (the Kong service id; by default a UUID derived from node id and name) and
``"projects"`` (the project ids the source is linked to; by default every project deployed on the node, a
simulator shortcut: the hub adapter links a store to one project at a time. An analysis of another project
does not see the source listed, and Kong's acl plugin answers 403 to its key).
``name`` is the Kong service name: letters, digits, ``.``, ``_``, ``~``, ``-``, unique on the node and not a
bare UUID (the hub adapter's rule). A source needs ``generator`` or inline data (or both).

FHIR option ``"server_address"``: the base URL the FHIR server writes into its links (HAPI's
``hapi.fhir.server_address``); by default its address behind Kong (``http://<name>.<node>.sim/fhir``).

External stores (docker compose: HAPI FHIR, MinIO): ``"url"`` (fhir) is the base URL of a FHIR server the
data service proxies to (its links name whatever base it uses), ``"bucket"`` (s3) an existing bucket on the node's S3 endpoint. The data then lives
there (``flame-sim seed`` writes the source's generated and inline data); neither needs other data keys.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from flame_sdk.sim.data.synthetic import (
    CohortParams,
    cohort_csv,
    cohort_resources,
    cohort_signals,
    generate_patients,
)

KINDS = ("fhir", "s3")
GENERATED_DATASETS = {"cohort.csv": cohort_csv, "signals.npy": cohort_signals}
DEFAULT_PAGE_SIZE = 50
_NAME = re.compile(r"^[a-zA-Z0-9._~-]+$")
_KEYS = {"fhir": {"kind", "name", "id", "projects", "generator", "resources", "page_size", "url", "server_address"},
         "s3": {"kind", "name", "id", "projects", "generator", "datasets", "objects", "bucket"}}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass
class DataSourceSpec:
    """One parsed data source spec (see the module docstring for the dict form)."""

    kind: str
    name: str
    id: str | None = None
    generator: CohortParams | None = None
    resources: list[dict[str, Any]] = field(default_factory=list)
    objects: dict[str, bytes] = field(default_factory=dict)
    datasets: tuple[str, ...] = tuple(GENERATED_DATASETS)
    page_size: int = DEFAULT_PAGE_SIZE
    url: str | None = None  # external FHIR server base URL
    server_address: str | None = None  # the base URL a simulated FHIR store writes into its links
    bucket: str | None = None  # existing bucket on the node's S3 endpoint
    projects: tuple[str, ...] | None = None  # linked projects (None: every project deployed on the node)

    def fhir_resources(self) -> list[dict[str, Any]]:
        """Generated resources followed by the inline ones."""
        generated = cohort_resources(self.generator) if self.generator else []
        return generated + self.resources

    def s3_objects(self) -> dict[str, bytes]:
        """Generated datasets plus the inline objects (inline wins on equal keys)."""
        objects: dict[str, bytes] = {}
        if self.generator:
            records = generate_patients(self.generator)
            objects.update({key: GENERATED_DATASETS[key](self.generator, records) for key in self.datasets})
        objects.update(self.objects)
        return objects


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
        return True
    except ValueError:
        return False


def _flatten(resources: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(resources, list):
        raise ValueError(f"{where}: 'resources' must be a list of FHIR resource dicts")
    out: list[dict[str, Any]] = []
    for item in resources:
        if not isinstance(item, dict) or "resourceType" not in item:
            raise ValueError(f"{where}: every resource needs a 'resourceType', got {str(item)[:80]!r}")
        if item["resourceType"] == "Bundle":
            out += _flatten([e["resource"] for e in item.get("entry", []) if "resource" in e], where)
        elif not item.get("id"):
            raise ValueError(f"{where}: {item['resourceType']} resource without 'id'; give every resource an id")
        else:
            out.append(item)
    return out


def parse_data_source(raw: dict[str, Any]) -> DataSourceSpec:
    """Validate one raw spec; errors name the source and the fix."""
    kind, name = raw.get("kind"), raw.get("name")
    where = f"data source {name or raw!r}"
    if kind not in KINDS:
        raise ValueError(f"{where}: 'kind' must be one of {KINDS}, got {kind!r}")
    if not isinstance(name, str) or not _NAME.match(name) or _is_uuid(name):
        raise ValueError(f"{where}: 'name' must be letters, digits, '.', '_', '~' or '-' and not a bare UUID")
    unknown = sorted(set(raw) - _KEYS[kind])
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for kind {kind!r}; accepted: {sorted(_KEYS[kind])}")
    generator = CohortParams.from_dict(raw["generator"]) if raw.get("generator") is not None else None
    spec = DataSourceSpec(kind=kind, name=name, id=raw.get("id"), generator=generator)
    if raw.get("projects") is not None:
        projects = raw["projects"]
        if not isinstance(projects, list) or not all(isinstance(p, str) and p for p in projects):
            raise ValueError(f"{where}: 'projects' must be a list of project ids, got {projects!r}")
        spec.projects = tuple(projects)
    if kind == "fhir":
        unique = {(r["resourceType"], str(r["id"])): r for r in _flatten(raw.get("resources", []), where)}
        spec.resources = list(unique.values())
        spec.page_size = int(raw.get("page_size", DEFAULT_PAGE_SIZE))
        if spec.page_size < 1:
            raise ValueError(f"{where}: 'page_size' must be >= 1")
        if raw.get("url") is not None:
            if not isinstance(raw["url"], str) or not raw["url"].startswith(("http://", "https://")):
                raise ValueError(f"{where}: 'url' must be the http(s) base URL of a FHIR server, got {raw['url']!r}")
            spec.url = raw["url"].rstrip("/")
        if raw.get("server_address") is not None:
            address = raw["server_address"]
            if not isinstance(address, str) or not address.startswith(("http://", "https://")):
                raise ValueError(f"{where}: 'server_address' must be an http(s) base URL, got {address!r}")
            if spec.url is not None:
                raise ValueError(f"{where}: 'server_address' is for simulated stores; a server at 'url' writes its "
                                 f"own links")
            spec.server_address = address.rstrip("/")
        has_data = generator is not None or "resources" in raw or spec.url is not None
    else:
        objects = raw.get("objects", {})
        if not isinstance(objects, dict):
            raise ValueError(f"{where}: 'objects' must map S3 keys to bytes or str")
        spec.objects = {str(k): v.encode() if isinstance(v, str) else bytes(v) for k, v in objects.items()}
        datasets = tuple(raw.get("datasets", GENERATED_DATASETS))
        bad = sorted(set(datasets) - set(GENERATED_DATASETS))
        if bad:
            raise ValueError(f"{where}: unknown generated dataset(s) {bad}; available: {sorted(GENERATED_DATASETS)}")
        spec.datasets = datasets
        if raw.get("bucket") is not None:
            if not isinstance(raw["bucket"], str) or not _BUCKET.match(raw["bucket"]):
                raise ValueError(f"{where}: 'bucket' must be an S3 bucket name (3-63 of a-z, 0-9, '.', '-'), "
                                 f"got {raw['bucket']!r}")
            spec.bucket = raw["bucket"]
        has_data = generator is not None or "objects" in raw or spec.bucket is not None
    if not has_data:
        raise ValueError(f"{where}: give a 'generator' or inline data ('resources' for fhir, 'objects' for s3), "
                         f"or an external store ('url' for fhir, 'bucket' for s3)")
    return spec


def parse_data_sources(raw_specs: list[dict[str, Any]]) -> list[DataSourceSpec]:
    """Validate a node's specs; source names must be unique on the node."""
    specs = [parse_data_source(raw) for raw in raw_specs]
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"data source name(s) {duplicates} used twice on one node; Kong service names are unique")
    return specs


def sources_from_split(split: dict[str, Any], data_type: str, name: str) -> list[dict[str, Any]]:
    """Specs for one node from an analyst's data split, in the shape get_fhir_data / get_s3_data return one
    source: ``{query: Bundle}`` for ``fhir`` (every Bundle's resources are served, duplicates once) or
    ``{key: bytes}`` for ``s3``."""
    if data_type == "fhir":
        return [{"kind": "fhir", "name": name, "resources": list(split.values())}]
    if data_type == "s3":
        return [{"kind": "s3", "name": name, "objects": dict(split)}]
    raise ValueError(f"data_type must be 'fhir' or 's3', got {data_type!r}")


def default_cohort(node_index: int, seed: int) -> CohortParams:
    """Node-specific cohort parameters: sizes and distributions differ from node to node."""
    k = node_index - 1
    return CohortParams(
        patients=150 + 90 * (k % 4),
        seed=seed * 1000 + node_index,
        id_prefix=f"n{node_index}",
        age_mean=48.0 + 6.0 * (k % 3),
        female_share=0.42 + 0.08 * (k % 3),
        bmi_mean=25.5 + 1.5 * (k % 3),
        smoker_share=0.15 + 0.1 * (k % 3),
        questionnaire_share=0.4 + 0.2 * (k % 2),
    )


def default_data_sources(node_index: int, seed: int) -> list[dict[str, Any]]:
    """One FHIR store and one S3 bucket per data node, drawn from the same node-specific cohort."""
    params = default_cohort(node_index, seed).to_dict()
    return [
        {"kind": "fhir", "name": f"node{node_index}-fhir", "generator": dict(params)},
        {"kind": "s3", "name": f"node{node_index}-s3", "generator": dict(params)},
    ]
