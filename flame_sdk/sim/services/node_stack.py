"""One simulated node: key pair, hub client, node services, and a gateway per analysis deployment."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flame_sdk.sim.common.faults import FaultInjector, FaultPlan
from flame_sdk.sim.common.keycloak import TokenIssuer
from flame_sdk.sim.common.platform_model import PEER_HEADER, Deployment, NodeSpec
from flame_sdk.sim.common.web import fixed_json
from flame_sdk.sim.services.broker_service import BrokerService
from flame_sdk.sim.services.data_service import DataService
from flame_sdk.sim.services.gateway import GatewayIngress, build_gateway_app
from flame_sdk.sim.services.hub_link import HttpHubLink, LocalHubLink
from flame_sdk.sim.services.po_lifecycle import PoLimits
from flame_sdk.sim.services.po_service import POService
from flame_sdk.sim.services.result_service import StorageService
from flame_sdk.sim.services.service_interfaces import HubLink, Ingress

if TYPE_CHECKING:
    from flame_sdk.sim.services.hub import Hub

#: Longest wait (seconds) for in-flight requests when a node's servers stop (aiohttp's default is 60 s, also spent
#: on a connection accepted just as the server stopped listening, whose handler waits for a first request).
SHUTDOWN_TIMEOUT = 5.0


class SimNode:
    """Node-level state and services. Runs on the simulator's event loop."""

    def __init__(self, spec: NodeSpec, seed: int, hub: str | Hub, state_dir: Path, tokens: TokenIssuer,
                 host: str = "127.0.0.1", s3_endpoint: Any = None, status_interval: float = 0.5,
                 po_limits: PoLimits | None = None, faults: FaultPlan | None = None) -> None:
        """``hub``: the hub object when it runs in this process (called directly), else its URL."""
        self.spec = spec
        self.node_id = spec.node_id
        self.seed = seed
        self._hub_target = hub
        self.state_dir = state_dir
        self.tokens = tokens
        self.host = host
        self.s3_endpoint = s3_endpoint
        self.status_interval = status_interval
        self.fault_plan = faults or FaultPlan()
        #: The fault injector of each deployment's gateway (only with an active fault plan).
        self.fault_injectors: dict[str, FaultInjector] = {}
        self.private_key = ec.generate_private_key(ec.SECP384R1())
        #: Known to this node's broker and PO only: their requests to the node's gateways carry it.
        self.peer_secret = secrets.token_hex(16)
        self.hub: HubLink = None  # type: ignore[assignment]  # set in start()
        self.broker = BrokerService(self)
        self.po = POService(self, po_limits)
        self.storage = StorageService(self)
        self.data = DataService(self)
        self.deployments: dict[str, Deployment] = {}
        self._runners: list[web.AppRunner] = []
        self._ingresses: dict[str, GatewayIngress] = {}
        self._resolved: dict[str, tuple[Ingress, str]] = {}
        self.inbox_url = ""

    @property
    def peer_headers(self) -> dict[str, str]:
        return {PEER_HEADER: self.peer_secret}

    def ingress(self, url: str) -> tuple[Ingress, str] | None:
        """The gateway of this node that ``url`` names (``http://nginx-<DEPLOYMENT_NAME>[:80]/...``, as the
        cluster's DNS resolves it, or the gateway's own address) and the path and query for it; None for any
        other URL. The node's broker and PO use it in process."""
        if url in self._resolved:
            return self._resolved[url]
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        found: tuple[Ingress, str] | None = None
        for name, deployment in self.deployments.items():
            gateway = urlsplit(deployment.gateway_url) if deployment.gateway_url else None
            named = parts.hostname == f"nginx-{name}" and parts.port in (None, 80)
            own = gateway is not None and (parts.hostname, parts.port) == (gateway.hostname, gateway.port)
            if (named or own) and name in self._ingresses:
                found = self._ingresses[name], target
                break
        if found is not None:  # deployments stay while the node runs, so a found gateway is remembered
            self._resolved[url] = found
        return found

    def public_key_hex(self) -> str:
        pem = self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.hex()

    async def hub_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the hub as this node (``json=``, ``params=``); RuntimeError on an error status."""
        return await self.hub.json(method, path, **kwargs)

    async def _serve(self, app: web.Application, port: int = 0) -> int:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port)
        await site.start()
        self._runners.append(runner)
        bound: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return bound

    async def start(self, inbox_port: int = 0, inbox_url: str | None = None) -> None:
        """Connect to the hub, serve the inbox it delivers messages to (unless it is in this process and hands
        them to the broker directly) and register. ``inbox_url``: the address the hub should use when it differs
        from the listen address (a container name)."""
        await asyncio.to_thread(self.state_dir.mkdir, parents=True, exist_ok=True)
        self.hub = HttpHubLink(self._hub_target, self.node_id) if isinstance(self._hub_target, str) \
            else LocalHubLink(self._hub_target, self.node_id)
        if self.hub.deliver_locally(self.broker.accept):  # the hub in this process hands messages over directly
            self.inbox_url = inbox_url or "in-process"
        else:
            inbox = web.Application(client_max_size=64 * 1024 * 1024)
            inbox.router.add_post("/hub/messages", self.broker.from_hub)
            inbox.router.add_get("/healthz", fixed_json({"status": "ok"}))
            port = await self._serve(inbox, inbox_port)
            self.inbox_url = inbox_url or f"http://{self.host}:{port}"
        await self.hub_json("POST", "/nodes", json={"node_id": self.node_id, "name": self.spec.name,
                                                    "public_key": self.public_key_hex(), "inbox_url": self.inbox_url})
        await self.storage.start()
        await self.data.start()

    async def deploy(self, deployment: Deployment, port: int = 0) -> Deployment:
        """Start the gateway (nginx-<deployment_name>) for one analysis and begin status polling.

        A preset ``deployment.gateway_url`` is kept (the name the gateway is reached by, e.g. in docker)."""
        self.deployments[deployment.deployment_name] = deployment
        faults = None
        if self.fault_plan.active:
            faults = self.fault_injectors[deployment.deployment_name] = self.fault_plan.injector(
                deployment.deployment_name)
        app, self._ingresses[deployment.deployment_name] = build_gateway_app(
            deployment, self.tokens, broker=self.broker, po=self.po, storage=self.storage, data=self.data,
            peer_secret=self.peer_secret, faults=faults)
        port = await self._serve(app, port)
        deployment.gateway_url = deployment.gateway_url or f"http://{self.host}:{port}"
        self.po.watch(deployment)
        return deployment

    async def stop(self) -> None:
        await self.po.stop()
        await self.broker.stop()
        for runner in reversed(self._runners):
            await runner.cleanup()
        await self.data.stop()
        await self.storage.stop()
        if self.hub is not None:
            await self.hub.close()
