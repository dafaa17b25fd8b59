"""Fake nodes that talk to each other in one process: the star template's test mode.

``StarModel(..., test_mode=True, test_kwargs={...})`` (as in PrivateAIM/python-sdk-patterns) runs one node
of an analysis on a :class:`LinkedFakeSDK`. Every linked fake of one analysis id joins the same
:class:`FakeNetwork`, so models started in threads with matching ``test_kwargs`` form a run: messages and
intermediate data reach the partner's fake (pickled on the way, as between real nodes), waits block until
the data is there, the run ended or the timeout passed (no polling), ``analysis_finished`` finishes the
partners, and a partner's final status is adopted as the node's status sync would adopt it.

Unlike a node, a linked fake returns its data exactly as ``test_kwargs`` gave it (whatever the queries or
keys), so any Python object can stand in for a node's data, as in the reference's test mode.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import numpy as np

from flame_sdk.clients.messages import Message
from flame_sdk.errors import AnalysisError
from flame_sdk.protocol.envelope import INTERMEDIATE_DATA
from flame_sdk.protocol.status import UNSUCCESSFUL_STATUSES
from flame_sdk.storage.local_dp import check_number, check_params
from flame_sdk.testing.fake_sdk import FakeFlameSDK

#: Keys ``test_kwargs`` must have (those of the reference's mock SDK).
REQUIRED_TEST_KWARGS = ("node_id", "aggregator_id", "role", "participants")
#: Defaults of the optional ids (those of the reference's mock SDK).
DEFAULT_ANALYSIS_ID = "analysis_123"
DEFAULT_PROJECT_ID = "project_123"


class FakeNetwork:
    """The linked fakes of one analysis in this process, and the condition their waits block on."""

    _registry: ClassVar[weakref.WeakValueDictionary[str, FakeNetwork]] = weakref.WeakValueDictionary()
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, analysis_id: str) -> None:
        self.analysis_id = analysis_id
        self.changed = threading.Condition(threading.RLock())
        self._nodes: dict[str, LinkedFakeSDK] = {}

    @classmethod
    def for_analysis(cls, analysis_id: str) -> FakeNetwork:
        """The network of ``analysis_id`` in this process (made on first use, dropped with its last node)."""
        with cls._registry_lock:
            network = cls._registry.get(analysis_id)
            if network is None:
                network = cls._registry[analysis_id] = cls(analysis_id)
            return network

    def join(self, node: LinkedFakeSDK) -> None:
        with self.changed:
            known = self._nodes.get(node.node_id)
            if known is not None and known is not node and known.state.ended() is None:
                raise ValueError(f"node id {node.node_id!r} is already running in analysis {self.analysis_id!r}; "
                                 f"give each node of a test run its own node_id")
            self._nodes[node.node_id] = node
            self.changed.notify_all()

    def node(self, node_id: str) -> LinkedFakeSDK | None:
        with self.changed:
            return self._nodes.get(node_id)

    def notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)


class LinkedFakeSDK(FakeFlameSDK):
    """A :class:`FakeFlameSDK` whose partners are the other linked fakes of its :class:`FakeNetwork`.

    ``data`` is what ``get_fhir_data`` (``data_type='fhir'``) or ``get_s3_data`` (``'s3'``) returns, as given.
    """

    def __init__(
        self,
        network: FakeNetwork,
        role: Literal["default", "aggregator"],
        *,
        node_id: str,
        aggregator_id: str,
        partner_ids: list[str],
        data: Any = None,
        data_type: Literal["fhir", "s3"] | None = None,
        project_id: str = DEFAULT_PROJECT_ID,
        silent: bool = False,
    ) -> None:
        super().__init__(role, node_id=node_id, aggregator_id=aggregator_id, partner_ids=partner_ids,
                         analysis_id=network.analysis_id, project_id=project_id, silent=silent)
        self.network = network
        self.data, self.data_type = data, data_type
        #: The last final result as the hub stores it (with the local-DP noise, if asked for).
        self.final_results_storage: Any = None
        self.state.on_change = network.notify
        network.join(self)

    # -- waiting --------------------------------------------------------------------------------------
    def _wait(self, done: Callable[[], bool], timeout: float | None, what: str,
              silent: Callable[[], list[str]]) -> None:
        """Block until ``done``, the end of the run, or ``timeout``; AnalysisError if the run failed meanwhile."""

        def over() -> bool:
            self._sync_partner_statuses()
            return done() or self.state.ended() is not None

        self.network.wait_for(over, timeout)
        ended = self.state.ended()
        if ended in UNSUCCESSFUL_STATUSES and not done():
            raise AnalysisError(f"the analysis was {ended} while waiting for {what} from {silent()}")

    def _sync_partner_statuses(self) -> None:
        """Adopt a partner's final status, as status sync on a node does (``RunState.status_sync``)."""
        partners = {node_id: self.network.node(node_id) for node_id in self.partner_ids}
        statuses = {node_id: node.state.status.value for node_id, node in partners.items() if node is not None}
        adopted = self.state.apply_partner_statuses(statuses)
        if adopted is not None:
            status, senders = adopted
            self.logger.log(f"set analysis status to {status}, because of partner statuses of {senders}")

    def _reach(self, receivers: list[str], timeout: float | None) -> list[LinkedFakeSDK]:
        """The receivers' fakes once they joined (waiting up to ``timeout``); absent ones are left out."""
        self.network.wait_for(lambda: all(self.network.node(r) for r in receivers) or self.state.ended() is not None,
                              timeout)
        return [node for node in map(self.network.node, receivers) if node is not None]

    # -- general --------------------------------------------------------------------------------------
    def ready_check(self, nodes: list[str] | Literal["all"] = "all", attempt_interval: float = 30,
                    timeout: float | None = None) -> dict[str, bool]:
        """Ready once a partner's fake joined the network (within ``timeout``)."""
        targets = self.partner_ids if nodes == "all" else list(nodes)
        for node in targets:
            self._check(node, "node")
        reached = {node.node_id for node in self._reach(targets, timeout)}
        return {node: node in reached and node not in self.unready for node in targets}

    # -- messages -------------------------------------------------------------------------------------
    def send_message(self, receivers: list[str], message_category: str, message: dict[str, Any],
                     max_attempts: int = 1, timeout: float | None = None,
                     attempt_timeout: float = 10) -> tuple[list[str], list[str]]:
        super().send_message(receivers, message_category, message, max_attempts, timeout, attempt_timeout)
        with self.network.changed:
            reached = self._reach(receivers, timeout)
            for node in reached:
                node.deliver_message(self.node_id, message_category, message)
            self.network.changed.notify_all()
        acked = [node.node_id for node in reached]
        return acked, [r for r in receivers if r not in acked]

    def await_messages(self, senders: list[str], message_category: str, message_id: str | None = None,
                       timeout: float | None = None) -> dict[str, list[Message] | None]:
        for sender in senders:
            self._check(sender, "sender")

        def missing() -> list[str]:
            return [s for s in senders if not self._unread(s, message_category, message_id)]

        self._wait(lambda: not missing(), timeout, f"messages of category {message_category!r}", missing)
        with self.network.changed:
            return super().await_messages(senders, message_category, message_id, timeout)

    def get_messages(self, status: Literal["unread", "read"] = "unread") -> list[Message]:
        with self.network.changed:
            return super().get_messages(status)

    def delete_messages(self, message_ids: list[str]) -> int:
        with self.network.changed:
            return super().delete_messages(message_ids)

    def clear_messages(self, status: Literal["read", "unread", "all"] = "read", min_age: float | None = None) -> int:
        with self.network.changed:
            return super().clear_messages(status, min_age)

    # -- intermediate data ----------------------------------------------------------------------------
    def send_intermediate_data(self, receivers: list[str], data: Any, message_category: str = INTERMEDIATE_DATA,
                               max_attempts: int = 1, timeout: float | None = None,
                               attempt_timeout: float = 10) -> tuple[list[str], list[str]]:
        super().send_intermediate_data(receivers, data, message_category, max_attempts, timeout, attempt_timeout)
        with self.network.changed:
            reached = self._reach(receivers, timeout)
            for node in reached:
                node.push_intermediate_data(self.node_id, data, message_category)
            self.network.changed.notify_all()
        acked = [node.node_id for node in reached]
        return acked, [r for r in receivers if r not in acked]

    def await_intermediate_data(self, senders: list[str], message_category: str = INTERMEDIATE_DATA,
                                timeout: float | None = None) -> dict[str, Any]:
        for sender in senders:
            self._check(sender, "sender")

        def missing() -> list[str]:
            return [s for s in senders if not self._queued.get((s, message_category))]

        self._wait(lambda: not missing(), timeout, f"intermediate data ({message_category!r})", missing)
        with self.network.changed:
            return super().await_intermediate_data(senders, message_category, timeout)

    # -- final results --------------------------------------------------------------------------------
    def submit_final_result(self, result: Any, output_type: Literal["str", "bytes", "pickle"] | list[str] = "str",
                            multiple_results: bool = False, filename: str | list[str] | None = None,
                            local_dp: dict[str, float] | None = None) -> dict[str, str] | list[dict[str, str]]:
        """Record the result; with ``local_dp`` the stored number(s) get Laplace noise as the result service adds
        (one number per file: several numbers as ``multiple_results=True``)."""
        if local_dp is None:
            stored = result
        elif multiple_results and isinstance(result, (list, tuple)):
            stored = [_noised(item, local_dp) for item in result]
        else:
            stored = _noised(result, local_dp)
        response = super().submit_final_result(result, output_type, multiple_results, filename, local_dp)
        self.final_results_storage = stored
        return response

    # -- data -----------------------------------------------------------------------------------------
    def get_fhir_data(self, fhir_queries: list[str] | None = []) -> Any:  # noqa: B006 - documented default
        return self._given("fhir")

    def get_s3_data(self, s3_keys: list[str] | None = []) -> Any:  # noqa: B006 - documented default
        return self._given("s3")

    def _given(self, kind: str) -> Any:
        if self.data_type != kind:
            raise ValueError(f"no {kind.upper()} data was given to this test node (test_kwargs has no "
                             f"'{kind}_data')")
        return self.data


def _noised(result: Any, local_dp: dict[str, float]) -> float:
    """The number plus Laplace(0, sensitivity / epsilon) noise; the real SDK's checks first."""
    epsilon, sensitivity = check_params(local_dp)
    return check_number(result) + float(np.random.default_rng().laplace(0.0, sensitivity / epsilon))


def sdk_from_test_kwargs(test_kwargs: Mapping[str, Any] | None) -> LinkedFakeSDK:
    """The linked fake for one node, from the reference's ``test_kwargs``.

    Keys: ``node_id``, ``aggregator_id``, ``role`` (``'default'`` or ``'aggregator'``), ``participants``
    (the other nodes, as ``{'id': ...}`` dicts as in the reference, or ``{'nodeId': ...}`` as
    ``get_participants()`` returns them), ``fhir_data`` or ``s3_data`` (this node's data, any object; None
    on the aggregator), optional ``analysis_id`` and ``project_id``. Nodes with the same ``analysis_id``
    (default ``'analysis_123'``) in one process form one run.
    """
    if not isinstance(test_kwargs, Mapping):
        raise ValueError(f"test_mode=True needs test_kwargs, a dict with the keys {', '.join(REQUIRED_TEST_KWARGS)} "
                         f"and 'fhir_data' or 's3_data'; got {test_kwargs!r}")
    missing = [key for key in REQUIRED_TEST_KWARGS if key not in test_kwargs]
    if missing:
        raise ValueError(f"test_kwargs lacks {missing}: it needs {', '.join(REQUIRED_TEST_KWARGS)} and 'fhir_data' "
                         f"or 's3_data' (this node's data; None on the aggregator)")
    kinds = [kind for kind in ("fhir", "s3") if f"{kind}_data" in test_kwargs]
    if len(kinds) != 1:
        raise ValueError("test_kwargs needs exactly one of 'fhir_data' and 's3_data' (this node's data; None on the "
                         f"aggregator), got {sorted(k for k in test_kwargs if k.endswith('_data'))}")
    node_id = str(test_kwargs["node_id"])
    participants = test_kwargs["participants"]
    if not isinstance(participants, (list, tuple)) or not all(
            isinstance(p, Mapping) and ("id" in p or "nodeId" in p) for p in participants):
        raise ValueError(f"test_kwargs['participants'] must be a list of dicts with an 'id' (the other nodes), got "
                         f"{participants!r}")
    partner_ids = [str(p["id"] if "id" in p else p["nodeId"]) for p in participants]
    network = FakeNetwork.for_analysis(str(test_kwargs.get("analysis_id", DEFAULT_ANALYSIS_ID)))
    kind: Literal["fhir", "s3"] = "fhir" if kinds[0] == "fhir" else "s3"
    return LinkedFakeSDK(network, test_kwargs["role"], node_id=node_id,
                         aggregator_id=str(test_kwargs["aggregator_id"]),
                         partner_ids=[p for p in partner_ids if p != node_id],
                         data=test_kwargs[f"{kind}_data"], data_type=kind,
                         project_id=str(test_kwargs.get("project_id", DEFAULT_PROJECT_ID)))
