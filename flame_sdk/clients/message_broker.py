"""Message broker client: subscription, discovery, sending with acknowledgements, awaiting messages, the
ready check."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from typing import Any

from flame_sdk.clients.messages import Inbox, Message, encode_request
from flame_sdk.config import NodeConfig, NodeIdentity
from flame_sdk.errors import AnalysisError, UnknownNodeError
from flame_sdk.http import ServiceClient
from flame_sdk.logs import FlameLogger
from flame_sdk.protocol import broker_api, envelope
from flame_sdk.protocol.status import UNSUCCESSFUL_STATUSES, AnalysisStatus

#: While a wait has no timeout, a warning naming the silent nodes is logged this often (seconds).
SILENCE_WARNING_INTERVAL = 60.0


class MessageBrokerClient:
    """Talks to ``/message-broker`` and keeps this node's inbox (fed by the ``/webhook`` route)."""

    def __init__(self, service: ServiceClient, config: NodeConfig, logger: FlameLogger) -> None:
        self.service = service
        self.config = config
        self.logger = logger
        self.inbox = Inbox()
        #: This node's id and role, known once ``connect`` returned.
        self.identity: NodeIdentity | None = None
        self.participants: list[dict[str, str]] = []
        self._number = 0
        self._background: set[asyncio.Task[Any]] = set()
        self.on_analysis_finished: Callable[[], None] | None = None
        #: Returns the final run status once the run ended (finished, failed, stopped), else None.
        self.run_ended: Callable[[], AnalysisStatus | None] = lambda: None

    def _route(self, template: str) -> str:
        return broker_api.route(template, self.config.analysis_id)

    @property
    def own_id(self) -> str | None:
        return None if self.identity is None else self.identity.node_id

    async def connect(self) -> NodeIdentity:
        """Subscribe the webhook, then learn this node's id/role and its partners; return the identity."""
        webhook = self.config.base_url + broker_api.WEBHOOK_PATH
        await self.service.json("POST", self._route(broker_api.SUBSCRIPTIONS), json={broker_api.WEBHOOK_URL: webhook})
        me = await self.service.json("GET", self._route(broker_api.PARTICIPANTS_SELF))
        identity = NodeIdentity(me[broker_api.NODE_ID], me[broker_api.NODE_TYPE])
        everyone = await self.service.json("GET", self._route(broker_api.PARTICIPANTS))
        self.participants = [p for p in everyone if p[broker_api.NODE_ID] != identity.node_id]
        self.identity = identity
        return identity

    # -- validation ---------------------------------------------------------------------------------
    def participant_ids(self) -> list[str]:
        return [p[broker_api.NODE_ID] for p in self.participants]

    def check_nodes(self, node_ids: Any, what: str) -> list[str]:
        if isinstance(node_ids, str) or not isinstance(node_ids, (list, tuple)):
            raise TypeError(f"{what} must be a list of node ids, got {type(node_ids).__name__}")
        known = self.participant_ids()
        unknown = [n for n in node_ids if n not in known]
        if unknown:
            raise UnknownNodeError(
                f"{what} contains node id(s) {unknown} that are not partners in analysis "
                f"{self.config.analysis_id}; partner ids are {known} (see get_participant_ids())"
            )
        return list(node_ids)

    # -- sending --------------------------------------------------------------------------------------
    async def _post(self, recipients: list[str], body: dict[str, Any], deadline: float | None) -> None:
        payload = encode_request(recipients, body)
        await self.service.send(
            "POST",
            self._route(broker_api.MESSAGES),
            data=payload,
            headers={"Content-Type": "application/json"},
            deadline=deadline,
        )

    async def send_message(
        self,
        receivers: list[str],
        message_category: str,
        message: dict[str, Any],
        max_attempts: int = 1,
        timeout: float | None = None,
        attempt_timeout: float = 10,
        warn: bool = True,
    ) -> tuple[list[str], list[str]]:
        """Send and collect acknowledgements; semantics of the docs' ``send_message``."""
        receivers = self.check_nodes(receivers, "receivers")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self._number += 1
        outgoing = Message.outgoing(message, message_category, self.own_id or "", self._number)
        encode_request(receivers, outgoing.body)  # size and JSON checks before anything is sent
        if not receivers:
            return [], []
        start = time.monotonic()
        pending = list(receivers)
        try:
            for attempt in range(max_attempts):
                last = attempt == max_attempts - 1
                if timeout is not None:
                    remaining = timeout - (time.monotonic() - start)
                    if remaining <= 0:
                        break
                    bound: float | None = min(attempt_timeout, remaining)
                else:
                    bound = None if last else attempt_timeout
                await self._post(pending, outgoing.body, deadline=bound)
                await self._wait_acks(outgoing.id, pending, bound)
                pending = [r for r in receivers if r not in self.inbox.acked_by(outgoing.id)]
                if not pending:
                    break
        finally:
            acked = [r for r in receivers if r in self.inbox.acked_by(outgoing.id)]
            self.inbox.forget_acks(outgoing.id)
        not_acked = [r for r in receivers if r not in acked]
        if not_acked and warn:
            self.logger.log(
                f"message {outgoing.id} ({message_category}) was not acknowledged by {not_acked}", "warn"
            )
        return acked, not_acked

    async def _wait_acks(self, message_id: str, receivers: list[str], bound: float | None) -> None:
        def done() -> bool:
            return set(receivers) <= self.inbox.acked_by(message_id)

        await self._wait(done, bound, lambda: [r for r in receivers if r not in self.inbox.acked_by(message_id)],
                         f"acknowledgement of message {message_id}")

    async def _wait(self, done: Callable[[], bool], bound: float | None, silent: Callable[[], list[str]],
                    what: str) -> None:
        """Wait for ``done`` or the end of the run; without a bound, warn periodically naming silent nodes.

        Raises AnalysisError when the run was set to failed/stopped (e.g. by partner status sync) meanwhile.
        """

        def finished() -> bool:
            return self.run_ended() is not None or done()

        if bound is not None:
            await self.inbox.wait_for(finished, bound)
        else:
            waited = 0.0
            while not await self.inbox.wait_for(finished, SILENCE_WARNING_INTERVAL):
                waited += SILENCE_WARNING_INTERVAL
                self.logger.log(f"still waiting after {waited:.0f} s for {what} from {silent()}", "warn")
        ended = self.run_ended()
        if ended in UNSUCCESSFUL_STATUSES and not done():
            raise AnalysisError(f"the analysis was {ended} while waiting for {what} from {silent()}")

    # -- receiving ------------------------------------------------------------------------------------
    def receive(self, body: dict[str, Any]) -> None:
        """Handle one webhook delivery (already validated): store, dedup, acknowledge."""
        meta = body["meta"]
        own_id = self.own_id
        if meta["akn_id"] is not None:
            if meta["sender"] == own_id:
                self.inbox.add_ack(meta["id"], meta["akn_id"])
            return
        if meta["sender"] == own_id:
            return
        meta["type"] = envelope.INCOMING
        meta["akn_id"] = own_id
        meta["arrived_at"] = str(datetime.datetime.now())
        meta.setdefault("status", envelope.UNREAD)
        is_new = self.inbox.add(Message(body))
        if is_new:
            self.logger.log(f"received message {meta['id']} ({meta['category']}) from {meta['sender']}", "debug")
            if meta["category"] == envelope.ANALYSIS_FINISHED and self.on_analysis_finished is not None:
                self.on_analysis_finished()
        ack = envelope.acknowledgement(meta)
        task = asyncio.ensure_future(self._send_ack(meta["sender"], ack))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_ack(self, sender: str, ack: dict[str, Any]) -> None:
        try:
            await self._post([sender], ack, deadline=None)
        except Exception as exc:  # noqa: BLE001 - the sender retries when an ack is lost
            self.logger.log(f"could not acknowledge message {ack['meta']['id']} to {sender}: {exc}", "warn")

    async def await_messages(
        self,
        senders: list[str],
        message_category: str,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, list[Message] | None]:
        """Wait for unread messages of a category from every sender; None for those that did not answer."""
        senders = self.check_nodes(senders, "senders")

        def missing() -> list[str]:
            return [s for s in senders if not self.inbox.matching(s, message_category, message_id)]

        def done() -> bool:
            return not missing()

        await self._wait(done, timeout, missing, f"messages of category {message_category!r}")
        result: dict[str, list[Message] | None] = {}
        for sender in senders:
            found = self.inbox.matching(sender, message_category, message_id)
            for msg in found:
                msg.set_read()
            result[sender] = found or None
        silent = [s for s, found in result.items() if found is None]
        if silent and self.run_ended() is None:
            self.logger.log(
                f"no message of category {message_category!r} arrived from {silent} within {timeout} s", "warn"
            )
        return result

    async def ready_check(self, targets: list[str], interval: float, timeout: float | None) -> dict[str, bool]:
        """Send ``ready_check`` to the targets until each acknowledged, every ``interval`` seconds, within
        ``timeout`` (None: until the run ends); {node id: ready}."""
        ready = dict.fromkeys(targets, False)
        start = time.monotonic()
        while not all(ready.values()) and self.run_ended() is None:
            remaining = None if timeout is None else timeout - (time.monotonic() - start)
            if remaining is not None and remaining <= 0:
                break
            bound = interval if remaining is None else min(interval, remaining)
            pending = [n for n, ok in ready.items() if not ok]
            acked, _ = await self.send_message(pending, envelope.READY_CHECK, {}, 1, bound, bound, warn=False)
            ready.update(dict.fromkeys(acked, True))
        not_ready = [n for n, ok in ready.items() if not ok]
        if not_ready:
            self.logger.log(f"ready_check: node(s) {not_ready} did not answer", "warn")
        return ready

    async def drain(self) -> None:
        """Let pending acknowledgements go out."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=10)
