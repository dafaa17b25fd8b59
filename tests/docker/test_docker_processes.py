"""The compose services as local processes: the same commands, on loopback instead of container names.

The seeder, hub and node stacks run as ``flame-sim`` subprocesses with exactly the compose ``command`` (only
the topology path, listen host/port and results folder differ) and the compose environment; HAPI FHIR and
MinIO are replaced by the stand-ins of ``test_docker_seed`` (a FHIR server paging like HAPI, moto's S3
server). The analyses are FlameCoreSDK objects built from the compose environment of each analysis
container plus the loopback overrides (gateway base URL and API host/port, because three "containers"
share one host here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from flame_sdk import FlameCoreSDK
from flame_sdk.errors import AnalysisError
from flame_sdk.protocol.env import API_HOST as ENV_API_HOST
from flame_sdk.protocol.env import API_PORT as ENV_API_PORT
from flame_sdk.protocol.env import NODE_BASE_URL as ENV_NODE_BASE_URL
from flame_sdk.runtime import EventLoopThread
from flame_sdk.sim.common.ports import port_for_another_process
from flame_sdk.sim.run.simulation import SimConfig, Simulation
from flame_sdk.sim.run.topology import Topology, fhir_services, load_topology
from flame_sdk.sim.services.s3_server import S3Endpoint
from tests.docker.test_docker_compose import DOCKER, environment, load_compose
from tests.docker.test_docker_images import entrypoint_command
from tests.docker.test_docker_seed import HapiStandIn
from tests.waiting import wait_until

pytestmark = pytest.mark.sim

ROOT = DOCKER.parent
#: ``flame-sim`` (the sim image's ENTRYPOINT) is the console script for flame_sdk.sim.run.cli:main.
FLAME_SIM = [sys.executable, "-m", "flame_sdk.sim.run.cli"]
#: Seconds a service process gets to answer its healthcheck (a few when the machine is idle).
START_LIMIT = 90.0


def loopback(topology: Topology, fhir: dict[str, str], s3_url: str) -> Topology:
    """The same topology with every address on 127.0.0.1 (ports the service processes bind later, outside the
    ephemeral range), the stand-in stores' URLs."""
    def url() -> str:
        return f"http://127.0.0.1:{port_for_another_process()}"

    def local(source: dict) -> dict:
        return {**source, "url": fhir[source["url"]]} if source.get("url") else source

    nodes = [replace(n, inbox_url=url(), gateway_url=url(), analysis_api_url=url(),
                     data_sources=[local(s) for s in n.data_sources]) for n in topology.nodes]
    return replace(topology, hub_url=url(), nodes=nodes, s3_endpoint=s3_url)


def local_command(command: list[str], **values: str) -> list[str]:
    """The compose command with the given option values replaced (``results`` -> ``--results``)."""
    command = list(command)
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        command[command.index(flag) + 1] = value
    return FLAME_SIM + command


def compose_healthcheck(service: dict, port: int) -> list[str]:
    """The service's compose healthcheck, run with this interpreter against the local port."""
    test = service["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    return [sys.executable] + [part.replace(f"127.0.0.1:{_port_in(test)}", f"127.0.0.1:{port}") for part in test[2:]]


def _port_in(test: list[str]) -> int:
    return int(test[-1].split("127.0.0.1:")[1].split("/")[0])


def wait_healthy(command: list[str], process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_LIMIT
    while subprocess.run(command, capture_output=True, timeout=30).returncode != 0:
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"not healthy after {START_LIMIT} s:\n{log.read_text()}"
        time.sleep(0.2)


class Stack:
    """Hub and node stack processes started from the compose commands."""

    def __init__(self, tmp: Path, fhir: dict[str, str], s3_url: str) -> None:
        self.compose = load_compose()
        self.topology = loopback(load_topology(DOCKER / "topology.json"), fhir, s3_url)
        self.topology_path = tmp / "topology.json"
        self.topology_path.write_text(json.dumps(self.topology.to_dict()))
        self.results = tmp / "results"
        self.tmp = tmp
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **env}
        process = subprocess.Popen(command, env=full_env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=self.tmp)
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def start_all(self, failure_grace: str = "15") -> None:
        services = self.compose["services"]
        seeder = self.start("seed", local_command(services["seed"]["command"], topology=str(self.topology_path)),
                            environment(services["seed"]))
        assert seeder.wait(120) == 0, self.log("seed")
        hub_port = urlsplit(self.topology.hub_url).port
        hub = self.start("hub", local_command(services["hub"]["command"], topology=str(self.topology_path),
                                              host="127.0.0.1", port=str(hub_port), results=str(self.results),
                                              failure_grace=failure_grace),
                         environment(services["hub"]))
        wait_healthy(compose_healthcheck(services["hub"], hub_port), hub, self.tmp / "hub.log")
        for node in self.topology.nodes:
            service = services[node.name]
            port = urlsplit(node.gateway_url).port
            process = self.start(node.name, local_command(service["command"], topology=str(self.topology_path),
                                                          host="127.0.0.1", port=str(port)), environment(service))
            wait_healthy(compose_healthcheck(service, port), process, self.tmp / f"{node.name}.log")

    def analysis_env(self, node_name: str) -> dict[str, str]:
        node = self.topology.node(node_name)
        env = environment(self.compose["services"][f"analysis-{node_name}"])
        env.update({ENV_NODE_BASE_URL: node.gateway_url, ENV_API_HOST: "127.0.0.1",
                    ENV_API_PORT: str(urlsplit(node.analysis_api_url).port)})
        return env

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.fixture
def stores() -> Iterator[tuple[dict[str, str], str]]:
    """Stand-ins for each data node's HAPI FHIR server and for MinIO: ({compose FHIR URL: local URL}, S3 URL)."""
    loop = EventLoopThread("fhir-stand-ins")
    topology = load_topology(DOCKER / "topology.json")
    servers = {host: HapiStandIn(loop).start() for host in fhir_services(topology)}
    s3 = S3Endpoint().start()
    try:
        yield ({source["url"]: servers[urlsplit(source["url"]).hostname].base
                for node in topology.nodes for source in node.data_sources if source.get("url")}, s3.url)
    finally:
        for server in servers.values():
            server.stop()
        loop.stop()
        s3.stop()


@pytest.fixture
def stack(tmp_path: Path, stores) -> Iterator[Stack]:
    """Seeder, hub and node stacks as processes, started with the compose commands."""
    assert entrypoint_command(DOCKER / "Dockerfile.sim", "0") == ["flame-sim"]
    processes = Stack(tmp_path, *stores)
    try:
        processes.start_all()
        yield processes
    finally:
        processes.stop()


QUERIES = ["Patient?_summary=count", "Patient?_count=40", "Observation?code=8480-6&_count=100"]


def embedded_answers(topology: Topology) -> dict[str, tuple[list, list]]:
    """What each data node's analysis reads from the in-process simulator (embedded FHIR store and moto)."""
    answers = {}
    with Simulation(SimConfig(nodes=len(topology.nodes), seed=topology.seed)) as sim:
        analysis = sim.create_analysis()
        for node_id in analysis.data_node_ids:
            sdk = FlameCoreSDK(env=analysis.env(node_id), silent=True)
            try:
                answers[sim.node(node_id).spec.name] = (sdk.get_fhir_data(QUERIES), sdk.get_s3_data(["cohort.csv"]))
            finally:
                sdk.close()
    return answers


def same_fhir(a: list[dict], b: list[dict]) -> None:
    """Same totals and resource ids per query and source (page links and Bundle ids differ)."""
    assert len(a) == len(b)
    for first, second in zip(a, b, strict=True):
        for query in QUERIES:
            assert first[query]["total"] == second[query]["total"], query
            assert sorted(e["resource"]["id"] for e in first[query].get("entry", [])) == \
                sorted(e["resource"]["id"] for e in second[query].get("entry", [])), query


@pytest.mark.slow
def test_compose_services_as_processes_run_an_analysis_to_its_final_result(stack):
    topology = stack.topology
    names = [n.name for n in topology.nodes]
    with ThreadPoolExecutor(len(names)) as pool:
        sdks = dict(zip(names, pool.map(lambda n: FlameCoreSDK(env=stack.analysis_env(n), silent=True), names), strict=True))
    try:
        aggregator, *analyzers = names
        ids = {n: topology.node(n).node_id for n in names}
        assert sdks[aggregator].get_role() == "aggregator"
        assert all(sdks[n].get_role() == "default" and sdks[n].get_id() == ids[n] for n in analyzers)
        assert sorted(sdks[analyzers[0]].get_participant_ids()) == sorted(ids[n] for n in names if n != analyzers[0])

        # data: the seeded external stores answer through each node's Kong routes as the embedded ones do
        expected = embedded_answers(topology)
        for n in analyzers:
            fhir, s3 = sdks[n].get_fhir_data(QUERIES), sdks[n].get_s3_data(["cohort.csv"])
            same_fhir(fhir, expected[n][0])
            assert s3 == expected[n][1]

        # messages: each analyzer -> aggregator through node stacks and the hub, and a reply back
        for n in analyzers:
            assert sdks[n].send_message([ids[aggregator]], "partial", {"from": n}, timeout=20) == ([ids[aggregator]], [])
        received = sdks[aggregator].await_messages([ids[n] for n in analyzers], "partial", timeout=20)
        assert {m[0].body["from"] for m in received.values()} == set(analyzers)
        sdks[aggregator].send_message([ids[n] for n in analyzers], "total", {"count": 2}, timeout=20)
        for n in analyzers:
            assert sdks[n].await_messages([ids[aggregator]], "total", timeout=20)[ids[aggregator]][0].body["count"] == 2

        # status polling: every node stack's PO reported the analysis as executing to the hub
        wait_until(lambda: all(f"{n} executing" in stack.log("hub") for n in names), "executing on every node")

        # final result, finish, and the hub's own exit once every node reported executed
        sdks[aggregator].submit_final_result("mean,count\n4.5,2\n", output_type="str")
        assert sdks[aggregator].analysis_finished() is True
        assert all(sdks[n].wait_until_reported(timeout=60) for n in names)
        hub = stack.processes["hub"]
        hub.wait(60)
        log = stack.log("hub")
        assert hub.returncode == 0, log
        assert all(f"{n} executed 100%" in log for n in names), log
        files = list((stack.results / topology.analysis_id).iterdir())
        assert len(files) == 1 and files[0].read_text() == "mean,count\n4.5,2\n"
    finally:
        for sdk in sdks.values():
            sdk.close()
    # node stacks end cleanly on SIGTERM, as on `docker compose down`
    for name in names:
        stack.processes[name].send_signal(signal.SIGTERM)
        assert stack.processes[name].wait(15) == 0, stack.log(name)


@pytest.mark.slow
def test_the_hub_exit_code_names_a_failed_node_and_its_error(tmp_path, stores):
    """One node fails, the others never end: after the failure grace the hub exits 1 naming them."""
    stack = Stack(tmp_path, *stores)
    sdks: list[FlameCoreSDK] = []
    try:
        stack.start_all(failure_grace="1")
        names = [n.name for n in stack.topology.nodes]
        with ThreadPoolExecutor(len(names)) as pool:
            sdks = list(pool.map(lambda n: FlameCoreSDK(env=stack.analysis_env(n), silent=True), names))
        # the verdict comes 1 s after the failure: the others must be seen executing by then (their POs report it)
        wait_until(lambda: all(f"{n} executing" in stack.log("hub") for n in names), "executing on every node")
        with pytest.raises(AnalysisError, match="division went wrong"):
            sdks[2].flame_log("division went wrong", log_type="error")
        assert stack.processes["hub"].wait(60) == 1
        log = stack.log("hub")
        assert "FAILED: node-2 ended failed: division went wrong" in log
        assert "FAILED: node-0 is still executing" in log and "FAILED: node-1 is still executing" in log
    finally:
        for sdk in sdks:
            sdk.close()
        stack.stop()


@pytest.mark.slow
def test_the_compose_analysis_containers_as_processes_run_the_sample_algorithm(stack):
    """Each analysis container's entrypoint (``python analysis.py`` with the compose build's ANALYSIS_FILE)."""
    dockerfile = DOCKER / "Dockerfile.analysis"
    assert entrypoint_command(dockerfile, "analysis") == ["python", "analysis.py"]
    processes = {}
    for node in stack.topology.nodes:
        service = stack.compose["services"][f"analysis-{node.name}"]
        algorithm = ROOT / service["build"]["args"]["ANALYSIS_FILE"]
        if not algorithm.is_file():
            pytest.skip(f"{algorithm.relative_to(ROOT)} is not on this branch yet")
        workdir = stack.tmp / f"analysis-{node.name}"  # the image's WORKDIR, with the file copied in
        workdir.mkdir()
        (workdir / "analysis.py").write_bytes(algorithm.read_bytes())
        log = stack.tmp / f"analysis-{node.name}.log"
        processes[node.name] = (subprocess.Popen(
            [sys.executable, "analysis.py"], cwd=workdir, stdout=log.open("w"), stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **stack.analysis_env(node.name)}), log)
    try:
        for name, (process, log) in processes.items():
            assert process.wait(180) == 0, f"{name}:\n{log.read_text()}"
        hub = stack.processes["hub"]
        assert hub.wait(30) == 0, stack.log("hub")
    finally:
        for process, _ in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(5)
    files = list((stack.results / stack.topology.analysis_id).iterdir())
    assert len(files) == 1
    header = files[0].read_text().splitlines()[0]
    assert header.startswith("loinc,name,unit,sex,age_band,n,mean"), header


def test_a_node_stack_without_the_token_secret_explains_the_fix(tmp_path):
    topology_path = tmp_path / "topology.json"
    topology_path.write_text((DOCKER / "topology.json").read_text())
    command = local_command(load_compose()["services"]["node-1"]["command"], topology=str(topology_path))
    env = {k: v for k, v in os.environ.items() if k != "FLAME_SIM_TOKEN_SECRET"}
    result = subprocess.run(command, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "FLAME_SIM_TOKEN_SECRET is not set" in result.stderr


def test_serving_an_unknown_node_names_the_known_ones(tmp_path):
    topology_path = tmp_path / "topology.json"
    topology_path.write_text((DOCKER / "topology.json").read_text())
    result = subprocess.run(FLAME_SIM + ["serve", "node", "--topology", str(topology_path), "--node", "node-9"],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no node 'node-9'" in result.stderr and "node-0" in result.stderr
