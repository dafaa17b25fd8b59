"""What the simulated services need from their surroundings, as narrow interfaces.

The node services (broker, PO, result service, data API) are built by ``node_stack.SimNode`` and the hub's
storage routes by ``hub.Hub``; they only see these protocols, so no service imports the module that wires it
(no import cycles) and each can be built around a stand-in in tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from flame_sdk.sim.common.keycloak import TokenIssuer
    from flame_sdk.sim.common.platform_model import Deployment, HubAnalysis, NodeSpec
    from flame_sdk.sim.services.hub_calls import HubCall
    from flame_sdk.sim.services.hub_link import HubLink
    from flame_sdk.sim.services.hub_storage import HubStore
    from flame_sdk.sim.services.s3_server import S3Endpoint


class NodeContext(Protocol):
    """One simulated node as its services see it: identity, key, state folder and the hub connection."""

    @property
    def node_id(self) -> str: ...

    @property
    def spec(self) -> NodeSpec: ...

    @property
    def seed(self) -> int: ...

    @property
    def state_dir(self) -> Path: ...

    @property
    def tokens(self) -> TokenIssuer: ...

    @property
    def status_interval(self) -> float: ...

    @property
    def s3_endpoint(self) -> S3Endpoint | None: ...

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey: ...

    @property
    def hub(self) -> HubLink:
        """The node's connection to the hub (in process or HTTP)."""
        ...

    @property
    def deployments(self) -> dict[str, Deployment]:
        """This node's analysis deployments by deployment name."""
        ...

    @property
    def peer_headers(self) -> dict[str, str]:
        """Headers by which the node's broker and PO identify themselves to its gateways (the stand-in for
        nginx's ``allow <message broker ip>; allow <pod orchestration ip>``)."""
        ...

    async def hub_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the hub as this node; raise on HTTP errors."""
        ...


class HubRegistry(Protocol):
    """The hub as its storage routes see it: analysis lookup by call, and its store."""

    @property
    def store(self) -> HubStore: ...

    def analysis(self, call: HubCall) -> HubAnalysis:
        """The analysis named by the call's ``analysis_id`` (HubError 404 when unknown)."""
        ...
