"""The SDK interface as a ``typing.Protocol``: what an analysis may call on its SDK object.

``FlameCoreSDK`` and ``flame_sdk.testing.FakeFlameSDK`` both implement it (mypy checks that in their modules),
and the star templates take any ``FlameSDK``, so the fake cannot drift from the real thing. The methods are
those of the FLAME Python Core SDK docs plus the lifecycle extensions ``wait_until_reported`` and ``close``;
``config`` is the reference SDK's ``flame.config`` (read-only here).
"""

from __future__ import annotations

from collections.abc import Iterable
from io import StringIO
from typing import TYPE_CHECKING, Any, Literal, Protocol

from flame_sdk.protocol.envelope import INTERMEDIATE_DATA

if TYPE_CHECKING:
    from flame_sdk.clients.data import FhirSourceClient, S3SourceClient
    from flame_sdk.clients.messages import Message
    from flame_sdk.config_view import NodeConfigView

#: Bound on how long ``wait_until_reported`` waits by default for the node to poll ``/healthz``.
DEFAULT_REPORT_TIMEOUT = 600.0


class FlameSDK(Protocol):
    """The synchronous SDK an analysis uses (``FlameCoreSDK``, or ``FakeFlameSDK`` in unit tests)."""

    @property
    def config(self) -> NodeConfigView:
        """This node's configuration, read-only, as the reference SDK names it; ``config.finished`` turns
        True once the analysis finished for this node."""
        ...

    def get_aggregator_id(self) -> str | None:
        """The aggregator's node id, or None when called on the aggregator itself."""
        ...

    def get_participants(self) -> list[dict[str, str]]:
        """Partner configs (``nodeId``, ``nodeType``), without this node."""
        ...

    def get_participant_ids(self) -> list[str]:
        """Partner node ids, without this node."""
        ...

    def get_analysis_id(self) -> str:
        ...

    def get_project_id(self) -> str:
        ...

    def get_id(self) -> str:
        """This node's id."""
        ...

    def get_role(self) -> str:
        """``"aggregator"`` or ``"default"``."""
        ...

    def analysis_finished(self) -> bool:
        """Tell every partner that the analysis is finished, then finish this node."""
        ...

    def ready_check(self, nodes: list[str] | Literal["all"] = "all", attempt_interval: float = 30,
                    timeout: float | None = None) -> dict[str, bool]:
        """Wait until the given partners acknowledge a ``ready_check`` message; {node id: ready}."""
        ...

    def flame_log(self, msg: str | bytes | Iterable[Any], sep: str = "", end: str = "", log_type: str = "info",
                  append: bool = False, halt_submission: bool = False) -> None:
        """Print and stream a log. ``log_type='error'`` marks the analysis failed and raises AnalysisError."""
        ...

    def get_progress(self) -> int:
        ...

    def set_progress(self, progress: int | float) -> None:
        """Set progress (0..100, only increasing; floats are truncated to int)."""
        ...

    def fhir_to_csv(self, fhir_data: dict[str, Any], col_key_seq: str, value_key_seq: str, input_resource: str,
                    row_key_seq: str | None = None, row_id_filters: list[str] | None = None,
                    col_id_filters: list[str] | None = None, row_col_name: str = "", separator: str = ",",
                    output_type: Literal["file", "dict"] = "file") -> StringIO | dict[Any, dict[Any, Any]] | None:
        """Pivot a FHIR bundle into a CSV table (StringIO) or nested dict; follows ``next`` page links."""
        ...

    def send_message(self, receivers: list[str], message_category: str, message: dict[str, Any],
                     max_attempts: int = 1, timeout: float | None = None,
                     attempt_timeout: float = 10) -> tuple[list[str], list[str]]:
        """Send to partners; return (acknowledged, not acknowledged)."""
        ...

    def await_messages(self, senders: list[str], message_category: str, message_id: str | None = None,
                       timeout: float | None = None) -> dict[str, list[Message] | None]:
        """Wait for messages of a category from every sender; None for senders that did not answer."""
        ...

    def get_messages(self, status: Literal["unread", "read"] = "unread") -> list[Message]:
        ...

    def delete_messages(self, message_ids: list[str]) -> int:
        """Delete received messages by id; return how many were deleted."""
        ...

    def clear_messages(self, status: Literal["read", "unread", "all"] = "read", min_age: float | None = None) -> int:
        """Delete received messages by status, optionally only those older than ``min_age`` seconds."""
        ...

    def send_message_and_wait_for_responses(self, receivers: list[str], message_category: str,
                                            message: dict[str, Any], max_attempts: int = 1,
                                            timeout: float | None = None,
                                            attempt_timeout: float = 10) -> dict[str, list[Message] | None]:
        """send_message, then await_messages of the same category from the receivers."""
        ...

    def submit_final_result(self, result: Any, output_type: Literal["str", "bytes", "pickle"] | list[str] = "str",
                            multiple_results: bool = False, filename: str | list[str] | None = None,
                            local_dp: dict[str, float] | None = None) -> dict[str, str] | list[dict[str, str]]:
        """Upload the final result(s) to the hub (aggregator only)."""
        ...

    def save_intermediate_data(self, data: Any, location: Literal["local", "global"],
                               remote_node_ids: list[str] | None = None,
                               tag: str | None = None) -> dict[str, dict[str, str]] | dict[str, str]:
        """Save locally (optionally tagged) or globally, encrypted for each of ``remote_node_ids``."""
        ...

    def get_intermediate_data(self, location: Literal["local", "global"], query: str | None = None,
                              tag: str | None = None,
                              tag_option: Literal["all", "last", "first"] | None = "all") -> Any:
        ...

    def send_intermediate_data(self, receivers: list[str], data: Any, message_category: str = INTERMEDIATE_DATA,
                               max_attempts: int = 1, timeout: float | None = None,
                               attempt_timeout: float = 10) -> tuple[list[str], list[str]]:
        """Save ``data`` globally for the receivers, then message each the storage id meant for it."""
        ...

    def await_intermediate_data(self, senders: list[str], message_category: str = INTERMEDIATE_DATA,
                                timeout: float | None = None) -> dict[str, Any]:
        """Wait for intermediate data from every sender; None for senders that did not answer."""
        ...

    def get_local_tags(self, filter: str | None = None) -> list[str]:  # noqa: A002 - documented name
        ...

    def get_data_sources(self) -> list[dict[str, Any]] | None:
        ...

    def get_data_client(self, data_id: str) -> FhirSourceClient | S3SourceClient | None:
        ...

    def get_fhir_data(self, fhir_queries: list[str] | None = []) -> list[dict[str, Any]] | None:  # noqa: B006
        ...

    def get_s3_data(self, s3_keys: list[str] | None = []) -> list[dict[str, bytes]] | None:  # noqa: B006
        ...

    def wait_until_reported(self, timeout: float | None = DEFAULT_REPORT_TIMEOUT) -> bool:
        """Block until the node has polled the final status from ``/healthz`` (and logs are flushed).

        Call it at the end of an analysis instead of a busy loop; True if it was reported in time.
        """
        ...

    def close(self) -> None:
        """Stop the embedded API, close HTTP sessions and the event loop (idempotent)."""
        ...
