"""Message broker client: subscription, discovery, sending with acknowledgements, awaiting messages, the
ready check.

The real broker delivers a message at most once per subscription and drops what its webhook refuses (4xx,
429 included) or cannot reach (see ``flame_sdk.protocol.broker_api``), and it forgets nothing but never checks a
subscription either. So the SDK copes itself: a message is sent again, with the same id (receivers drop the
duplicate and acknowledge it again), until every receiver acknowledged it or the caller's bound is reached;
when the caller allows an indefinite wait the resending goes on, with backoff, until the run ends. No single
request or wait is unbounded. The subscription is checked at startup and whenever deliveries went quiet
during a wait, and renewed if the broker lost it. Messages to the same receivers, and acknowledgements to the
same node, go one request at a time (``flame_sdk.clients.lanes``): those sent meanwhile travel together in the
next broker message (``also_carries``, ``also_acknowledges`` in ``flame_sdk.protocol.envelope``).
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable, Coroutine
from typing import Any

from flame_sdk.clients.lanes import Lanes
from flame_sdk.clients.messages import Inbox, Message, WaitKey, ack_key, encode_request, message_key
from flame_sdk.config import NodeConfig, NodeIdentity
from flame_sdk.errors import AnalysisError, FlameError, ServiceUnavailableError, UnknownNodeError
from flame_sdk.http import ServiceClient
from flame_sdk.logs import FlameLogger
from flame_sdk.protocol import broker_api, envelope
from flame_sdk.protocol.env import gateway_url
from flame_sdk.protocol.status import UNSUCCESSFUL_STATUSES, AnalysisStatus
from flame_sdk.runtime import bounded

#: While a wait has no timeout, a warning naming the silent nodes is logged this often (seconds).
SILENCE_WARNING_INTERVAL = 60.0
#: Resends of an indefinitely awaited message back off up to this interval (seconds).
MAX_RESEND_INTERVAL = 60.0
#: A wait checks the webhook subscription once no delivery arrived for this long (seconds).
SUBSCRIPTION_CHECK_INTERVAL = 20.0
#: Bound on one subscription check (seconds).
SUBSCRIPTION_CHECK_TIMEOUT = 30.0
#: Bound on sending one acknowledgement, retries included (seconds); a lost one makes the sender resend.
ACK_DEADLINE = 60.0
#: A message or acknowledgement request still in flight after this long (seconds) no longer holds up those queued
#: behind it for the same node(s): they go out meanwhile.
STALL = 1.0
#: ready_check's first resend comes this soon (seconds); the intervals double up to ``attempt_interval``. A
#: partner that had not subscribed yet when the first ``ready_check`` reached its broker (which drops it) is
#: found ready a second later, not an attempt interval (30 s by default) later.
READY_CHECK_FIRST_INTERVAL = 1.0


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
        #: Messages, one request per set of receivers at a time; those sent meanwhile go out bundled.
        self.sends: Lanes[tuple[str, ...], tuple[dict[str, Any], bytes]] = Lanes(
            self._post_messages, stall=STALL, max_items=envelope.MAX_MESSAGES_PER_BUNDLE,
            max_bytes=envelope.MAX_BUNDLE_BYTES, spawn=self._spawn)
        #: Acknowledgements (a message's meta), one request per sender at a time; those due meanwhile go together.
        self.acks: Lanes[str, dict[str, Any]] = Lanes(
            self._post_acks, stall=STALL, max_items=envelope.MAX_IDS_PER_ACKNOWLEDGEMENT + 1, spawn=self._spawn)
        self._subscription_check: asyncio.Task[None] | None = None
        self._last_check = time.monotonic()
        self.subscription_check_interval = SUBSCRIPTION_CHECK_INTERVAL
        self.on_analysis_finished: Callable[[], None] | None = None
        #: Returns the final run status once the run ended (finished, failed, stopped), else None.
        self.run_ended: Callable[[], AnalysisStatus | None] = lambda: None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _route(self, template: str) -> str:
        return broker_api.route(template, self.config.analysis_id)

    @property
    def own_id(self) -> str | None:
        return None if self.identity is None else self.identity.node_id

    @property
    def webhook_url(self) -> str:
        """Where the broker must deliver: ``http://nginx-<DEPLOYMENT_NAME>/analysis/webhook`` on a node (as the
        reference SDK subscribes), else the configured gateway."""
        base = gateway_url(self.config.deployment_name) if self.config.deployment_name else self.config.base_url
        return base + broker_api.WEBHOOK_PATH

    async def connect(self) -> NodeIdentity:
        """Subscribe the webhook (once), then learn this node's id/role and its partners; return the identity."""
        if not await self.ensure_subscribed():
            raise FlameError(f"the message broker does not list the webhook subscription {self.webhook_url} "
                             f"right after it was added")
        me = await self.service.json("GET", self._route(broker_api.PARTICIPANTS_SELF))
        identity = NodeIdentity(me[broker_api.NODE_ID], me[broker_api.NODE_TYPE])
        everyone = await self.service.json("GET", self._route(broker_api.PARTICIPANTS))
        self.participants = [p for p in everyone if p[broker_api.NODE_ID] != identity.node_id]
        self.identity = identity
        return identity

    async def _subscribed(self) -> bool:
        listed = await self.service.json("GET", self._route(broker_api.SUBSCRIPTIONS))
        return any(isinstance(s, dict) and s.get(broker_api.WEBHOOK_URL) == self.webhook_url for s in listed or [])

    async def ensure_subscribed(self) -> bool:
        """Add the webhook subscription unless the broker lists it (it keeps one per POST, so subscribing
        twice would double every delivery); True once it is listed."""
        self._last_check = time.monotonic()
        if await self._subscribed():
            return True
        if self.identity is not None:
            self.logger.log(f"the message broker lost the webhook subscription {self.webhook_url}; subscribing "
                            f"again (messages sent to this node meanwhile are resent by their senders)", "warn")
        await self.service.json("POST", self._route(broker_api.SUBSCRIPTIONS),
                                json={broker_api.WEBHOOK_URL: self.webhook_url})
        return await self._subscribed()

    def _check_subscription_when_quiet(self) -> None:
        """Start a subscription check in the background if deliveries (and checks) have been quiet."""
        now = time.monotonic()
        quiet = now - max(self.inbox.last_delivery, self._last_check) >= self.subscription_check_interval
        if not quiet or (self._subscription_check is not None and not self._subscription_check.done()):
            return

        async def check() -> None:
            try:
                await bounded(self.ensure_subscribed(), SUBSCRIPTION_CHECK_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - checked again when deliveries stay quiet
                self.logger.log(f"could not check the webhook subscription at the message broker: {exc!r}", "warn")

        self._last_check = now
        self._subscription_check = asyncio.ensure_future(check())

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
    async def _post(self, recipients: list[str], body: dict[str, Any], bound: float | None,
                    encoded: bytes | None = None) -> None:
        """One POST of a message (``encoded``: its request body, when already encoded for these recipients),
        retried on transient answers within ``bound`` seconds (all retries included)."""
        payload = encode_request(recipients, body) if encoded is None else encoded
        post = self.service.send("POST", self._route(broker_api.MESSAGES), data=payload,
                                 headers={"Content-Type": "application/json"}, deadline=bound, timeout=bound)
        await bounded(post, bound)

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
        """Send and collect acknowledgements; semantics of the docs' ``send_message``.

        Each attempt sends the message to the receivers that have not acknowledged it and waits up to
        ``attempt_timeout`` seconds. With ``timeout``, at most ``max_attempts`` attempts within ``timeout``
        seconds in all. Without it, the last attempt is indefinite: the message is sent again, with
        backoff, until every receiver acknowledged it or the run ended.
        """
        receivers = self.check_nodes(receivers, "receivers")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        if not attempt_timeout > 0:
            raise ValueError(f"attempt_timeout must be positive, got {attempt_timeout!r}")
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be None or >= 0 seconds, got {timeout!r}")
        self._number += 1
        outgoing = Message.outgoing(message, message_category, self.own_id or "", self._number)
        encoded = encode_request(receivers, outgoing.body)  # size and JSON checks before anything is sent
        if not receivers:
            return [], []
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = list(receivers)
        attempt = 0
        self.inbox.expect_acks(outgoing.id)
        try:
            while pending:
                attempt += 1
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or attempt > max_attempts:
                        break
                    bound = min(attempt_timeout, remaining)
                else:  # the indefinite last attempt resends with growing intervals
                    extra = max(0, attempt - max_attempts)
                    bound = max(attempt_timeout, min(attempt_timeout * 2**extra, MAX_RESEND_INTERVAL))
                await self._attempt(outgoing, pending, bound, attempt, encoded if pending == receivers else None)
                pending = [r for r in receivers if r not in self.inbox.acked_by(outgoing.id)]
                if self.run_ended() is not None:
                    break
        finally:
            acked = [r for r in receivers if r in self.inbox.acked_by(outgoing.id)]
            self.inbox.forget_acks(outgoing.id)
        not_acked = [r for r in receivers if r not in acked]
        if not_acked and warn and self.run_ended() is None:
            self.logger.log(f"message {outgoing.id} ({message_category}) was not acknowledged by {not_acked} after "
                            f"{attempt} attempt(s)", "warn")
        return acked, not_acked

    async def _attempt(self, outgoing: Message, pending: list[str], bound: float, attempt: int,
                       encoded: bytes | None) -> None:
        """Send to ``pending`` and wait for their acknowledgements, all within ``bound`` seconds."""
        start = time.monotonic()
        if encoded is None:
            encoded = encode_request(pending, outgoing.body)
        try:
            await self.sends.send(tuple(pending), (outgoing.body, encoded), len(encoded), bound)
        except (ServiceUnavailableError, asyncio.TimeoutError) as exc:
            self.logger.log(f"attempt {attempt} to send message {outgoing.id} to {pending} failed: "
                            f"{type(exc).__name__} {exc}", "debug")
        remaining = bound - (time.monotonic() - start)
        if remaining > 0:
            await self._wait_acks(outgoing.id, pending, remaining)

    async def _post_messages(self, receivers: tuple[str, ...], messages: list[tuple[dict[str, Any], bytes]],
                             bound: float) -> None:
        """One broker request carrying ``messages`` (body and its encoded request each) to ``receivers``."""
        if len(messages) == 1:
            await self._post(list(receivers), messages[0][0], bound, messages[0][1])
        else:
            await self._post(list(receivers), envelope.bundle([body for body, _ in messages]), bound)

    async def _wait_acks(self, message_id: str, receivers: list[str], bound: float | None) -> None:
        def done() -> bool:
            return set(receivers) <= self.inbox.acked_by(message_id)

        await self._wait(done, bound, lambda: [r for r in receivers if r not in self.inbox.acked_by(message_id)],
                         f"acknowledgement of message {message_id}", [ack_key(message_id)])

    async def _wait(self, done: Callable[[], bool], bound: float | None, silent: Callable[[], list[str]],
                    what: str, keys: list[WaitKey]) -> None:
        """Wait for ``done`` or the end of the run, at most ``bound`` seconds (None: no bound, warning
        periodically naming the silent nodes). The subscription is checked whenever deliveries went quiet.

        Raises AnalysisError when the run was set to failed/stopped (e.g. by partner status sync) meanwhile.
        """

        def finished() -> bool:
            return self.run_ended() is not None or done()

        start = time.monotonic()
        deadline = None if bound is None else start + bound
        next_warning = start + SILENCE_WARNING_INTERVAL
        while True:
            step = self.subscription_check_interval
            if deadline is not None:
                step = min(step, deadline - time.monotonic())
            if step <= 0 or await self.inbox.wait_for(finished, step, keys):
                break
            self._check_subscription_when_quiet()
            now = time.monotonic()
            if deadline is None and now >= next_warning:
                self.logger.log(f"still waiting after {now - start:.0f} s for {what} from {silent()}", "warn")
                next_warning += SILENCE_WARNING_INTERVAL
        ended = self.run_ended()
        if ended in UNSUCCESSFUL_STATUSES and not done():
            raise AnalysisError(f"the analysis was {ended} while waiting for {what} from {silent()}")

    # -- receiving ------------------------------------------------------------------------------------
    def receive(self, body: dict[str, Any]) -> str | None:
        """Handle one message of a webhook delivery (already validated and unbundled): store, dedup, acknowledge.

        Returns why the delivery was refused (a sender or acknowledger that is not a partner), else None.
        """
        meta = body["meta"]
        own_id = self.own_id
        self.inbox.delivered()
        partners = self.participant_ids()
        if meta["akn_id"] is not None:
            if meta["sender"] != own_id or meta["akn_id"] not in partners:
                return (f"acknowledgement of message {meta['id']} by {meta['akn_id']!r} for {meta['sender']!r}: "
                        f"only partners of analysis {self.config.analysis_id} acknowledge messages of this node")
            for message_id in envelope.acknowledged_ids(body):
                self.inbox.add_ack(message_id, meta["akn_id"])
            return None
        if meta["sender"] not in partners:
            return (f"message {meta['id']} from {meta['sender']!r}: the sender is not a partner of analysis "
                    f"{self.config.analysis_id}")
        meta["type"] = envelope.INCOMING
        meta["akn_id"] = own_id
        meta["arrived_at"] = str(datetime.datetime.now())
        meta.setdefault("status", envelope.UNREAD)
        is_new = self.inbox.add(Message(body))
        if is_new:
            self.logger.log(f"received message {meta['id']} ({meta['category']}) from {meta['sender']}", "debug")
            if meta["category"] == envelope.ANALYSIS_FINISHED and self.on_analysis_finished is not None:
                self.on_analysis_finished()
        # as it is now (the analyst may mark it read meanwhile); acknowledgements due while one to the sender is in
        # flight go out together with the next
        self.acks.submit(meta["sender"], dict(meta), 0, ACK_DEADLINE)
        return None

    async def _post_acks(self, sender: str, batch: list[dict[str, Any]], bound: float) -> None:
        """One acknowledgement request for the messages ``batch`` holds the meta of; failures are logged."""
        ids = list(dict.fromkeys(m["id"] for m in batch))  # a resent message may be in it twice
        try:
            await self._post([sender], envelope.acknowledgement(batch[0], ids[1:]), bound=bound)
        except Exception as exc:  # noqa: BLE001 - the sender sends again when an ack is lost
            more = f" and {len(ids) - 1} more" if len(ids) > 1 else ""
            self.logger.log(f"could not acknowledge message {ids[0]}{more} to {sender}: {exc}", "warn")

    async def await_messages(
        self,
        senders: list[str],
        message_category: str,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, list[Message] | None]:
        """Wait for unread messages of a category from every sender; None for those that did not answer."""
        senders = self.check_nodes(senders, "senders")
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be None or >= 0 seconds, got {timeout!r}")

        def missing() -> list[str]:
            return [s for s in senders if not self.inbox.matching(s, message_category, message_id)]

        def done() -> bool:
            return not missing()

        await self._wait(done, timeout, missing, f"messages of category {message_category!r}",
                         [message_key(s, message_category) for s in senders])
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
        """Send ``ready_check`` to the targets until each acknowledged, within ``timeout`` (None: until the run
        ends); {node id: ready}. Attempts are ``READY_CHECK_FIRST_INTERVAL`` seconds apart at first, then twice
        as far each time, never further than ``interval``."""
        ready = dict.fromkeys(targets, False)
        start = time.monotonic()
        step = min(interval, READY_CHECK_FIRST_INTERVAL)
        while not all(ready.values()) and self.run_ended() is None:
            remaining = None if timeout is None else timeout - (time.monotonic() - start)
            if remaining is not None and remaining <= 0:
                break
            bound = step if remaining is None else min(step, remaining)
            step = min(interval, 2 * step)
            pending = [n for n, ok in ready.items() if not ok]
            acked, _ = await self.send_message(pending, envelope.READY_CHECK, {}, 1, bound, bound, warn=False)
            ready.update(dict.fromkeys(acked, True))
        not_ready = [n for n, ok in ready.items() if not ok]
        if not_ready:
            self.logger.log(f"ready_check: node(s) {not_ready} did not answer", "warn")
        return ready

    async def drain(self) -> None:
        """Let pending acknowledgements go out; stop a subscription check."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=10)
        if self._subscription_check is not None:
            self._subscription_check.cancel()
            await asyncio.gather(self._subscription_check, return_exceptions=True)
