"""docker/compose.yml against the topology flame-sim builds: services, networks, env, healthchecks, dependencies.

No Docker engine runs here, so the compose file is parsed (and interpolated with compose.env) as compose
would; ``docker compose config`` / ``docker-compose config`` also validates it when either is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from flame_sdk.config import NodeConfig
from flame_sdk.protocol.env import LOCAL_OVERRIDES, PLATFORM_ENV
from flame_sdk.sim.common.keycloak import TokenIssuer
from flame_sdk.sim.run.cli import build_parser
from flame_sdk.sim.run.simulation import SimConfig, Simulation
from flame_sdk.sim.run.topology import (
    S3_KEY_VARS,
    SECRET_VAR,
    Topology,
    compose_topology,
    fhir_services,
    load_topology,
)
from flame_sdk.tokens import token_expiry

pytestmark = pytest.mark.sim

DOCKER = Path(__file__).resolve().parents[2] / "docker"
_VAR = re.compile(r"\$\$|\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose env file (comments and blank lines skipped)."""
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path}: line without '=': {line!r}"
            env[key.strip()] = value.strip()
    return env


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose variable interpolation (``${VAR}``, ``${VAR:-default}``, ``$VAR``, ``$$``); unset is an error."""
    if isinstance(value, dict):
        return {interpolate(k, env): interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1) or match.group(3), match.group(2)
        if name in env:
            return env[name]
        assert default is not None, f"compose.yml uses ${{{name}}} but compose.env does not set it"
        return default

    return _VAR.sub(one, value)


def load_compose() -> dict[str, Any]:
    """compose.yml as compose sees it with ``--env-file docker/compose.env`` (anchors merged, vars filled)."""
    raw = yaml.safe_load((DOCKER / "compose.yml").read_text())
    return interpolate({k: v for k, v in raw.items() if not k.startswith("x-")}, read_env_file(DOCKER / "compose.env"))


def service_networks(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    networks = service.get("networks", {})
    return {n: {} for n in networks} if isinstance(networks, list) else {n: c or {} for n, c in networks.items()}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology(DOCKER / "topology.json")


@pytest.fixture(scope="module")
def env_file() -> dict[str, str]:
    return read_env_file(DOCKER / "compose.env")


def test_topology_is_what_the_simulator_builds(topology):
    """Same seed, same ids: node ids, roles, analysis/project ids, deployment names and data source tokens."""
    assert topology.to_dict() == compose_topology(len(topology.nodes), topology.seed).to_dict()
    with Simulation(SimConfig(nodes=len(topology.nodes), seed=topology.seed)) as sim:
        analysis = sim.create_analysis()
        assert (analysis.analysis_id, analysis.project_id) == (topology.analysis_id, topology.project_id)
        assert [(sim.node(n).spec.name, n, role) for n, role in analysis.roles.items()] == \
            [(n.name, n.node_id, n.role) for n in topology.nodes]
        for node in topology.nodes:
            deployment = analysis.deployments[node.node_id]
            assert deployment.deployment_name == node.deployment_name
            assert deployment.data_source_token == node.data_source_token
            # the same data, moved to external stores (a HAPI server per data node, MinIO buckets)
            plain = [{k: v for k, v in source.items() if k not in ("url", "bucket")} for source in node.data_sources]
            assert plain == sim.node(node.node_id).spec.data_sources


def test_env_file_matches_the_topology_and_its_token_verifies(topology, env_file):
    assert env_file["ANALYSIS_ID"] == topology.analysis_id
    assert env_file["PROJECT_ID"] == topology.project_id
    for node in topology.nodes:
        assert env_file[f"{node.env_prefix}_DATA_SOURCE_TOKEN"] == node.data_source_token
    issuer = TokenIssuer(secret=bytes.fromhex(env_file[SECRET_VAR]))
    issuer.verify(env_file["KEYCLOAK_TOKEN"], topology.analysis_id)
    assert token_expiry(env_file["KEYCLOAK_TOKEN"]) > token_expiry(issuer.issue("x", ttl_seconds=365 * 24 * 3600))


def test_services_are_a_hub_stores_seeder_and_a_node_stack_plus_analysis_per_node(compose, topology):
    expected = ({"hub", "seed", urlsplit(topology.s3_endpoint).hostname} | set(fhir_services(topology))
                | {n.name for n in topology.nodes} | {f"analysis-{n.name}" for n in topology.nodes})
    assert set(compose["services"]) == expected
    assert urlsplit(topology.hub_url).hostname == "hub"
    assert sorted(fhir_services(topology).values()) == [n.name for n in topology.nodes if n.data_sources]


def test_networks_isolate_each_analysis_with_its_node_stack(compose, topology):
    services = compose["services"]
    members: dict[str, set[str]] = {}
    for name, service in services.items():
        for network in service_networks(service):
            members.setdefault(network, set()).add(name)
    assert set(compose["networks"]) >= set(members)
    stacks = {n.name for n in topology.nodes}
    stores = {urlsplit(topology.s3_endpoint).hostname} | set(fhir_services(topology))
    assert members["hub"] == {"hub"} | stacks
    assert members["data"] == stacks | stores | {"seed"}
    assert compose["networks"]["data"].get("internal") is True
    for node in topology.nodes:
        analysis = f"analysis-{node.name}"
        assert set(service_networks(services[analysis])) == {node.name}, "an analysis reaches only its node network"
        assert members[node.name] == {node.name, analysis}
        assert compose["networks"][node.name].get("internal") is True
        # the node stack answers as nginx-<DEPLOYMENT_NAME>, the analysis as its deployment name
        gateway_aliases = service_networks(services[node.name])[node.name].get("aliases", [])
        assert urlsplit(node.gateway_url).hostname in gateway_aliases
        assert urlsplit(node.gateway_url).hostname == f"nginx-{node.deployment_name}"
        analysis_aliases = service_networks(services[analysis])[node.name].get("aliases", [])
        assert urlsplit(node.analysis_api_url).hostname in analysis_aliases
        assert urlsplit(node.inbox_url).hostname == node.name  # the hub reaches the stack by service name


def test_each_analysis_gets_exactly_the_platform_env_and_finds_its_gateway(compose, topology):
    for node in topology.nodes:
        env = environment(compose["services"][f"analysis-{node.name}"])
        assert set(env) == set(PLATFORM_ENV), "only what a real node sets; no local overrides in compose"
        assert not set(LOCAL_OVERRIDES) & set(env)
        assert env["DEPLOYMENT_NAME"] == node.deployment_name
        assert env["DATA_SOURCE_TOKEN"] == node.data_source_token
        config = NodeConfig.from_env(env)
        assert config.base_url == node.gateway_url
        assert (config.analysis_id, config.project_id) == (topology.analysis_id, topology.project_id)
        assert urlsplit(node.analysis_api_url).port == config.api_port


def test_commands_serve_the_topology_roles_on_the_topology_ports(compose, topology):
    services = compose["services"]
    parser = build_parser()
    hub = services["hub"]
    args = parser.parse_args(hub["command"])
    assert (args.command, args.role, args.exit_when_finished) == ("serve", "hub", True)
    assert args.port == urlsplit(topology.hub_url).port
    mounts = {v.split(":")[1]: v.split(":")[0] for v in hub["volumes"]}
    assert mounts[args.topology] == "./topology.json" and args.results in mounts
    for node in topology.nodes:
        service = services[node.name]
        args = parser.parse_args(service["command"])
        assert (args.command, args.role, args.node) == ("serve", "node", node.name)
        assert args.port == (urlsplit(node.gateway_url).port or 80)
        assert {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}[args.topology] == "./topology.json"
        assert environment(service)[SECRET_VAR]


def test_healthchecks_and_start_order(compose, topology):
    services = compose["services"]
    hub_check = " ".join(services["hub"]["healthcheck"]["test"])
    assert f":{urlsplit(topology.hub_url).port}/healthz" in hub_check
    for node in topology.nodes:
        stack = services[node.name]
        assert f":{urlsplit(node.gateway_url).port or 80}/healthz" in " ".join(stack["healthcheck"]["test"])
        assert stack["depends_on"] == {"hub": {"condition": "service_healthy"},
                                       "seed": {"condition": "service_completed_successfully"}}
        assert services[f"analysis-{node.name}"]["depends_on"] == {n.name: {"condition": "service_healthy"}
                                                                   for n in topology.nodes}
    stores = {urlsplit(topology.s3_endpoint).hostname} | set(fhir_services(topology))
    assert services["seed"]["depends_on"] == {s: {"condition": "service_started"} for s in stores}


def test_seeder_and_node_stacks_get_the_store_credentials_minio_is_started_with(compose, topology):
    services = compose["services"]
    minio = environment(services[urlsplit(topology.s3_endpoint).hostname])
    keys = [minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]]
    assert all(keys)
    assert f":{urlsplit(topology.s3_endpoint).port}" in " ".join(services["minio"]["command"])
    for name in ["seed"] + [n.name for n in topology.nodes]:
        assert [environment(services[name])[var] for var in S3_KEY_VARS] == keys, name
    args = build_parser().parse_args(services["seed"]["command"])
    assert args.command == "seed"
    assert {v.split(":")[1]: v.split(":")[0] for v in services["seed"]["volumes"]}[args.topology] == "./topology.json"
    for host in fhir_services(topology):
        assert services[host]["image"].startswith("hapiproject/hapi:v"), "a pinned HAPI FHIR release"
        assert services[host]["environment"]["hapi.fhir.fhir_version"] == "R4"
    assert "latest" not in services["minio"]["image"] and ":" in services["minio"]["image"]


def test_images_are_built_from_the_repository_dockerfiles(compose):
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            continue
        assert (DOCKER / build["context"] / build["dockerfile"]).is_file(), name
        for path in (build.get("args") or {}).values():
            if path.endswith(".py") and not (DOCKER / build["context"] / path).is_file():
                pytest.skip(f"{path} is not on this branch yet")


@pytest.mark.parametrize("cli", [["docker", "compose"], ["docker-compose"]])
def test_compose_cli_accepts_the_file(cli):
    if shutil.which(cli[0]) is None or subprocess.run(cli + ["version"], capture_output=True, timeout=30).returncode:
        pytest.skip(f"{' '.join(cli)} is not installed")
    command = cli + ["-f", str(DOCKER / "compose.yml"), "--env-file", str(DOCKER / "compose.env"), "config", "-q"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
