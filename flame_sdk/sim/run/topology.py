"""The topology of a simulator split into processes (docker compose): one hub, N node stacks, one analysis.

``docker/topology.json`` is read by ``flame-sim serve hub`` and ``flame-sim serve node`` and checked by the
tests against compose.yml. Its ids are the ones ``Simulation(SimConfig(nodes, seed)).create_analysis()``
builds, so a compose run and an in-process run with the same seed see the same nodes::

    {"seed": 7, "hub_url": "http://hub:8080", "s3_endpoint": "http://minio:9000",
     "analysis_id": "...", "project_id": "...",
     "nodes": [{"name": "node-0", "node_id": "...", "role": "aggregator",
                "inbox_url": "http://node-0:8081",                        # where the hub delivers messages
                "deployment_name": "analysis-<analysis id>-node-0",
                "gateway_url": "http://nginx-analysis-<analysis id>-node-0",  # what the analysis calls
                "analysis_api_url": "http://analysis-<analysis id>-node-0:8000",  # where /analysis/* goes
                "data_source_token": "kong-...", "data_sources": [...]}, ...]}

A data node's sources are the simulator's defaults for its index and seed, stored externally: the FHIR
source on its own HAPI FHIR server (``"url": "http://fhir-node-1:8080/fhir"``) and the S3 source in a bucket
on the shared MinIO (``"bucket": "node1-s3"``), both filled by ``flame-sim seed``. The S3 credentials come
from the environment (``FLAME_SIM_S3_ACCESS_KEY``, ``FLAME_SIM_S3_SECRET_KEY``), never from this file.

Regenerate the docker files (new token secret, same ids) with
``python -m flame_sdk.sim.run.topology --nodes 3 --seed 7 --out docker``.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flame_sdk.protocol import env as names
from flame_sdk.sim.common.keycloak import TokenIssuer
from flame_sdk.sim.common.platform_model import Deployment, NodeSpec
from flame_sdk.sim.run.simulation import SimConfig, build_node_specs

#: Port the hub listens on inside compose.
HUB_PORT = 8080
#: Port of a node stack's hub inbox inside compose (the gateway has port 80, as nginx on a real node).
INBOX_PORT = 8081
#: Port of the embedded analysis API (the real node's analysis service targets it).
ANALYSIS_API_PORT = 8000
#: Validity of the pre-minted analysis token in compose.env (the node's PO refreshes it anyway when short).
COMPOSE_TOKEN_TTL = 10 * 365 * 24 * 3600.0
#: compose.env variable holding the hex secret that signs and verifies analysis tokens.
SECRET_VAR = "FLAME_SIM_TOKEN_SECRET"
#: Environment variables with the access key and secret of the topology's S3 endpoint.
S3_KEY_VARS = ("FLAME_SIM_S3_ACCESS_KEY", "FLAME_SIM_S3_SECRET_KEY")
#: MinIO in compose, and the port of each data node's HAPI FHIR server.
S3_ENDPOINT = "http://minio:9000"
FHIR_PORT = 8080
#: Credentials compose gives MinIO (a local simulation; not a secret worth protecting).
MINIO_USER, MINIO_PASSWORD = "flame-sim", "flame-sim-minio-secret"
ROLES = ("aggregator", "default")
_NODE_KEYS = ("name", "node_id", "role", "inbox_url", "deployment_name", "gateway_url", "analysis_api_url",
              "data_source_token")


class TopologyError(ValueError):
    """The topology file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class TopologyNode:
    """One node stack and the deployment of the analysis on it."""

    name: str
    node_id: str
    role: str
    inbox_url: str
    deployment_name: str
    gateway_url: str
    analysis_api_url: str
    data_source_token: str
    data_sources: list[dict[str, Any]] = field(default_factory=list)

    def spec(self) -> NodeSpec:
        return NodeSpec(name=self.name, node_id=self.node_id, data_sources=list(self.data_sources))

    def deployment(self, topology: Topology, keycloak_token: str) -> Deployment:
        """The deployment this node's gateway serves (gateway URL preset to the advertised one)."""
        return Deployment(analysis_id=topology.analysis_id, project_id=topology.project_id, node_id=self.node_id,
                          role=self.role, deployment_name=self.deployment_name, keycloak_token=keycloak_token,
                          data_source_token=self.data_source_token, analysis_api_url=self.analysis_api_url,
                          gateway_url=self.gateway_url)

    @property
    def env_prefix(self) -> str:
        """Prefix of this node's variables in compose.env (``node-1`` -> ``NODE_1``)."""
        return self.name.upper().replace("-", "_")


@dataclass(frozen=True)
class Topology:
    seed: int
    hub_url: str
    analysis_id: str
    project_id: str
    nodes: list[TopologyNode]
    s3_endpoint: str | None = None

    def node(self, name: str) -> TopologyNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise TopologyError(f"no node {name!r} in the topology; nodes: {[n.name for n in self.nodes]}")

    def participants(self) -> dict[str, str]:
        """{node id: role}, as the hub registers the analysis."""
        return {n.node_id: n.role for n in self.nodes}

    def to_dict(self) -> dict[str, Any]:
        nodes = [{**{k: getattr(n, k) for k in _NODE_KEYS}, "data_sources": n.data_sources} for n in self.nodes]
        extra = {"s3_endpoint": self.s3_endpoint} if self.s3_endpoint else {}
        return {"seed": self.seed, "hub_url": self.hub_url, **extra, "analysis_id": self.analysis_id,
                "project_id": self.project_id, "nodes": nodes}

    @classmethod
    def from_dict(cls, raw: Any, where: str = "topology") -> Topology:
        if not isinstance(raw, dict):
            raise TopologyError(f"{where}: expected a JSON object with seed, hub_url, analysis_id, project_id, nodes")
        missing = [k for k in ("seed", "hub_url", "analysis_id", "project_id", "nodes") if k not in raw]
        if missing:
            raise TopologyError(f"{where}: missing key(s) {missing}")
        if not isinstance(raw["nodes"], list) or len(raw["nodes"]) < 2:
            raise TopologyError(f"{where}: 'nodes' must list at least 2 nodes (1 aggregator + data nodes)")
        nodes = [_parse_node(entry, f"{where}: nodes[{i}]") for i, entry in enumerate(raw["nodes"])]
        topology = cls(seed=int(raw["seed"]), hub_url=_url(raw["hub_url"], f"{where}: hub_url"),
                       analysis_id=str(raw["analysis_id"]), project_id=str(raw["project_id"]), nodes=nodes,
                       s3_endpoint=_url(raw["s3_endpoint"], f"{where}: s3_endpoint") if raw.get("s3_endpoint") else None)
        _check_consistent(topology, where)
        return topology


def _url(value: Any, where: str) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname:
        raise TopologyError(f"{where} must be an http(s) URL with a host, got {value!r}")
    return value.rstrip("/")


def _parse_node(entry: Any, where: str) -> TopologyNode:
    if not isinstance(entry, dict):
        raise TopologyError(f"{where}: expected an object with keys {list(_NODE_KEYS)}")
    missing = [k for k in _NODE_KEYS if not entry.get(k)]
    if missing:
        raise TopologyError(f"{where} ({entry.get('name', '?')}): missing key(s) {missing}")
    if entry["role"] not in ROLES:
        raise TopologyError(f"{where}: role must be one of {ROLES}, got {entry['role']!r}")
    sources = entry.get("data_sources", [])
    if not isinstance(sources, list):
        raise TopologyError(f"{where}: data_sources must be a list of data source specs")
    urls = {k: _url(entry[k], f"{where}: {k}") for k in ("inbox_url", "gateway_url", "analysis_api_url")}
    plain = {k: str(entry[k]) for k in _NODE_KEYS if k not in urls}
    return TopologyNode(**plain, **urls, data_sources=sources)


def _check_consistent(topology: Topology, where: str) -> None:
    aggregators = [n.name for n in topology.nodes if n.role == "aggregator"]
    if len(aggregators) != 1:
        raise TopologyError(f"{where}: exactly one node must have role 'aggregator', found {aggregators}")
    for key in ("name", "node_id", "deployment_name"):
        values = [getattr(n, key) for n in topology.nodes]
        if len(set(values)) != len(values):
            raise TopologyError(f"{where}: every node needs its own {key}, got {values}")


def load_topology(path: Path) -> Topology:
    """Read and validate a topology file; errors name the file and the problem."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise TopologyError(f"topology file {path} does not exist (see docker/topology.json)") from None
    except ValueError as exc:
        raise TopologyError(f"topology file {path} is not valid JSON: {exc}") from None
    return Topology.from_dict(raw, where=str(path))


def compose_topology(nodes: int = 3, seed: int = 7) -> Topology:
    """The docker-compose topology: the ids ``Simulation`` builds for (nodes, seed), compose service names."""
    specs = build_node_specs(SimConfig(nodes=nodes, seed=seed))
    rng = random.Random(seed + 1)  # the same draws, in the same order, as Simulation.create_analysis
    analysis_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    project_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    members = []
    for index, spec in enumerate(specs):
        deployment_name = f"analysis-{analysis_id}-{spec.name}"
        members.append(TopologyNode(
            name=spec.name, node_id=spec.node_id, role="aggregator" if index == 0 else "default",
            inbox_url=f"http://{spec.name}:{INBOX_PORT}", deployment_name=deployment_name,
            gateway_url=f"http://nginx-{deployment_name}",
            analysis_api_url=f"http://{deployment_name}:{ANALYSIS_API_PORT}",
            data_source_token=f"kong-{uuid.UUID(int=rng.getrandbits(128)).hex}",
            data_sources=[_external(source, spec.name) for source in spec.data_sources],
        ))
    return Topology(seed=seed, hub_url=f"http://hub:{HUB_PORT}", analysis_id=analysis_id, project_id=project_id,
                    nodes=members, s3_endpoint=S3_ENDPOINT)


def _external(source: dict[str, Any], node_name: str) -> dict[str, Any]:
    """A default data source moved to the compose stores: the node's HAPI FHIR server, or a MinIO bucket."""
    if source["kind"] == "fhir":
        return {**source, "url": f"http://fhir-{node_name}:{FHIR_PORT}/fhir"}
    return {**source, "bucket": source["name"]}


def fhir_services(topology: Topology) -> dict[str, str]:
    """{compose service name: node name} of the FHIR servers the topology's sources use."""
    return {urlsplit(source["url"]).hostname: node.name for node in topology.nodes
            for source in node.data_sources if source.get("kind") == "fhir" and source.get("url")}


def compose_env(topology: Topology, secret: bytes) -> dict[str, str]:
    """The variables compose.yml interpolates: token secret, analysis ids, tokens per node."""
    token = TokenIssuer(COMPOSE_TOKEN_TTL, secret=secret).issue(topology.analysis_id)
    env = {SECRET_VAR: secret.hex(), names.ANALYSIS_ID: topology.analysis_id, names.PROJECT_ID: topology.project_id,
           names.KEYCLOAK_TOKEN: token}
    env.update({f"{n.env_prefix}_{names.DATA_SOURCE_TOKEN}": n.data_source_token for n in topology.nodes})
    env.update({"MINIO_ROOT_USER": MINIO_USER, "MINIO_ROOT_PASSWORD": MINIO_PASSWORD})
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flame_sdk.sim.run.topology",
                                     description="Write topology.json and compose.env for the docker-compose setup.")
    parser.add_argument("--nodes", type=int, default=3, help="number of nodes including the aggregator (default 3)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the ids (default 7)")
    parser.add_argument("--out", default="docker", help="folder to write into (default ./docker)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    topology = compose_topology(args.nodes, args.seed)
    (out / "topology.json").write_text(json.dumps(topology.to_dict(), indent=2) + "\n")
    env = compose_env(topology, secrets.token_bytes(32))
    header = ("# Generated by `python -m flame_sdk.sim.run.topology`; values must match topology.json.\n"
              "# The token secret only protects this local simulation: never reuse it anywhere else.\n")
    (out / "compose.env").write_text(header + "".join(f"{k}={v}\n" for k, v in env.items()))
    print(f"wrote {out / 'topology.json'} and {out / 'compose.env'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
