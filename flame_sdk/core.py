"""FlameCoreSDK: the one object an analysis creates; a thin synchronous facade over ``AsyncFlameCoreSDK``.

It owns one background event loop (``EventLoopThread``), builds the async core on it, and runs each method
there. Methods block the calling thread; from async code use ``AsyncFlameCoreSDK`` directly.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine, Iterable, Mapping
from io import StringIO
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from flame_sdk.after_main import keep_process_alive
from flame_sdk.async_core import AsyncFlameCoreSDK, StatusSync
from flame_sdk.clients.messages import Message
from flame_sdk.config_view import NodeConfigView
from flame_sdk.crash_report import install_excepthook
from flame_sdk.interface import DEFAULT_REPORT_TIMEOUT, FlameSDK
from flame_sdk.protocol import env as names
from flame_sdk.protocol.envelope import INTERMEDIATE_DATA
from flame_sdk.runtime import EventLoopThread

if TYPE_CHECKING:
    from flame_sdk.clients.data import FhirSourceClient, S3SourceClient

T = TypeVar("T")
#: Bound on closing the SDK (flushing logs, acknowledgements, stopping the API), in seconds.
CLOSE_TIMEOUT = 30.0


class FlameCoreSDK:
    """Connects an analysis to its FLAME node: messages, storage, data, logs and the status API.

    The constructor and every method follow the FLAME Python Core SDK docs. Extensions (all optional):
    ``env`` (read the node environment from a mapping instead of ``os.environ``), ``wait_until_reported``
    and ``close``.

    An object made from ``os.environ`` owns the process: when the main thread ends, the node stays up until the
    platform has seen its final status (``flame_sdk.after_main``), and an uncaught exception marks it failed.
    """

    def __init__(
        self,
        aggregator_requires_data: bool = False,
        stream_log_level: int = 20,
        silent: bool = False,
        status_sync: StatusSync | None = ("executed", "stopped", "failed"),
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self._loop = EventLoopThread(name=f"flame-sdk-{env.get(names.ANALYSIS_ID, '')[:8]}")
        try:
            self._core = self._run(AsyncFlameCoreSDK.create(aggregator_requires_data, stream_log_level, silent,
                                                            status_sync, env=env))
        except BaseException:
            self._loop.stop()
            raise
        #: True when this object owns the process (made from ``os.environ``): it then ends the process as a node
        #: expects (``flame_sdk.after_main``), so callers need not wait for the report or close it.
        self.owns_process = env is os.environ
        if self.owns_process:  # not one of several SDKs in a test
            install_excepthook(self._core._mark_crashed, lambda: not self._loop.loop.is_closed())
            keep_process_alive(self._loop, self._core.after_main)

    @property
    def config(self) -> NodeConfigView:
        """This node's configuration, read-only, with the reference SDK's attribute names (``analysis_id``,
        ``node_id``, ``node_role``, ...); ``flame.config.finished`` turns True once the analysis finished."""
        return self._core.config_view

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._loop.run(coro, timeout)

    # ============================================ general ============================================
    def get_aggregator_id(self) -> str | None:
        """The aggregator's node id, or None when called on the aggregator itself."""
        return self._run(self._core.get_aggregator_id())

    def get_participants(self) -> list[dict[str, str]]:
        """Partner configs (``nodeId``, ``nodeType``), without this node."""
        return self._run(self._core.get_participants())

    def get_participant_ids(self) -> list[str]:
        """Partner node ids, without this node."""
        return self._run(self._core.get_participant_ids())

    def get_analysis_id(self) -> str:
        return self._run(self._core.get_analysis_id())

    def get_project_id(self) -> str:
        return self._run(self._core.get_project_id())

    def get_id(self) -> str:
        """This node's id."""
        return self._run(self._core.get_id())

    def get_role(self) -> str:
        """``"aggregator"`` or ``"default"``."""
        return self._run(self._core.get_role())

    def analysis_finished(self) -> bool:
        """Tell every partner that the analysis is finished, then finish this node."""
        return self._run(self._core.analysis_finished())

    def ready_check(self, nodes: list[str] | Literal["all"] = "all", attempt_interval: float = 30,
                    timeout: float | None = None) -> dict[str, bool]:
        """Wait until the given partners acknowledge a ``ready_check`` message; {node id: ready}."""
        return self._run(self._core.ready_check(nodes, attempt_interval, timeout))

    def flame_log(self, msg: str | bytes | Iterable[Any], sep: str = "", end: str = "", log_type: str = "info",
                  append: bool = False, halt_submission: bool = False) -> None:
        """Print and stream a log. ``log_type='error'`` marks the analysis failed and raises AnalysisError."""
        return self._run(self._core.flame_log(msg, sep, end, log_type, append, halt_submission))

    def get_progress(self) -> int:
        return self._run(self._core.get_progress())

    def set_progress(self, progress: int | float) -> None:
        """Set progress (0..100, only increasing; floats are truncated to int)."""
        return self._run(self._core.set_progress(progress))

    def fhir_to_csv(self, fhir_data: dict[str, Any], col_key_seq: str, value_key_seq: str, input_resource: str,
                    row_key_seq: str | None = None, row_id_filters: list[str] | None = None,
                    col_id_filters: list[str] | None = None, row_col_name: str = "", separator: str = ",",
                    output_type: Literal["file", "dict"] = "file") -> StringIO | dict[Any, dict[Any, Any]] | None:
        """Pivot a FHIR bundle into a CSV table (StringIO) or nested dict; follows ``next`` page links."""
        return self._run(self._core.fhir_to_csv(fhir_data, col_key_seq, value_key_seq, input_resource, row_key_seq,
                                                row_id_filters, col_id_filters, row_col_name, separator, output_type))

    # ============================================ messages ===========================================
    def send_message(self, receivers: list[str], message_category: str, message: dict[str, Any],
                     max_attempts: int = 1, timeout: float | None = None,
                     attempt_timeout: float = 10) -> tuple[list[str], list[str]]:
        """Send to partners; return (acknowledged, not acknowledged)."""
        return self._run(self._core.send_message(receivers, message_category, message, max_attempts, timeout,
                                                 attempt_timeout))

    def await_messages(self, senders: list[str], message_category: str, message_id: str | None = None,
                       timeout: float | None = None) -> dict[str, list[Message] | None]:
        """Wait for messages of a category from every sender; None for senders that did not answer."""
        return self._run(self._core.await_messages(senders, message_category, message_id, timeout))

    def get_messages(self, status: Literal["unread", "read"] = "unread") -> list[Message]:
        return self._run(self._core.get_messages(status))

    def delete_messages(self, message_ids: list[str]) -> int:
        """Delete received messages by id; return how many were deleted."""
        return self._run(self._core.delete_messages(message_ids))

    def clear_messages(self, status: Literal["read", "unread", "all"] = "read", min_age: float | None = None) -> int:
        """Delete received messages by status, optionally only those older than ``min_age`` seconds."""
        return self._run(self._core.clear_messages(status, min_age))

    def send_message_and_wait_for_responses(self, receivers: list[str], message_category: str,
                                            message: dict[str, Any], max_attempts: int = 1,
                                            timeout: float | None = None,
                                            attempt_timeout: float = 10) -> dict[str, list[Message] | None]:
        """send_message, then await_messages of the same category from the receivers."""
        return self._run(self._core.send_message_and_wait_for_responses(receivers, message_category, message,
                                                                        max_attempts, timeout, attempt_timeout))

    # ============================================ storage ============================================
    def submit_final_result(self, result: Any, output_type: Literal["str", "bytes", "pickle"] | list[str] = "str",
                            multiple_results: bool = False, filename: str | list[str] | None = None,
                            local_dp: dict[str, float] | None = None) -> dict[str, str] | list[dict[str, str]]:
        """Upload the final result(s) to the hub (aggregator only)."""
        return self._run(self._core.submit_final_result(result, output_type, multiple_results, filename, local_dp))

    def save_intermediate_data(self, data: Any, location: Literal["local", "global"],
                               remote_node_ids: list[str] | None = None,
                               tag: str | None = None) -> dict[str, dict[str, str]] | dict[str, str]:
        """Save locally (optionally tagged) or globally, encrypted for each of ``remote_node_ids``."""
        return self._run(self._core.save_intermediate_data(data, location, remote_node_ids, tag))

    def get_intermediate_data(self, location: Literal["local", "global"], query: str | None = None,
                              tag: str | None = None,
                              tag_option: Literal["all", "last", "first"] | None = "all") -> Any:
        return self._run(self._core.get_intermediate_data(location, query, tag, tag_option))

    def send_intermediate_data(self, receivers: list[str], data: Any, message_category: str = INTERMEDIATE_DATA,
                               max_attempts: int = 1, timeout: float | None = None,
                               attempt_timeout: float = 10) -> tuple[list[str], list[str]]:
        """Save ``data`` globally for the receivers, then message each the storage id meant for it."""
        return self._run(self._core.send_intermediate_data(receivers, data, message_category, max_attempts, timeout,
                                                           attempt_timeout))

    def await_intermediate_data(self, senders: list[str], message_category: str = INTERMEDIATE_DATA,
                                timeout: float | None = None) -> dict[str, Any]:
        """Wait for intermediate data from every sender; None for senders that did not answer."""
        return self._run(self._core.await_intermediate_data(senders, message_category, timeout))

    def get_local_tags(self, filter: str | None = None) -> list[str]:  # noqa: A002 - documented name
        return self._run(self._core.get_local_tags(filter))

    # ============================================ data ===============================================
    def get_data_sources(self) -> list[dict[str, Any]] | None:
        return self._run(self._core.get_data_sources())

    def get_data_client(self, data_id: str) -> FhirSourceClient | S3SourceClient | None:
        return self._run(self._core.get_data_client(data_id))

    def get_fhir_data(self, fhir_queries: list[str] | None = []) -> list[dict[str, Any]] | None:  # noqa: B006
        return self._run(self._core.get_fhir_data(fhir_queries))

    def get_s3_data(self, s3_keys: list[str] | None = []) -> list[dict[str, bytes]] | None:  # noqa: B006
        return self._run(self._core.get_s3_data(s3_keys))

    # ============================================ lifecycle (extensions) =============================
    def wait_until_reported(self, timeout: float | None = DEFAULT_REPORT_TIMEOUT) -> bool:
        """Block until the node has polled the final status from ``/healthz`` (and logs are flushed).

        Call it at the end of an analysis instead of a busy loop; True if it was reported in time.
        """
        return self._run(self._core.wait_until_reported(timeout))

    def close(self) -> None:
        """Stop the embedded API, close HTTP sessions and the event loop (idempotent)."""
        if self._loop.loop.is_closed():
            return
        try:
            self._run(self._core.close(), timeout=CLOSE_TIMEOUT)
        finally:
            self._loop.stop()

    def __enter__(self) -> FlameCoreSDK:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if TYPE_CHECKING:
    _implements: type[FlameSDK] = FlameCoreSDK  # mypy: the facade has every method of the interface
