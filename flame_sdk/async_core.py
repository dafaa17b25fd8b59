"""AsyncFlameCoreSDK: the SDK as coroutines on the caller's event loop; ``FlameCoreSDK`` is a sync facade over it.

    sdk = await AsyncFlameCoreSDK.create()          # or: async with await AsyncFlameCoreSDK.create() as sdk:
    partners = await sdk.get_participant_ids()
    await sdk.send_message(partners, "hello", {"n": 1})

Every method of the FLAME Python Core SDK docs is here as a coroutine with the same name, parameters and
defaults. The object owns its clients (one reused aiohttp session) and the run state; it must be used from the
event loop it was created on.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Mapping
from io import StringIO
from typing import TYPE_CHECKING, Any, Literal

import aiohttp

from flame_sdk.after_main import AFTER_REPORT_LINGER, finish_or_fail
from flame_sdk.clients.messages import Message
from flame_sdk.config import NodeConfig, NodeIdentity
from flame_sdk.config_view import NodeConfigView
from flame_sdk.errors import AnalysisError, FlameError
from flame_sdk.interface import DEFAULT_REPORT_TIMEOUT
from flame_sdk.intermediate_data import await_intermediate_data, send_intermediate_data
from flame_sdk.logs import FlameLogger
from flame_sdk.protocol import env as names
from flame_sdk.protocol.broker_api import AGGREGATOR, NODE_ID, NODE_TYPE
from flame_sdk.protocol.envelope import ANALYSIS_FINISHED, INTERMEDIATE_DATA, READ, UNREAD
from flame_sdk.protocol.status import AnalysisStatus
from flame_sdk.run_state import RunState
from flame_sdk.runtime import bounded
from flame_sdk.startup import Components, Startup
from flame_sdk.tokens import TokenHolder

if TYPE_CHECKING:
    from flame_sdk.clients.data import DataApiClient, FhirSourceClient, S3SourceClient

StatusSync = tuple[Literal["executed", "stopped", "failed"], ...]
#: Connections the shared HTTP session keeps open at most.
CONNECTION_LIMIT = 64


class AsyncFlameCoreSDK:
    """Connects an analysis to its FLAME node: messages, storage, data, logs and the status API.

    Create it with ``await AsyncFlameCoreSDK.create(...)`` (same arguments as ``FlameCoreSDK``); close it with
    ``await sdk.close()`` or use it as ``async with``.
    """

    def __init__(self, config: NodeConfig, logger: FlameLogger, state: RunState, tokens: TokenHolder,
                 session: aiohttp.ClientSession) -> None:
        """Internal: use :meth:`create`, which also connects the node's services."""
        self.config = config
        self._logger = logger
        self._state = state
        self._tokens = tokens
        self._session = session
        self._components: Components | None = None
        self._closed = False
        #: How long a node whose main() returned unfinished waits for a partner to finish it (seconds).
        self.finish_wait = names.DEFAULT_FINISH_WAIT
        #: ``flame.config`` as the reference SDK shows it (read-only; ``finished`` follows the run).
        self.config_view = NodeConfigView(config, state, self._known_identity, lambda: tokens.token)

    @classmethod
    async def create(
        cls,
        aggregator_requires_data: bool = False,
        stream_log_level: int = 20,
        silent: bool = False,
        status_sync: StatusSync | None = ("executed", "stopped", "failed"),
        *,
        env: Mapping[str, str] | None = None,
    ) -> AsyncFlameCoreSDK:
        """Read the node environment (``env``, default ``os.environ``) and connect the node's services.

        A service that cannot be reached is logged and reported (``stuck``), not raised; a missing environment
        variable raises ConfigurationError.
        """
        env = os.environ if env is None else env
        logger = FlameLogger(silent=silent, stream_level=stream_log_level, label=env.get(names.LOG_PREFIX, ""))
        logger.log("Starting FlameCoreSDK")
        logger.log("Extracting node config")
        try:
            config = NodeConfig.from_env(env)
        except FlameError as exc:
            logger.log(str(exc), "error")
            raise
        grace = float(env.get(names.STATUS_SYNC_GRACE, names.DEFAULT_STATUS_SYNC_GRACE))
        state = RunState(status_sync, grace)  # status_sync is checked after the environment
        logger.state = state  # the records so far carry the same (starting, 0) as the new state
        tokens = TokenHolder(config.keycloak_token)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTION_LIMIT),
                                        cookie_jar=aiohttp.DummyCookieJar())  # node services set no cookies
        sdk = cls(config, logger, state, tokens, session)
        sdk.finish_wait = float(env.get(names.FINISH_WAIT, names.DEFAULT_FINISH_WAIT))
        startup = Startup(config, session, tokens, logger, state, sdk._on_partner_finished)
        timeout = float(env.get(names.STARTUP_TIMEOUT, names.DEFAULT_STARTUP_TIMEOUT))
        try:
            sdk._components = await startup.run(aggregator_requires_data, timeout)
        except BaseException:
            sdk._components = startup.components
            await sdk.close()
            raise
        return sdk

    async def __aenter__(self) -> AsyncFlameCoreSDK:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ============================================ internals ==========================================
    @property
    def _parts(self) -> Components:
        if self._components is None:
            raise FlameError("the SDK is not started; create it with `await AsyncFlameCoreSDK.create()`")
        return self._components

    def _on_partner_finished(self) -> None:
        self._logger.log("a partner node signalled analysis_finished")
        self._node_finished()

    def _node_finished(self) -> bool:
        if self._state.finish():
            self._logger.log("Node finished successfully")
        return self._state.finished

    def _mark_crashed(self, summary: str) -> bool:
        """Mark the run failed because of an uncaught exception (thread-safe); False if it had ended already."""
        if self._state.ended() is not None:
            return False
        self._state.set_status(AnalysisStatus.FAILED)
        self._logger.log(f"analysis failed with an uncaught exception: {summary}", "crit")
        return True

    def _data_or_warn(self, what: str) -> DataApiClient | None:
        data = self._parts.data
        if data is None:
            self._logger.log(f"Data API is not available on this node, cannot {what}", "warn")
        return data

    # ============================================ general ============================================
    async def get_aggregator_id(self) -> str | None:
        """The aggregator's node id, or None when called on the aggregator itself."""
        return next((p[NODE_ID] for p in await self.get_participants() if p[NODE_TYPE] == AGGREGATOR), None)

    async def get_participants(self) -> list[dict[str, str]]:
        """Partner configs (``nodeId``, ``nodeType``), without this node."""
        return [dict(p) for p in self._parts.require_broker().participants]

    async def get_participant_ids(self) -> list[str]:
        """Partner node ids, without this node."""
        return self._parts.require_broker().participant_ids()

    async def get_analysis_id(self) -> str:
        return self.config.analysis_id

    async def get_project_id(self) -> str:
        return self.config.project_id

    async def get_id(self) -> str:
        """This node's id."""
        return self._identity().node_id

    async def get_role(self) -> str:
        """``"aggregator"`` or ``"default"``."""
        return self._identity().node_role

    def _identity(self) -> NodeIdentity:
        return self._parts.require_identity()

    def _known_identity(self) -> NodeIdentity | None:
        broker = None if self._components is None else self._components.broker
        return None if broker is None else broker.identity

    async def analysis_finished(self) -> bool:
        """Tell every partner that the analysis is finished, then finish this node."""
        partners = await self.get_participant_ids()
        if partners:
            await self.send_message(partners, ANALYSIS_FINISHED, {}, max_attempts=3, timeout=60, attempt_timeout=20)
        return self._node_finished()

    async def ready_check(self, nodes: list[str] | Literal["all"] = "all", attempt_interval: float = 30,
                          timeout: float | None = None) -> dict[str, bool]:
        """Wait until the given partners acknowledge a ``ready_check`` message; {node id: ready}."""
        broker = self._parts.require_broker()
        targets = broker.participant_ids() if nodes == "all" else broker.check_nodes(nodes, "nodes")
        if attempt_interval <= 0:
            raise ValueError(f"attempt_interval must be positive, got {attempt_interval}")
        return await broker.ready_check(targets, attempt_interval, timeout)

    async def flame_log(self, msg: str | bytes | Iterable[Any], sep: str = "", end: str = "", log_type: str = "info",
                        append: bool = False, halt_submission: bool = False) -> None:
        """Print and stream a log. ``log_type='error'`` marks the analysis failed and raises AnalysisError."""
        if log_type == "error":
            self._state.set_status(AnalysisStatus.FAILED)
            text = self._logger.log(msg, log_type, sep, end, append, halt_submission)
            raise AnalysisError(text)
        self._logger.log(msg, log_type, sep, end, append, halt_submission)

    async def get_progress(self) -> int:
        return self._state.progress

    async def set_progress(self, progress: int | float) -> None:
        """Set progress (0..100, only increasing; floats are truncated to int)."""
        problem = self._state.set_progress(progress)
        if problem is not None:
            self._logger.log(problem, "warn")

    async def fhir_to_csv(self, fhir_data: dict[str, Any], col_key_seq: str, value_key_seq: str, input_resource: str,
                          row_key_seq: str | None = None, row_id_filters: list[str] | None = None,
                          col_id_filters: list[str] | None = None, row_col_name: str = "", separator: str = ",",
                          output_type: Literal["file", "dict"] = "file") -> StringIO | dict[Any, dict[Any, Any]] | None:
        """Pivot a FHIR bundle into a CSV table (StringIO) or nested dict; follows ``next`` page links.

        The conversion runs in a worker thread; the pages it follows are fetched on this loop.
        """
        data = self._parts.data
        if data is None:
            self._logger.log("Data API is not available on this node, cannot convert FHIR to CSV", "warn")
            return None
        loop = asyncio.get_running_loop()

        def next_page(url: str) -> dict[str, Any]:
            return asyncio.run_coroutine_threadsafe(data.fetch_fhir_page(url), loop).result()

        def convert() -> StringIO | dict[Any, dict[Any, Any]]:
            from flame_sdk.data.fhir_to_csv import fhir_to_csv  # imported here: never on the SDK loop

            return fhir_to_csv(fhir_data, col_key_seq, value_key_seq, input_resource, row_key_seq=row_key_seq,
                               row_id_filters=row_id_filters, col_id_filters=col_id_filters, row_col_name=row_col_name,
                               separator=separator, output_type=output_type, next_page=next_page)

        return await asyncio.to_thread(convert)

    # ============================================ messages ===========================================
    async def send_message(self, receivers: list[str], message_category: str, message: dict[str, Any],
                           max_attempts: int = 1, timeout: float | None = None,
                           attempt_timeout: float = 10) -> tuple[list[str], list[str]]:
        """Send to partners; return (acknowledged, not acknowledged)."""
        return await self._parts.require_broker().send_message(receivers, message_category, message, max_attempts,
                                                               timeout, attempt_timeout)

    async def await_messages(self, senders: list[str], message_category: str, message_id: str | None = None,
                             timeout: float | None = None) -> dict[str, list[Message] | None]:
        """Wait for messages of a category from every sender; None for senders that did not answer."""
        return await self._parts.require_broker().await_messages(senders, message_category, message_id, timeout)

    async def get_messages(self, status: Literal["unread", "read"] = "unread") -> list[Message]:
        if status not in (UNREAD, READ):
            raise ValueError(f"status must be 'unread' or 'read', got {status!r}")
        return [m for m in self._parts.require_broker().inbox.messages if m.status == status]

    async def delete_messages(self, message_ids: list[str]) -> int:
        """Delete received messages by id; return how many were deleted."""
        return self._parts.require_broker().inbox.delete(message_ids)

    async def clear_messages(self, status: Literal["read", "unread", "all"] = "read",
                             min_age: float | None = None) -> int:
        """Delete received messages by status, optionally only those older than ``min_age`` seconds."""
        return self._parts.require_broker().inbox.clear(status, min_age)

    async def send_message_and_wait_for_responses(self, receivers: list[str], message_category: str,
                                                  message: dict[str, Any], max_attempts: int = 1,
                                                  timeout: float | None = None,
                                                  attempt_timeout: float = 10) -> dict[str, list[Message] | None]:
        """send_message, then await_messages of the same category from the receivers."""
        start = time.monotonic()
        await self.send_message(receivers, message_category, message, max_attempts, timeout, attempt_timeout)
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
        return await self._parts.require_broker().await_messages(receivers, message_category, timeout=remaining)

    # ============================================ storage ============================================
    async def submit_final_result(self, result: Any, output_type: Literal["str", "bytes", "pickle"] | list[str] = "str",
                                  multiple_results: bool = False, filename: str | list[str] | None = None,
                                  local_dp: dict[str, float] | None = None) -> dict[str, str] | list[dict[str, str]]:
        """Upload the final result(s) to the hub (aggregator only)."""
        return await self._parts.require_storage().submit_final_result(result, output_type, multiple_results,
                                                                       filename, local_dp)

    async def save_intermediate_data(self, data: Any, location: Literal["local", "global"],
                                     remote_node_ids: list[str] | None = None,
                                     tag: str | None = None) -> dict[str, dict[str, str]] | dict[str, str]:
        """Save locally (optionally tagged) or globally, encrypted for each of ``remote_node_ids``."""
        return await self._parts.require_storage().save_intermediate_data(data, location, remote_node_ids, tag)

    async def get_intermediate_data(self, location: Literal["local", "global"], query: str | None = None,
                                    tag: str | None = None,
                                    tag_option: Literal["all", "last", "first"] | None = "all") -> Any:
        return await self._parts.require_storage().get_intermediate_data(location, query, tag, tag_option)

    async def send_intermediate_data(self, receivers: list[str], data: Any,
                                     message_category: str = INTERMEDIATE_DATA, max_attempts: int = 1,
                                     timeout: float | None = None,
                                     attempt_timeout: float = 10) -> tuple[list[str], list[str]]:
        """Save ``data`` globally for the receivers, then message each the storage id meant for it."""
        return await send_intermediate_data(self._parts, receivers, data, message_category, max_attempts, timeout,
                                            attempt_timeout)

    async def await_intermediate_data(self, senders: list[str], message_category: str = INTERMEDIATE_DATA,
                                      timeout: float | None = None) -> dict[str, Any]:
        """Wait for intermediate data from every sender; None for senders that did not answer."""
        return await await_intermediate_data(self._parts, senders, message_category, timeout)

    async def get_local_tags(self, filter: str | None = None) -> list[str]:  # noqa: A002 - documented name
        return await self._parts.require_storage().get_local_tags(filter)

    # ============================================ data ===============================================
    async def get_data_sources(self) -> list[dict[str, Any]] | None:
        data = self._data_or_warn("list data sources")
        return None if data is None else data.get_data_sources()

    async def get_data_client(self, data_id: str) -> FhirSourceClient | S3SourceClient | None:
        data = self._data_or_warn("create a data client")
        return None if data is None else data.get_data_client(data_id)

    async def get_fhir_data(self, fhir_queries: list[str] | None = []) -> list[dict[str, Any]] | None:  # noqa: B006
        data = self._data_or_warn("retrieve FHIR data")
        return None if data is None else await data.get_fhir_data(fhir_queries)

    async def get_s3_data(self, s3_keys: list[str] | None = []) -> list[dict[str, bytes]] | None:  # noqa: B006
        data = self._data_or_warn("retrieve S3 data")
        return None if data is None else await data.get_s3_data(s3_keys)

    # ============================================ lifecycle (extensions) =============================
    async def wait_until_reported(self, timeout: float | None = DEFAULT_REPORT_TIMEOUT) -> bool:
        """Wait until the node has polled the final status from ``/healthz`` (and logs are flushed).

        Call it at the end of an analysis instead of a busy loop; True if it was reported in time.
        """
        po = self._parts.po
        try:
            await bounded(self._state.reported.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            if po is not None:
                await po.flush(timeout=10)
        return True

    async def after_main(self, report_timeout: float = DEFAULT_REPORT_TIMEOUT) -> None:
        """The analyst's main thread ended: finish or fail the run (``flame_sdk.after_main``), wait until the node
        saw the final status, then close."""
        await finish_or_fail(self._state, self._logger, self._parts.broker, self.finish_wait)
        if await self.wait_until_reported(report_timeout):
            await asyncio.sleep(AFTER_REPORT_LINGER)
        else:
            self._logger.log(f"the node did not poll the final status within {report_timeout:.0f} s; exiting", "warn")
        await self.close()

    async def close(self) -> None:
        """Flush logs, let acknowledgements go out, stop the embedded API and close the HTTP session
        (idempotent)."""
        if self._closed:
            return
        self._closed = True
        components = self._components
        if components is not None:
            if components.po is not None:
                await components.po.flush(timeout=5)
            if components.broker is not None:
                await components.broker.drain()
            await components.api.stop()
        await self._session.close()
