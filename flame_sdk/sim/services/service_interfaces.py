"""What the simulated services need from their surroundings, as narrow interfaces.

The node services (broker, PO, result service, data API) are built by ``node_stack.SimNode``; they only see
``NodeContext`` and the protocols it names (the hub link, the gateways' in-process ingress), so no service
imports the module that wires it (no import cycles) and each can be built around a stand-in in tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from flame_sdk.sim.common.keycloak import TokenIssuer
    from flame_sdk.sim.common.platform_model import Deployment, NodeSpec
    from flame_sdk.sim.services.hub_calls import BytesLike, Pieces
    from flame_sdk.sim.services.s3_server import S3Endpoint


class HubReply(Protocol):
    """One answer of the hub."""

    @property
    def status(self) -> int: ...

    async def json(self) -> Any:
        """The JSON body."""
        ...

    def chunks(self) -> AsyncIterator[BytesLike]:
        """The body in chunks."""
        ...


class HubLink(Protocol):
    """The hub as one node's services reach it."""

    def request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None,
                content: BytesLike | Pieces | None = None) -> AbstractAsyncContextManager[HubReply]:
        """Send a request as this node; the reply is usable inside the ``async with``."""
        ...

    async def json(self, method: str, path: str, *, json: Any = None,
                   params: Mapping[str, str] | None = None) -> Any:
        """The JSON answer of a request; RuntimeError for an error status."""
        ...

    def deliver_locally(self, inbox: Callable[[dict[str, Any]], Awaitable[None]]) -> bool:
        """Have the hub hand messages for this node to ``inbox`` directly; False when it cannot (over HTTP)."""
        ...

    async def close(self) -> None: ...


class IngressReply(Protocol):
    """A gateway's answer to the node's broker or PO (what they read of an aiohttp response)."""

    @property
    def status(self) -> int: ...

    async def read(self) -> bytes: ...

    async def text(self) -> str: ...

    async def json(self) -> Any: ...

    def raise_for_status(self) -> None: ...


class Ingress(Protocol):
    """A gateway of the node, called in process by its broker and PO (``gateway.GatewayIngress``)."""

    def request(self, method: str, path: str, *, json_body: Any = None,
                timeout: float | None = None) -> AbstractAsyncContextManager[IngressReply]: ...


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

    def ingress(self, url: str) -> tuple[Ingress, str] | None:
        """This node's gateway named by ``url`` and the path for it (None: another host), for in-process calls."""
        ...

    async def hub_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the hub as this node; raise on HTTP errors."""
        ...
