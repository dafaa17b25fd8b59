"""FakeFlameSDK: an in-memory stand-in for FlameCoreSDK to unit-test one analyzer or aggregator.

No server, no threads, never blocks. It has every public method of ``FlameCoreSDK``; what a partner would
send is scripted with :meth:`FakeFlameSDK.script_aggregator` / :meth:`FakeFlameSDK.script_analyzers` (whole
rounds of a star run) or :meth:`FakeFlameSDK.push_intermediate_data` and :meth:`FakeFlameSDK.deliver_message`
(single items), and what the node did is recorded in ``sent_data``, ``sent_messages``, ``final_results`` and
``logs``::

    flame = FakeFlameSDK("default", s3_data=[{"data.csv": b"x\\n1\\n2\\n"}])
    flame.script_aggregator()                  # the aggregator finishes after round 1
    StarModel(MyAnalyzer, MyAggregator, "s3", flame=flame)
    assert flame.sent_data[0].data == 1.5

    flame = FakeFlameSDK("aggregator", partner_ids=["a", "b"])
    flame.script_analyzers([1.0, 2.0])         # round 1: a sent 1.0, b sent 2.0
    StarModel(MyAnalyzer, MyAggregator, "s3", flame=flame)
    assert flame.final_results[0].result == 1.5

Intermediate data is pickled on the way out and in with the real storage serialization, so data that could
not travel between nodes fails here too. Status, progress and finishing follow the real run state. A wait
with nothing scripted returns None at once (as a timeout would). ``local_dp`` is recorded on the submitted
result, but no noise is added. Data requests answer as the SDK does (unreadable S3 keys refused, missing
keys reported, empty FHIR searches noticed).
"""

from __future__ import annotations

import copy
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from io import StringIO
from typing import TYPE_CHECKING, Any, Literal

from flame_sdk.clients.messages import Message
from flame_sdk.config import NodeConfig, NodeIdentity
from flame_sdk.config_view import NodeConfigView
from flame_sdk.data.requests import (
    KEYS_SHOWN,
    matched_nothing,
    missing_keys,
    missing_keys_error,
    missing_keys_warning,
    no_match_notice,
    node_name,
    refuse_unreadable,
)
from flame_sdk.errors import AnalysisError, RoleError, UnknownNodeError
from flame_sdk.interface import FlameSDK
from flame_sdk.logs import FlameLogger, LogRecord
from flame_sdk.protocol.envelope import ANALYSIS_FINISHED
from flame_sdk.protocol.status import AnalysisStatus
from flame_sdk.run_state import RunState
from flame_sdk.storage.serialization import check_output_type, dump_object, load_object

#: The Keycloak token a fake node shows in ``config.keycloak_token``.
FAKE_TOKEN = "fake-token"


@dataclass
class SentData:
    receivers: list[str]
    data: Any
    category: str


@dataclass
class SentMessage:
    receivers: list[str]
    category: str
    body: dict[str, Any]


@dataclass
class FinalResult:
    result: Any
    output_type: Any
    multiple_results: bool
    filename: str | list[str] | None
    local_dp: dict[str, float] | None


def _travel(data: Any) -> Any:
    """A copy of ``data`` as a partner would get it (serialized and loaded as the storage client does)."""
    try:
        return load_object(dump_object(data))
    except ValueError as exc:
        raise ValueError(f"cannot send {type(data).__name__} between nodes: {exc}") from None


class FakeFlameSDK:
    """One fake node. ``role`` is ``'default'`` (analyzer) or ``'aggregator'``."""

    def __init__(
        self,
        role: Literal["default", "aggregator"] = "default",
        *,
        node_id: str | None = None,
        aggregator_id: str = "aggregator",
        partner_ids: list[str] | None = None,
        fhir_data: list[dict[str, Any]] | None = None,
        s3_data: list[dict[str, bytes]] | None = None,
        analysis_id: str = "fake-analysis",
        project_id: str = "fake-project",
        unready: Iterable[str] = (),
        silent: bool = True,
    ) -> None:
        if role not in ("default", "aggregator"):
            raise ValueError(f"role must be 'default' or 'aggregator', got {role!r}")
        self.role = role
        self.node_id = node_id or (aggregator_id if role == "aggregator" else "analyzer-1")
        self.aggregator_id = aggregator_id
        if partner_ids is None:
            partner_ids = ["analyzer-1", "analyzer-2"] if role == "aggregator" else [aggregator_id]
        if self.node_id in partner_ids:
            raise ValueError(f"partner_ids must not contain this node's own id {self.node_id!r}")
        self.partner_ids = list(partner_ids)
        self.fhir_data, self.s3_data = fhir_data, s3_data
        self.analysis_id, self.project_id = analysis_id, project_id
        self.unready = set(unready)
        self.state = RunState()
        self.logger = FlameLogger(silent=silent, label=self.node_id, state=self.state, history_limit=None)
        fake_config = NodeConfig(analysis_id, project_id, keycloak_token=FAKE_TOKEN, data_source_token=None,
                                 deployment_name="fake", base_url="http://nginx-fake")
        self.config = NodeConfigView(fake_config, self.state, lambda: NodeIdentity(self.node_id, self.role),
                                     lambda: FAKE_TOKEN)
        self.state.set_status(AnalysisStatus.EXECUTING)
        self.sent_data: list[SentData] = []
        self.sent_messages: list[SentMessage] = []
        self.final_results: list[FinalResult] = []
        self._inbox: list[Message] = []
        self._queued: dict[tuple[str, str], deque[Any]] = {}
        self._store: dict[str, Any] = {}
        self._tags: dict[str, list[str]] = {}
        self._number = 0
        self._finish_when_drained = False

    # -- scripting (test side) ------------------------------------------------------------------------
    def push_intermediate_data(self, sender: str, data: Any, message_category: str = "intermediate_data") -> None:
        """Queue data as if ``sender`` had sent it; each await takes the oldest one per sender."""
        self._check(sender, "sender")
        self._queued.setdefault((sender, message_category), deque()).append(_travel(data))

    def script_aggregator(self, *results: Any, finish: bool = True) -> None:
        """For an analyzer under test: the aggregator answers round 1, 2, ... with ``results`` and then (with
        ``finish``) ends the analysis, as a real aggregator does with ``analysis_finished``.

        ``StarModel(..., flame=fake)`` then runs ``len(results) + 1`` rounds and ends as on a node. The end
        is delivered when the analyzer waits for an answer after the last result, so the node's status
        stays ``executing`` until then."""
        if self.role != "default":
            raise RoleError("script_aggregator scripts the aggregator for an analyzer (role 'default'); on the "
                            "aggregator, script the analyzers with script_analyzers")
        for result in results:
            self.push_intermediate_data(self.aggregator_id, result)
        self._finish_when_drained = finish

    def script_analyzers(self, *rounds: Mapping[str, Any] | Sequence[Any]) -> None:
        """For an aggregator under test: what the analyzers send in round 1, 2, ...; each round maps analyzer
        id to its result, or lists one result per partner in ``partner_ids`` order."""
        if self.role != "aggregator":
            raise RoleError("script_analyzers scripts the analyzers for the aggregator; on an analyzer, script "
                            "the aggregator with script_aggregator")
        for number, results in enumerate(rounds, start=1):
            if not isinstance(results, Mapping):
                if len(results) != len(self.partner_ids):
                    raise ValueError(f"round {number} lists {len(results)} result(s) for {len(self.partner_ids)} "
                                     f"analyzers {self.partner_ids}; give one per analyzer, or a dict by id")
                results = dict(zip(self.partner_ids, results, strict=True))
            for sender, result in results.items():
                self.push_intermediate_data(sender, result)

    def deliver_message(self, sender: str, message_category: str, message: dict[str, Any]) -> Message:
        """Put a message from ``sender`` into this node's inbox (``analysis_finished`` finishes the node)."""
        self._check(sender, "sender")
        self._number += 1
        msg = Message.outgoing(copy.deepcopy(message), message_category, sender, self._number)
        msg.meta["type"] = "incoming"
        self._inbox.append(msg)
        if message_category == ANALYSIS_FINISHED:
            self.state.finish()
        return msg

    @property
    def logs(self) -> list[LogRecord]:
        return list(self.logger.history)

    @property
    def status(self) -> str:
        return self.state.status.value

    @property
    def finished(self) -> bool:
        return self.state.finished

    def _check(self, node: str, what: str) -> None:
        if node not in self.partner_ids:
            raise UnknownNodeError(f"{what} {node!r} is not a partner of this fake node; partners: {self.partner_ids}")

    # -- general ----------------------------------------------------------------------------------------
    def get_aggregator_id(self) -> str | None:
        return None if self.role == "aggregator" else self.aggregator_id

    def get_participants(self) -> list[dict[str, str]]:
        return [{"nodeId": p, "nodeType": "aggregator" if p == self.aggregator_id else "default"}
                for p in self.partner_ids]

    def get_participant_ids(self) -> list[str]:
        return list(self.partner_ids)

    def get_analysis_id(self) -> str:
        return self.analysis_id

    def get_project_id(self) -> str:
        return self.project_id

    def get_id(self) -> str:
        return self.node_id

    def get_role(self) -> str:
        return self.role

    def analysis_finished(self) -> bool:
        if self.partner_ids:
            self.send_message(self.partner_ids, ANALYSIS_FINISHED, {})
        self.state.finish()
        return self.state.finished

    def ready_check(self, nodes: list[str] | Literal["all"] = "all", attempt_interval: float = 30,
                    timeout: float | None = None) -> dict[str, bool]:
        targets = self.partner_ids if nodes == "all" else list(nodes)
        for node in targets:
            self._check(node, "node")
        return {node: node not in self.unready for node in targets}

    def flame_log(self, msg: str | bytes | Iterable[Any], sep: str = "", end: str = "", log_type: str = "info",
                  append: bool = False, halt_submission: bool = False) -> None:
        if log_type == "error":
            self.state.set_status(AnalysisStatus.FAILED)
            raise AnalysisError(self.logger.log(msg, log_type, sep, end, append, halt_submission))
        self.logger.log(msg, log_type, sep, end, append, halt_submission)

    def get_progress(self) -> int:
        return self.state.progress

    def set_progress(self, progress: int | float) -> None:
        problem = self.state.set_progress(progress)
        if problem is not None:
            self.logger.log(problem, "warn")

    def fhir_to_csv(self, fhir_data: dict[str, Any], col_key_seq: str, value_key_seq: str, input_resource: str,
                    row_key_seq: str | None = None, row_id_filters: list[str] | None = None,
                    col_id_filters: list[str] | None = None, row_col_name: str = "", separator: str = ",",
                    output_type: Literal["file", "dict"] = "file") -> StringIO | dict[Any, dict[Any, Any]] | None:
        """Same conversion as the real SDK, without following ``next`` page links."""
        from flame_sdk.data.fhir_to_csv import fhir_to_csv

        return fhir_to_csv(fhir_data, col_key_seq, value_key_seq, input_resource, row_key_seq=row_key_seq,
                           row_id_filters=row_id_filters, col_id_filters=col_id_filters, row_col_name=row_col_name,
                           separator=separator, output_type=output_type, next_page=None)

    # -- messages -------------------------------------------------------------------------------------
    def send_message(self, receivers: list[str], message_category: str, message: dict[str, Any],
                     max_attempts: int = 1, timeout: float | None = None,
                     attempt_timeout: float = 10) -> tuple[list[str], list[str]]:
        for node in receivers:
            self._check(node, "receiver")
        self.sent_messages.append(SentMessage(list(receivers), message_category, copy.deepcopy(message)))
        return list(receivers), []

    def await_messages(self, senders: list[str], message_category: str, message_id: str | None = None,
                       timeout: float | None = None) -> dict[str, list[Message] | None]:
        result: dict[str, list[Message] | None] = {}
        for sender in senders:
            self._check(sender, "sender")
            found = self._unread(sender, message_category, message_id)
            for msg in found:
                msg.set_read()
            result[sender] = found or None
        return result

    def _unread(self, sender: str, message_category: str, message_id: str | None = None) -> list[Message]:
        return [m for m in self._inbox if m.sender == sender and m.category == message_category
                and m.status == "unread" and (message_id is None or m.id == message_id)]

    def get_messages(self, status: Literal["unread", "read"] = "unread") -> list[Message]:
        if status not in ("unread", "read"):
            raise ValueError(f"status must be 'unread' or 'read', got {status!r}")
        return [m for m in self._inbox if m.status == status]

    def delete_messages(self, message_ids: list[str]) -> int:
        before = len(self._inbox)
        self._inbox = [m for m in self._inbox if m.id not in set(message_ids)]
        return before - len(self._inbox)

    def clear_messages(self, status: Literal["read", "unread", "all"] = "read", min_age: float | None = None) -> int:
        before = len(self._inbox)
        self._inbox = [m for m in self._inbox if not (status == "all" or m.status == status)]
        return before - len(self._inbox)

    def send_message_and_wait_for_responses(self, receivers: list[str], message_category: str,
                                            message: dict[str, Any], max_attempts: int = 1,
                                            timeout: float | None = None,
                                            attempt_timeout: float = 10) -> dict[str, list[Message] | None]:
        self.send_message(receivers, message_category, message, max_attempts, timeout, attempt_timeout)
        return self.await_messages(receivers, message_category, timeout=timeout)

    # -- storage --------------------------------------------------------------------------------------
    def submit_final_result(self, result: Any, output_type: Literal["str", "bytes", "pickle"] | list[str] = "str",
                            multiple_results: bool = False, filename: str | list[str] | None = None,
                            local_dp: dict[str, float] | None = None) -> dict[str, str] | list[dict[str, str]]:
        if self.role != "aggregator":
            raise RoleError("submit_final_result is only available on the aggregator node; send your result to "
                            "the aggregator with send_intermediate_data instead")
        for kind in output_type if isinstance(output_type, list) else [output_type]:
            check_output_type(kind)
        self.final_results.append(FinalResult(copy.deepcopy(result), output_type, multiple_results, filename,
                                              local_dp))
        response = {"status": "success", "url": f"fake://final/{len(self.final_results)}"}
        if multiple_results and isinstance(result, (list, tuple)):
            return [dict(response) for _ in result]
        return response

    def save_intermediate_data(self, data: Any, location: Literal["local", "global"],
                               remote_node_ids: list[str] | None = None,
                               tag: str | None = None) -> dict[str, dict[str, str]] | dict[str, str]:
        if location not in ("local", "global"):
            raise ValueError(f"location must be 'local' or 'global', got {location!r}")
        if location == "global":
            if not remote_node_ids:
                raise ValueError("saving globally needs remote_node_ids: the nodes the data is encrypted for")
            saved = {}
            for node in remote_node_ids:
                self._check(node, "remote node")
                saved[node] = self._put(data)
            return saved
        response = self._put(data)
        if tag is not None:
            self._tags.setdefault(tag, []).append(response["id"])
        return response

    def _put(self, data: Any) -> dict[str, str]:
        key = uuid.uuid4().hex
        self._store[key] = _travel(data)
        return {"status": "success", "url": f"fake://intermediate/{key}", "id": key}

    def get_intermediate_data(self, location: Literal["local", "global"], query: str | None = None,
                              tag: str | None = None,
                              tag_option: Literal["all", "last", "first"] | None = "all") -> Any:
        if tag is not None:
            ids = self._tags.get(tag, [])
            if not ids:
                raise KeyError(f"no local data with tag {tag!r}; tags: {sorted(self._tags)}")
            picked = {"first": ids[:1], "last": ids[-1:]}.get(tag_option or "all", ids)
            values = [_travel(self._store[i]) for i in picked]
            return values[0] if len(values) == 1 else values
        if query not in self._store:
            raise KeyError(f"no intermediate data with id {query!r}")
        return _travel(self._store[query])

    def send_intermediate_data(self, receivers: list[str], data: Any, message_category: str = "intermediate_data",
                               max_attempts: int = 1, timeout: float | None = None,
                               attempt_timeout: float = 10) -> tuple[list[str], list[str]]:
        for node in receivers:
            self._check(node, "receiver")
        self.sent_data.append(SentData(list(receivers), _travel(data), message_category))
        return list(receivers), []

    def await_intermediate_data(self, senders: list[str], message_category: str = "intermediate_data",
                                timeout: float | None = None) -> dict[str, Any]:
        result = {}
        for sender in senders:
            self._check(sender, "sender")
            queue = self._queued.get((sender, message_category))
            result[sender] = queue.popleft() if queue else None
            if not queue and sender == self.aggregator_id and self._finish_when_drained:
                self._finish_when_drained = False
                self.deliver_message(sender, ANALYSIS_FINISHED, {})
        return result

    def get_local_tags(self, filter: str | None = None) -> list[str]:  # noqa: A002 - documented name
        return sorted(t for t in self._tags if filter is None or filter in t)

    # -- data -----------------------------------------------------------------------------------------
    def get_data_sources(self) -> list[dict[str, Any]] | None:
        sources = [("fhir", self.fhir_data), ("s3", self.s3_data)]
        return [{"id": name, "name": name, "type": kind, "tags": [f"type:{kind}"]}
                for kind, data in sources for name in (self._source_name(kind, n) for n in range(len(data or ())))]

    def get_data_client(self, data_id: str) -> Any:
        return None

    def get_fhir_data(self, fhir_queries: list[str] | None = []) -> list[dict[str, Any]] | None:  # noqa: B006
        """The given FHIR data (whatever the queries); None without queries, as the docs say. A given Bundle
        without matches gets the real SDK's notice."""
        if not fhir_queries:
            return None
        if self.fhir_data is None:
            self.logger.log("no FHIR data was given to this FakeFlameSDK (fhir_data=...)", "warn")
            return None
        for number, source in enumerate(self.fhir_data):
            for query, bundle in source.items():
                if matched_nothing(bundle):
                    self.logger.log(no_match_notice(query, self._source_name("fhir", number),
                                                    node_name(self.node_id)), "notice")
        return copy.deepcopy(self.fhir_data)

    def get_s3_data(self, s3_keys: list[str] | None = []) -> list[dict[str, bytes]] | None:  # noqa: B006
        """The given S3 data filtered by key (all for ``[]``); None for None, as the docs say. Keys a node's
        S3 gateway cannot carry are refused, and missing keys are reported, as the real SDK does."""
        if s3_keys is None:
            return None
        if self.s3_data is None:
            self.logger.log("no S3 data was given to this FakeFlameSDK (s3_data=...)", "warn")
            return None
        named = list(dict.fromkeys(s3_keys))
        refuse_unreadable(named, "the keys asked for")
        if not named:
            for number, source in enumerate(self.s3_data):
                refuse_unreadable(list(source), f"S3 source {self._source_name('s3', number)!r}",
                                  " or name the others in get_s3_data([...])")
        found = [{name: value for name, value in source.items() if not named or name in named}
                 for source in copy.deepcopy(self.s3_data)]
        missing = missing_keys(named, found)
        if missing and self.s3_data:
            held = {self._source_name("s3", n): list(source)[:KEYS_SHOWN + 1] for n, source in enumerate(self.s3_data)}
            if len(missing) == len(named):
                raise missing_keys_error(named, held, node_name(self.node_id))
            self.logger.log(missing_keys_warning(missing, held, node_name(self.node_id)), "warn")
        return found

    def _source_name(self, kind: str, number: int) -> str:
        sources = self.fhir_data if kind == "fhir" else self.s3_data
        return f"fake-{kind}" if len(sources or ()) <= 1 else f"fake-{kind}-{number}"

    # -- lifecycle (extensions) -----------------------------------------------------------------------
    def wait_until_reported(self, timeout: float | None = 600.0) -> bool:
        return True

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeFlameSDK:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if TYPE_CHECKING:
    _implements: type[FlameSDK] = FakeFlameSDK  # mypy: the fake cannot drift from the SDK interface
