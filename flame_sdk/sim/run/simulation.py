"""Run a hub and N node stacks in-process on loopback, and deploy analyses onto them.

    with Simulation(SimConfig(nodes=3, seed=7)) as sim:
        analysis = sim.create_analysis()
        env = analysis.env(analysis.aggregator_id)   # what a node gives the analysis container

Node 0 is the aggregator (no data by default); nodes 1..N-1 are data nodes.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flame_sdk.protocol import env as names
from flame_sdk.protocol.status import AnalysisStatus, is_final
from flame_sdk.runtime import EventLoopThread
from flame_sdk.sim.common.faults import FaultPlan
from flame_sdk.sim.common.keycloak import TokenIssuer
from flame_sdk.sim.common.platform_model import Deployment, NodeSpec
from flame_sdk.sim.common.ports import port_for_another_process
from flame_sdk.sim.services.hub import Hub
from flame_sdk.sim.services.node_stack import SimNode
from flame_sdk.sim.services.po_lifecycle import PoLimits
from flame_sdk.sim.services.po_service import DeploymentRecord


@dataclass
class SimConfig:
    """What to simulate. ``node_data[i]`` replaces the data sources of data node i+1 (inline splits).

    ``status_interval``: seconds between the PO's status loop iterations (the real PO: 10 s); ``po_limits``: how
    long the PO waits for a node's ``/healthz`` before it fails the node.
    """

    nodes: int = 3
    seed: int = 0
    node_data: list[list[dict[str, Any]]] | None = None
    state_dir: Path | None = None
    host: str = "127.0.0.1"
    status_interval: float = 0.5
    token_ttl: float = 3600.0
    extra_env: dict[str, str] = field(default_factory=dict)
    po_limits: PoLimits = field(default_factory=PoLimits)
    #: Probability of a seeded fault on each request through a node gateway (see sim/common/faults.py).
    faults: float = 0.0
    fault_seed: int = 0

    def __post_init__(self) -> None:
        if self.nodes < 2:
            raise ValueError(f"a federated analysis needs at least 2 nodes (1 aggregator + data nodes), got {self.nodes}")
        FaultPlan(self.faults, self.fault_seed)  # checks the rate
        if self.node_data is not None and len(self.node_data) != self.nodes - 1:
            raise ValueError(f"node_data has {len(self.node_data)} entries for {self.nodes - 1} data nodes")


def _seeded_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build_node_specs(config: SimConfig) -> list[NodeSpec]:
    """Deterministic node ids and data sources for a configuration."""
    rng = random.Random(config.seed)
    specs = []
    for index in range(config.nodes):
        if index == 0:
            sources: list[dict[str, Any]] = []
        elif config.node_data is not None:
            sources = config.node_data[index - 1]
        else:
            sources = _default_sources(index, config.seed)
        specs.append(NodeSpec(name=f"node-{index}", node_id=_seeded_uuid(rng), data_sources=sources))
    return specs


def _default_sources(index: int, seed: int) -> list[dict[str, Any]]:
    try:
        from flame_sdk.sim.data.data_sources import default_data_sources
    except ImportError:
        return []
    return default_data_sources(index, seed)


def _needs_s3(specs: list[NodeSpec]) -> bool:
    return any(source.get("kind") == "s3" for spec in specs for source in spec.data_sources)


class SimAnalysis:
    """One analysis deployed on every node of a simulation."""

    def __init__(self, sim: Simulation, analysis_id: str, project_id: str, roles: dict[str, str],
                 deployments: dict[str, Deployment]) -> None:
        self.sim = sim
        self.analysis_id = analysis_id
        self.project_id = project_id
        self.roles = roles
        self.deployments = deployments
        self.aggregator_id = next(n for n, r in roles.items() if r == "aggregator")
        self.node_ids = list(roles)

    @property
    def data_node_ids(self) -> list[str]:
        return [n for n in self.node_ids if n != self.aggregator_id]

    def env(self, node_id: str) -> dict[str, str]:
        """The environment for this node's analysis container (platform variables plus local overrides)."""
        node = self.sim.node(node_id)
        env = self.deployments[node_id].analysis_env()
        env.update({names.STATUS_SYNC_GRACE: "0", names.LOG_PREFIX: node.spec.name})
        env.update(self.sim.config.extra_env)
        return env

    def status(self, node_id: str) -> str:
        status: str = self.sim.hub.analyses[self.analysis_id].statuses[node_id]["status"]
        return status

    def progress(self, node_id: str) -> int:
        progress: int = self.sim.hub.analyses[self.analysis_id].statuses[node_id]["progress"]
        return progress

    def po_status(self, node_id: str) -> AnalysisStatus:
        """The node's status as its PO records it (``started``, ``executing``, then final; never goes back)."""
        return self._po_record(node_id).db_status

    def removed(self, node_id: str) -> AnalysisStatus | None:
        """The final status with which the node's PO removed the deployment, None while it runs."""
        return self._po_record(node_id).removed

    def po_reason(self, node_id: str) -> str | None:
        """Why the PO itself failed the node (no answer, stuck, process gone); None if the node said so."""
        return self._po_record(node_id).reason

    def _po_record(self, node_id: str) -> DeploymentRecord:
        return self.sim.node(node_id).po.records[self.deployments[node_id].deployment_name]

    def on_removed(self, listener: Callable[[str, AnalysisStatus], None]) -> None:
        """Call ``listener(node id, final status)`` (on the simulator's loop) when a node's PO removes it."""
        for node_id, deployment in self.deployments.items():
            def forward(removed: Deployment, status: AnalysisStatus, node_id: str = node_id,
                        name: str = deployment.deployment_name) -> None:
                if removed.deployment_name == name:
                    listener(node_id, status)

            self.sim.node(node_id).po.on_removed.append(forward)

    def process_gone(self, node_id: str, reason: str) -> None:
        """The node's process ended without a final status (simulator extension, see ``POService.pod_terminated``)."""
        node = self.sim.node(node_id)
        self.sim.call_soon(node.po.pod_terminated, self.deployments[node_id].deployment_name, reason)

    def logs(self, node_id: str) -> list[dict[str, Any]]:
        """Log records this node's analysis streamed to its PO (as forwarded to the hub)."""
        return list(self.sim.hub.analyses[self.analysis_id].logs.get(node_id, []))

    def final_results(self) -> list[tuple[str, bytes]]:
        """Final result files on the hub: (filename, content)."""
        from flame_sdk.sim.services.hub_storage import final_results

        return final_results(self.sim.hub, self.analysis_id)

    def wait_finished(self, timeout: float = 120.0) -> dict[str, str]:
        """Block until every node reported a terminal status; return {node id: status}."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = {n: self.status(n) for n in self.node_ids}
            if all(is_final(s) for s in statuses.values()):
                return statuses
            time.sleep(0.05)
        raise TimeoutError(f"analysis {self.analysis_id} did not finish in {timeout} s: "
                           f"{ {n: self.status(n) for n in self.node_ids} }")


class Simulation:
    """Hub + nodes on one background event loop. Use as a context manager or call start()/stop()."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.specs = build_node_specs(self.config)
        self._owns_state = self.config.state_dir is None
        self.state_dir = Path(self.config.state_dir or tempfile.mkdtemp(prefix="flame-sim-"))
        self.tokens = TokenIssuer(self.config.token_ttl)
        self.hub = Hub()
        self.nodes: dict[str, SimNode] = {}
        self.s3_endpoint: Any = None
        self._loop: EventLoopThread | None = None
        self._rng = random.Random(self.config.seed + 1)

    def node(self, node_id_or_name: str) -> SimNode:
        for node in self.nodes.values():
            if node_id_or_name in (node.node_id, node.spec.name):
                return node
        raise KeyError(f"no node {node_id_or_name!r}; nodes: {[n.spec.name for n in self.nodes.values()]}")

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn`` on the simulator loop (from any thread)."""
        assert self._loop is not None, "the simulation is not started"
        self._loop.call_soon(fn, *args)

    def run(self, coro: Any, timeout: float | None = 120) -> Any:
        """Run a coroutine on the simulator loop (from another thread)."""
        assert self._loop is not None, "the simulation is not started"
        return self._loop.run(coro, timeout)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> Simulation:
        self._loop = EventLoopThread("flame-sim")
        try:
            self.run(self._start())
        except BaseException:
            self.stop()
            raise
        return self

    async def _start(self) -> None:
        host = self.config.host
        if _needs_s3(self.specs):
            from flame_sdk.sim.services.s3_server import S3Endpoint

            self.s3_endpoint = S3Endpoint(host=host)
            await asyncio.to_thread(self.s3_endpoint.start)
        await self.hub.start()
        for spec in self.specs:  # the hub is called in process: its hops are ones the SDK never sees
            node = SimNode(spec, self.config.seed, self.hub, self.state_dir / spec.name, self.tokens, host=host,
                           s3_endpoint=self.s3_endpoint, status_interval=self.config.status_interval,
                           po_limits=self.config.po_limits,
                           faults=FaultPlan(self.config.faults, self.config.fault_seed))
            await node.start()
            self.nodes[node.node_id] = node

    def stop(self) -> None:
        """Stop the nodes and the hub, then remove what the simulation wrote (also when stopping failed)."""
        try:
            if self._loop is not None:
                try:
                    self.run(self._stop(), timeout=60)
                finally:
                    self._loop.stop()
                    self._loop = None
        finally:
            if self.s3_endpoint is not None:
                self.s3_endpoint.stop()
                self.s3_endpoint = None
            if self._owns_state:
                shutil.rmtree(self.state_dir, ignore_errors=True)

    async def _stop(self) -> None:
        """Stop every node (one failing does not keep the others running), then the hub; raise the first
        failure."""
        failures: list[Exception] = []
        try:
            for node in self.nodes.values():
                try:
                    await node.stop()
                except Exception as exc:  # noqa: BLE001 - raised below, once the rest is stopped
                    failures.append(exc)
        finally:
            await self.hub.stop()
        if failures:
            raise failures[0]

    def __enter__(self) -> Simulation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- analyses -------------------------------------------------------------------------------------
    def create_analysis(self, project_id: str | None = None, analysis_id: str | None = None,
                        nodes: list[str] | None = None, aggregator: str | None = None) -> SimAnalysis:
        """Register an analysis on the hub and deploy it on the given nodes (default: all)."""
        members = [self.node(n) for n in nodes] if nodes else list(self.nodes.values())
        aggregator_node = self.node(aggregator) if aggregator else members[0]
        analysis_id = analysis_id or _seeded_uuid(self._rng)
        project_id = project_id or _seeded_uuid(self._rng)
        roles = {n.node_id: ("aggregator" if n is aggregator_node else "default") for n in members}
        self.hub.add_analysis(analysis_id, project_id, roles)
        deployments = {}
        for node in members:
            deployment = Deployment(
                analysis_id=analysis_id,
                project_id=project_id,
                node_id=node.node_id,
                role=roles[node.node_id],
                deployment_name=f"analysis-{analysis_id}-{node.spec.name}",
                keycloak_token=self.tokens.issue(analysis_id),
                data_source_token=f"kong-{uuid.UUID(int=self._rng.getrandbits(128)).hex}",
                analysis_api_url=f"http://{self.config.host}:{port_for_another_process(self.config.host)}",
            )
            deployments[node.node_id] = self.run(node.deploy(deployment))
        return SimAnalysis(self, analysis_id, project_id, roles, deployments)
