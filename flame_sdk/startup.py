"""Startup wiring: connect the node's services one after another, logging each step as the reference SDK does.

``Startup.run`` returns the ``Components``: the embedded API and every client that connected, plus why the
others did not. A failed step does not stop startup; the node then reports ``stuck`` on ``/healthz``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import aiohttp

from flame_sdk.api.server import AnalysisAPI
from flame_sdk.clients.message_broker import MessageBrokerClient
from flame_sdk.clients.po import POClient
from flame_sdk.config import NodeConfig, NodeIdentity
from flame_sdk.errors import FlameError
from flame_sdk.http import DEFAULT_RETRY, RetryPolicy, ServiceClient
from flame_sdk.logs import FlameLogger
from flame_sdk.protocol import broker_api, data_api, gateway_api, po_api, result_api
from flame_sdk.protocol.envelope import MAIN_RETURNED
from flame_sdk.protocol.status import AnalysisStatus
from flame_sdk.run_state import RunState
from flame_sdk.runtime import call_soon_on
from flame_sdk.storage.intermediate_binding import Ledger
from flame_sdk.tokens import TokenHolder

if TYPE_CHECKING:
    from flame_sdk.clients.data import DataApiClient
    from flame_sdk.clients.storage import StorageClient

#: How long the PO service gets to take the queued startup logs (seconds).
PO_FLUSH_TIMEOUT = 30.0


class Component(Enum):
    """A part of the node the SDK connects at startup: (startup log label, what users call it)."""

    GATEWAY = ("Connecting to nginx", "node gateway")
    API = ("Starting FlameApi", "embedded API")
    BROKER = ("Connecting to MessageBroker", "message broker")
    PO = ("Connecting to PO service", "PO service")
    STORAGE = ("Connecting to ResultService", "result service")
    DATA = ("Connecting to DataApi", "data API")

    def __init__(self, label: str, description: str) -> None:
        self.label = label
        self.description = description


@dataclass
class Components:
    """The embedded API and the connected clients; ``errors`` says why a component is missing."""

    api: AnalysisAPI
    broker: MessageBrokerClient | None = None
    po: POClient | None = None
    storage: StorageClient | None = None
    data: DataApiClient | None = None
    errors: dict[Component, str] = field(default_factory=dict)
    #: Rounds of intermediate data sent, and storage ids used (see ``intermediate_binding``).
    ledger: Ledger = field(default_factory=Ledger)

    def unavailable(self, component: Component) -> FlameError:
        reason = self.errors.get(component, "not connected")
        return FlameError(f"the {component.description} is not available on this node ({reason}); "
                          f"see the startup log")

    def require_broker(self) -> MessageBrokerClient:
        if self.broker is None:
            raise self.unavailable(Component.BROKER)
        return self.broker

    def require_identity(self) -> NodeIdentity:
        identity = self.require_broker().identity
        if identity is None:
            raise self.unavailable(Component.BROKER)
        return identity

    def require_storage(self) -> StorageClient:
        if self.storage is None:
            raise self.unavailable(Component.STORAGE)
        return self.storage

    def logged_errors(self) -> dict[str, str]:
        """The errors keyed by their startup log label (as the startup log prints them)."""
        return {component.label: reason for component, reason in self.errors.items()}


class Startup:
    """Connects one node's services over one shared HTTP session."""

    def __init__(self, config: NodeConfig, session: aiohttp.ClientSession, tokens: TokenHolder,
                 logger: FlameLogger, state: RunState, on_partner_finished: Callable[[], None]) -> None:
        self.config = config
        self.session = session
        self.tokens = tokens
        self.logger = logger
        self.state = state
        self.on_partner_finished = on_partner_finished
        self.components = Components(AnalysisAPI(state, tokens, logger))

    def _service(self, prefix: str, name: str, *, token: bool = True, headers: dict[str, str] | None = None,
                 retry: RetryPolicy = DEFAULT_RETRY) -> ServiceClient:
        return ServiceClient(self.session, self.config.base_url + prefix, name,
                             token=self.tokens if token else None, headers=headers, retry=retry)

    async def _step(self, component: Component, action: Callable[[], Awaitable[Any]], quiet: bool = False) -> bool:
        """Run one startup step, logging ``label...success`` or ``label...failed (reason)``."""
        if not quiet:
            self.logger.log(f"{component.label}...", halt_submission=True)
        try:
            await action()
        except Exception as exc:  # noqa: BLE001 - partial startup is tolerated and reported
            self.components.errors[component] = f"{type(exc).__name__}: {exc}"
            if not quiet:
                self.logger.log(f"failed ({self.components.errors[component]})", "error", append=True)
            return False
        if not quiet:
            self.logger.log("success", append=True)
        return True

    async def run(self, aggregator_requires_data: bool, startup_timeout: float) -> Components:
        """Connect everything; set the run status to executing, or to failed (``stuck``) if a step failed."""
        components = self.components
        gateway = self._service("", "nginx", token=False, retry=RetryPolicy(deadline=startup_timeout))
        gateway_ok = await self._step(Component.GATEWAY, lambda: gateway.read("GET", gateway_api.HEALTH))
        # The API must listen before the webhook is subscribed, or early messages would bounce.
        api_ok = await self._step(Component.API,
                                  lambda: components.api.start(self.config.api_host, self.config.api_port), quiet=True)
        steps: list[tuple[Component, Callable[[], Awaitable[None]]]] = [
            (Component.BROKER, self._connect_broker),
            (Component.PO, self._connect_po),
            (Component.STORAGE, self._connect_storage),
            (Component.DATA, self._connect_data),
        ]
        for component, action in steps:
            identity = None if components.broker is None else components.broker.identity
            if component is Component.DATA and identity is not None and identity.is_aggregator \
                    and not aggregator_requires_data:
                continue  # the role is known once the message broker answered
            if gateway_ok:
                await self._step(component, action)
            else:  # every service sits behind the gateway: do not wait for each one in turn
                components.errors[component] = "skipped: the node gateway is unreachable"
                self.logger.log(f"{component.label}...failed ({components.errors[component]})", "error")

        self.logger.log("Starting FlameApi thread...", halt_submission=True)
        if api_ok:
            self.logger.log("success", append=True)
        else:
            self.logger.log(f"failed ({components.errors.get(Component.API)})", "error", append=True)

        if components.errors:
            self.state.init_failed = True
            self.state.set_status(AnalysisStatus.FAILED)
            self.logger.log(f"FlameCoreSDK startup failed: {components.logged_errors()}", "error")
        else:
            self.state.set_status(AnalysisStatus.EXECUTING)
            self.logger.log("FlameCoreSDK ready")
        return components

    async def _connect_broker(self) -> None:
        broker = MessageBrokerClient(self._service(broker_api.PREFIX, "MessageBroker",
                                                   headers={"Accept": "application/json"}), self.config, self.logger)
        broker.on_analysis_finished = self.on_partner_finished
        broker.run_ended = self.state.interrupted
        loop = asyncio.get_running_loop()
        self.state.on_change = lambda: call_soon_on(loop, broker.inbox.wake)
        await broker.connect()
        self.components.broker = broker
        self.components.api.partner_ids = broker.participant_ids

        def on_message(body: dict[str, Any]) -> str | None:
            meta = body["meta"]
            returned = meta["category"] == MAIN_RETURNED and meta["akn_id"] is None \
                and meta["sender"] in broker.participant_ids()
            refusal = broker.receive(body)
            if returned and refusal is None:
                self.state.partner_returned(meta["sender"])
            return refusal

        self.components.api.on_message = on_message

    async def _connect_po(self) -> None:
        po = POClient(self._service(po_api.PREFIX, "PO service"), self.config.analysis_id, asyncio.get_running_loop())
        po.start()
        self.logger.attach_sink(po.submit)
        if not await po.flush(timeout=PO_FLUSH_TIMEOUT):  # the queued startup logs prove the route works
            raise po.last_error or TimeoutError(f"PO service did not take the startup logs within "
                                                f"{PO_FLUSH_TIMEOUT:.0f} s")
        self.components.po = po

    async def _connect_storage(self) -> None:
        from flame_sdk.clients.storage import StorageClient

        broker = self.components.broker
        config = self.config.identified(None if broker is None else broker.identity)
        storage = StorageClient(self._service(result_api.PREFIX, "ResultService"), config, self.logger,
                                lambda: self.components.require_broker().participant_ids())
        await storage.connect()
        self.components.storage = storage

    async def _connect_data(self) -> None:
        from flame_sdk.clients.data import DataApiClient

        kong = self._service(data_api.KONG_PREFIX, "DataApi", token=False,
                             headers={data_api.APIKEY_HEADER: self.config.data_source_token or ""})
        data = DataApiClient(kong, self._service(data_api.HUB_ADAPTER_PREFIX, "HubAdapter"), self.config, self.logger)
        await data.connect()
        self.components.data = data
