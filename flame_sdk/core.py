"""FlameCoreSDK: the one object an analysis creates; sync methods over one background event loop."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from io import StringIO
from typing import Any, Literal, TypeVar

import aiohttp

from flame_sdk.api.run_state import RunState
from flame_sdk.api.server import AnalysisAPI
from flame_sdk.clients.message_broker import MessageBrokerClient
from flame_sdk.clients.messages import Message
from flame_sdk.clients.po import POClient
from flame_sdk.config import NodeConfig
from flame_sdk.errors import AnalysisError, FlameError
from flame_sdk.http import DEFAULT_RETRY, RetryPolicy, ServiceClient
from flame_sdk.logs import FlameLogger
from flame_sdk.protocol.status import AnalysisStatus
from flame_sdk.runtime import EventLoopThread
from flame_sdk.tokens import TokenHolder

T = TypeVar("T")

#: Tunables read from the environment (not part of the platform protocol; see docs/protocol.md).
ENV_STARTUP_TIMEOUT = "FLAME_STARTUP_TIMEOUT"
ENV_SYNC_GRACE = "FLAME_STATUS_SYNC_GRACE_SECONDS"
ENV_LOG_PREFIX = "FLAME_LOG_PREFIX"
DEFAULT_STARTUP_TIMEOUT = 300.0
DEFAULT_SYNC_GRACE = 100.0
#: Bound on how long ``wait_until_reported`` waits by default for the node to poll ``/healthz``.
DEFAULT_REPORT_TIMEOUT = 600.0
#: How long a crashing analysis keeps its API up so the node can see the failure.
REPORT_ON_CRASH_TIMEOUT = 30.0


class FlameCoreSDK:
    """Connects an analysis to its FLAME node: messages, storage, data, logs and the status API.

    The constructor and every method follow the FLAME Python Core SDK docs. Extensions (all optional):
    ``env`` (read the node environment from a mapping instead of ``os.environ``), ``wait_until_reported``
    and ``close``.
    """

    def __init__(
        self,
        aggregator_requires_data: bool = False,
        stream_log_level: int = 20,
        silent: bool = False,
        status_sync: tuple[Literal["executed", "stopped", "failed"], ...] | None = ("executed", "stopped", "failed"),
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self._logger = FlameLogger(silent=silent, stream_level=stream_log_level, label=env.get(ENV_LOG_PREFIX, ""))
        self._logger.log("Starting FlameCoreSDK")
        self._logger.log("Extracting node config")
        try:
            self.config = NodeConfig.from_env(env)
        except FlameError as exc:
            self._logger.log(str(exc), "error")
            raise
        self._state = RunState(
            self._logger, status_sync, float(env.get(ENV_SYNC_GRACE, DEFAULT_SYNC_GRACE))
        )
        self._tokens = TokenHolder(self.config.keycloak_token)
        self._loop = EventLoopThread(name=f"flame-sdk-{self.config.analysis_id[:8]}")
        self._session: aiohttp.ClientSession = self._run(self._open_session())
        self._startup_errors: dict[str, str] = {}
        self._broker: MessageBrokerClient | None = None
        self._po: POClient | None = None
        self._storage: Any = None
        self._data: Any = None
        self._api = AnalysisAPI(self._state, self._tokens, on_message=None)
        self._startup(aggregator_requires_data, float(env.get(ENV_STARTUP_TIMEOUT, DEFAULT_STARTUP_TIMEOUT)))
        if env is os.environ:  # the analysis owns this process (not one of several SDKs in a test)
            self._install_excepthook()

    # ============================================ startup ============================================
    async def _open_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))

    def _service(self, prefix: str, name: str, *, token: bool = True, headers: dict[str, str] | None = None,
                 retry: RetryPolicy = DEFAULT_RETRY) -> ServiceClient:
        return ServiceClient(self._session, self.config.base_url + prefix, name,
                             token=self._tokens if token else None, headers=headers, retry=retry)

    def _step(self, label: str, action: Callable[[], Awaitable[Any]], quiet: bool = False) -> bool:
        """Run one startup step, logging ``label...success`` or ``label...failed (reason)``."""
        if not quiet:
            self._logger.log(f"{label}...", halt_submission=True)
        try:
            self._run(action())
        except Exception as exc:  # noqa: BLE001 - partial startup is tolerated and reported
            self._startup_errors[label] = f"{type(exc).__name__}: {exc}"
            if not quiet:
                self._logger.log(f"failed ({self._startup_errors[label]})", "error", append=True)
            return False
        if not quiet:
            self._logger.log("success", append=True)
        return True

    def _startup(self, aggregator_requires_data: bool, startup_timeout: float) -> None:
        gateway = self._service("", "nginx", token=False, retry=RetryPolicy(deadline=startup_timeout))
        gateway_ok = self._step("Connecting to nginx", lambda: gateway.read("GET", "/healthz"))
        # The API must listen before the webhook is subscribed, or early messages would bounce.
        api_ok = self._step("Starting FlameApi", lambda: self._api.start(self.config.api_host, self.config.api_port),
                            quiet=True)
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("Connecting to MessageBroker", self._connect_broker),
            ("Connecting to PO service", self._connect_po),
            ("Connecting to ResultService", self._connect_storage),
            ("Connecting to DataApi", self._connect_data),
        ]
        for label, action in steps:
            if label == "Connecting to DataApi" and self.config.node_role == "aggregator" \
                    and not aggregator_requires_data:
                continue  # the role is known once the message broker answered
            if gateway_ok:
                self._step(label, action)
            else:  # every service sits behind the gateway: do not wait for each one in turn
                self._startup_errors[label] = "skipped: the node gateway is unreachable"
                self._logger.log(f"{label}...failed ({self._startup_errors[label]})", "error")

        self._logger.log("Starting FlameApi thread...", halt_submission=True)
        if api_ok:
            self._logger.log("success", append=True)
        else:
            self._logger.log(f"failed ({self._startup_errors.get('Starting FlameApi')})", "error", append=True)

        if self._startup_errors:
            self._state.init_failed = True
            self._state.set_status(AnalysisStatus.FAILED)
            self._logger.log(f"FlameCoreSDK startup failed: {self._startup_errors}", "error")
        else:
            self._state.set_status(AnalysisStatus.EXECUTING)
            self._logger.log("FlameCoreSDK ready")

    async def _connect_broker(self) -> None:
        broker = MessageBrokerClient(self._service("/message-broker", "MessageBroker",
                                                   headers={"Accept": "application/json"}), self.config, self._logger)
        broker.on_analysis_finished = self._on_partner_finished
        broker.run_ended = self._state.interrupted
        self._state.on_change = lambda: self._loop.call_soon(broker.inbox.wake)
        await broker.connect()
        self._broker = broker
        self._api.on_message = self._on_webhook_message

    async def _connect_po(self) -> None:
        po = POClient(self._service("/po", "PO service"), self.config.analysis_id, self._loop)
        po.start()
        self._logger.attach_sink(po.submit)
        if not await po.flush(timeout=30):  # the queued startup logs prove the route works
            raise po.last_error or TimeoutError("PO service did not take the startup logs within 30 s")
        self._po = po

    async def _connect_storage(self) -> None:
        from flame_sdk.clients.storage import StorageClient

        storage = StorageClient(self._service("/storage", "ResultService"), self.config, self._logger,
                                self.get_participant_ids)
        await storage.connect()
        self._storage = storage

    async def _connect_data(self) -> None:
        from flame_sdk.clients.data import DataApiClient

        kong = self._service("/kong", "DataApi", token=False, headers={"apikey": self.config.data_source_token or ""})
        data = DataApiClient(kong, self._service("/hub-adapter", "HubAdapter"), self.config, self._logger)
        await data.connect()
        self._data = data

    def _install_excepthook(self) -> None:
        """Report an analysis that dies of an uncaught exception as failed, with the error, before exiting."""
        previous = sys.excepthook

        def hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
            if not self._loop.loop.is_closed() and self._state.ended() is None:
                self._state.set_status(AnalysisStatus.FAILED)
                summary = "".join(traceback.format_exception_only(exc_type, exc)).strip()
                self._logger.log(f"analysis failed with an uncaught exception: {summary}", "crit")
                self.wait_until_reported(timeout=REPORT_ON_CRASH_TIMEOUT)
            previous(exc_type, exc, tb)

        sys.excepthook = hook

    # ============================================ internals ==========================================
    def _run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        return self._loop.run(coro, timeout)

    def _on_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn`` on the SDK loop, where the inbox is mutated, so no update is lost."""
        async def call() -> T:
            return fn(*args)

        return self._run(call())

    def _component(self, name: str, value: Any, label: str) -> Any:
        if value is None:
            reason = self._startup_errors.get(label, "not connected")
            raise FlameError(f"the {name} is not available on this node ({reason}); see the startup log")
        return value

    @property
    def _mb(self) -> MessageBrokerClient:
        return self._component("message broker", self._broker, "Connecting to MessageBroker")

    @property
    def _store(self) -> Any:
        return self._component("result service", self._storage, "Connecting to ResultService")

    def _on_webhook_message(self, body: dict[str, Any]) -> None:
        self._mb.receive(body)

    def _on_partner_finished(self) -> None:
        self._logger.log("a partner node signalled analysis_finished")
        self._node_finished()

    def _node_finished(self) -> bool:
        if self._state.ended() in ("failed", "stopped"):
            return False
        if not self._state.finished:
            if self._logger.progress < 100:
                self._logger.progress = 100
            self._state.finished = True
            self._state.set_status(AnalysisStatus.EXECUTED)
            self._logger.log("Node finished successfully")
        return self._state.finished

    # ============================================ general ============================================
    def get_aggregator_id(self) -> str | None:
        """The aggregator's node id, or None when called on the aggregator itself."""
        return next((p["nodeId"] for p in self.get_participants() if p["nodeType"] == "aggregator"), None)

    def get_participants(self) -> list[dict[str, str]]:
        """Partner configs (``nodeId``, ``nodeType``), without this node."""
        return [dict(p) for p in self._mb.participants]

    def get_participant_ids(self) -> list[str]:
        """Partner node ids, without this node."""
        return self._mb.participant_ids()

    def get_analysis_id(self) -> str:
        return self.config.analysis_id

    def get_project_id(self) -> str:
        return self.config.project_id

    def get_id(self) -> str:
        """This node's id."""
        return self._mb.config.node_id  # type: ignore[return-value]

    def get_role(self) -> str:
        """``"aggregator"`` or ``"default"``."""
        return self._mb.config.node_role  # type: ignore[return-value]

    def analysis_finished(self) -> bool:
        """Tell every partner that the analysis is finished, then finish this node."""
        partners = self.get_participant_ids()
        if partners:
            self.send_message(partners, "analysis_finished", {}, max_attempts=3, timeout=60, attempt_timeout=20)
        return self._node_finished()

    def ready_check(self, nodes: list[str] | Literal["all"] = "all", attempt_interval: int = 30,
                    timeout: int | None = None) -> dict[str, bool]:
        """Wait until the given partners acknowledge a ``ready_check`` message; {node id: ready}."""
        targets = self.get_participant_ids() if nodes == "all" else self._mb.check_nodes(nodes, "nodes")
        if attempt_interval <= 0:
            raise ValueError(f"attempt_interval must be positive, got {attempt_interval}")
        return self._run(self._ready_check(targets, attempt_interval, timeout))

    async def _ready_check(self, targets: list[str], interval: float, timeout: float | None) -> dict[str, bool]:
        ready = dict.fromkeys(targets, False)
        start = time.monotonic()
        while not all(ready.values()) and self._state.interrupted() is None:
            remaining = None if timeout is None else timeout - (time.monotonic() - start)
            if remaining is not None and remaining <= 0:
                break
            bound = interval if remaining is None else min(interval, remaining)
            pending = [n for n, ok in ready.items() if not ok]
            acked, _ = await self._mb.send_message(pending, "ready_check", {}, 1, bound, bound, warn=False)
            ready.update(dict.fromkeys(acked, True))
        not_ready = [n for n, ok in ready.items() if not ok]
        if not_ready:
            self._logger.log(f"ready_check: node(s) {not_ready} did not answer", "warn")
        return ready

    def flame_log(self, msg: str | bytes | Iterable[Any], sep: str = "", end: str = "", log_type: str = "info",
                  append: bool = False, halt_submission: bool = False) -> None:
        """Print and stream a log. ``log_type='error'`` marks the analysis failed and raises AnalysisError."""
        if log_type == "error":
            self._state.set_status(AnalysisStatus.FAILED)
            text = self._logger.log(msg, log_type, sep, end, append, halt_submission)
            raise AnalysisError(text)
        self._logger.log(msg, log_type, sep, end, append, halt_submission)

    def get_progress(self) -> int:
        return self._logger.progress

    def set_progress(self, progress: int | float) -> None:
        """Set progress (0..100, only increasing; floats are truncated to int)."""
        self._logger.set_progress(progress)

    def fhir_to_csv(self, fhir_data: dict[str, Any], col_key_seq: str, value_key_seq: str, input_resource: str,
                    row_key_seq: str | None = None, row_id_filters: list[str] | None = None,
                    col_id_filters: list[str] | None = None, row_col_name: str = "", separator: str = ",",
                    output_type: Literal["file", "dict"] = "file") -> StringIO | dict[Any, dict[Any, Any]] | None:
        """Pivot a FHIR bundle into a CSV table (StringIO) or nested dict; follows ``next`` page links."""
        if self._data is None:
            self._logger.log("Data API is not available on this node, cannot convert FHIR to CSV", "warn")
            return None
        from flame_sdk.data.fhir_to_csv import fhir_to_csv

        return fhir_to_csv(fhir_data, col_key_seq, value_key_seq, input_resource, row_key_seq=row_key_seq,
                           row_id_filters=row_id_filters, col_id_filters=col_id_filters, row_col_name=row_col_name,
                           separator=separator, output_type=output_type,
                           next_page=lambda url: self._run(self._data.fetch_fhir_page(url)))

    # ============================================ messages ===========================================
    def send_message(self, receivers: list[str], message_category: str, message: dict[str, Any],
                     max_attempts: int = 1, timeout: int | None = None,
                     attempt_timeout: int = 10) -> tuple[list[str], list[str]]:
        """Send to partners; return (acknowledged, not acknowledged)."""
        return self._run(self._mb.send_message(receivers, message_category, message, max_attempts, timeout,
                                               attempt_timeout))

    def await_messages(self, senders: list[str], message_category: str, message_id: str | None = None,
                       timeout: int | None = None) -> dict[str, list[Message] | None]:
        """Wait for messages of a category from every sender; None for senders that did not answer."""
        return self._run(self._mb.await_messages(senders, message_category, message_id, timeout))

    def get_messages(self, status: Literal["unread", "read"] = "unread") -> list[Message]:
        if status not in ("unread", "read"):
            raise ValueError(f"status must be 'unread' or 'read', got {status!r}")
        return self._on_loop(lambda: [m for m in self._mb.inbox.messages if m.status == status])

    def delete_messages(self, message_ids: list[str]) -> int:
        """Delete received messages by id; return how many were deleted."""
        return self._on_loop(self._mb.inbox.delete, message_ids)

    def clear_messages(self, status: Literal["read", "unread", "all"] = "read", min_age: int | None = None) -> int:
        """Delete received messages by status, optionally only those older than ``min_age`` seconds."""
        return self._on_loop(self._mb.inbox.clear, status, min_age)

    def send_message_and_wait_for_responses(self, receivers: list[str], message_category: str,
                                            message: dict[str, Any], max_attempts: int = 1,
                                            timeout: int | None = None,
                                            attempt_timeout: int = 10) -> dict[str, list[Message] | None]:
        """send_message, then await_messages of the same category from the receivers."""
        start = time.monotonic()
        self.send_message(receivers, message_category, message, max_attempts, timeout, attempt_timeout)
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
        return self.await_messages(receivers, message_category, timeout=remaining)

    # ============================================ storage ============================================
    def submit_final_result(self, result: Any, output_type: Literal["str", "bytes", "pickle"] | list = "str",
                            multiple_results: bool = False, filename: str | list[str] | None = None,
                            local_dp: dict[str, float] | None = None) -> dict[str, str] | list[dict[str, str]]:
        """Upload the final result(s) to the hub (aggregator only)."""
        return self._run(self._store.submit_final_result(result, output_type, multiple_results, filename, local_dp))

    def save_intermediate_data(self, data: Any, location: Literal["local", "global"],
                               remote_node_ids: list[str] | None = None,
                               tag: str | None = None) -> dict[str, dict[str, str]] | dict[str, str]:
        """Save locally (optionally tagged) or globally, encrypted for each of ``remote_node_ids``."""
        return self._run(self._store.save_intermediate_data(data, location, remote_node_ids, tag))

    def get_intermediate_data(self, location: Literal["local", "global"], query: str | None = None,
                              tag: str | None = None,
                              tag_option: Literal["all", "last", "first"] | None = "all") -> Any:
        return self._run(self._store.get_intermediate_data(location, query, tag, tag_option))

    def send_intermediate_data(self, receivers: list[str], data: Any, message_category: str = "intermediate_data",
                               max_attempts: int = 1, timeout: int | None = None,
                               attempt_timeout: int = 10) -> tuple[list[str], list[str]]:
        """Save ``data`` globally for the receivers, then message each the storage id meant for it."""
        receivers = self._mb.check_nodes(receivers, "receivers")
        saved = self.save_intermediate_data(data, "global", remote_node_ids=receivers)
        ids = {node: response["id"] for node, response in saved.items()}
        return self.send_message(receivers, message_category, {"result_id": ids}, max_attempts, timeout,
                                 attempt_timeout)

    def await_intermediate_data(self, senders: list[str], message_category: str = "intermediate_data",
                                timeout: int | None = None) -> dict[str, Any]:
        """Wait for intermediate data from every sender; None for senders that did not answer."""
        messages = self.await_messages(senders, message_category, timeout=timeout)
        own_id = self.get_id()
        data: dict[str, Any] = {}
        for sender, found in messages.items():
            if not found:
                data[sender] = None
                continue
            ids = found[-1].body.get("result_id")
            if not isinstance(ids, dict) or own_id not in ids:
                raise FlameError(f"message from {sender} in category {message_category!r} carries no storage id "
                                 f"for this node (body: {str(found[-1].body)[:200]})")
            data[sender] = self._run(self._store.get_intermediate_data("global", ids[own_id], None, "all",
                                                                       sender_id=sender))
        return data

    def get_local_tags(self, filter: str | None = None) -> list[str]:  # noqa: A002 - documented name
        return self._run(self._store.get_local_tags(filter))

    # ============================================ data ===============================================
    def _data_or_warn(self, what: str) -> Any:
        if self._data is None:
            self._logger.log(f"Data API is not available on this node, cannot {what}", "warn")
        return self._data

    def get_data_sources(self) -> list[dict[str, Any]] | None:
        data = self._data_or_warn("list data sources")
        return None if data is None else data.get_data_sources()

    def get_data_client(self, data_id: str) -> Any:
        data = self._data_or_warn("create a data client")
        return None if data is None else data.get_data_client(data_id)

    def get_fhir_data(self, fhir_queries: list[str] | None = []) -> list[dict[str, Any]] | None:  # noqa: B006
        data = self._data_or_warn("retrieve FHIR data")
        return None if data is None else self._run(data.get_fhir_data(fhir_queries))

    def get_s3_data(self, s3_keys: list[str] | None = []) -> list[dict[str, bytes]] | None:  # noqa: B006
        data = self._data_or_warn("retrieve S3 data")
        return None if data is None else self._run(data.get_s3_data(s3_keys))

    # ============================================ lifecycle (extensions) =============================
    def wait_until_reported(self, timeout: float | None = DEFAULT_REPORT_TIMEOUT) -> bool:
        """Block until the node has polled the final status from ``/healthz`` (and logs are flushed).

        Call it at the end of an analysis instead of a busy loop; True if it was reported in time.
        """
        async def wait() -> bool:
            try:
                await asyncio.wait_for(self._state.reported.wait(), timeout)
            except asyncio.TimeoutError:
                return False
            finally:
                if self._po is not None:
                    await self._po.flush(timeout=10)
            return True

        return self._run(wait())

    def close(self) -> None:
        """Stop the embedded API, close HTTP sessions and the event loop (idempotent)."""
        if self._loop.loop.is_closed():
            return

        async def shutdown() -> None:
            if self._po is not None:
                await self._po.flush(timeout=5)
            if self._broker is not None:
                await self._broker.drain()
            await self._api.stop()
            await self._session.close()

        try:
            self._run(shutdown(), timeout=30)
        finally:
            self._loop.stop()

    def __enter__(self) -> FlameCoreSDK:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

