"""Messages and the node's inbox: dedup by id, acknowledgements, and waits that wake on arrival."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flame_sdk.errors import MessageTooLargeError
from flame_sdk.protocol import envelope
from flame_sdk.runtime import bounded


def _now_text() -> str:
    # Same text format as the reference SDK, so nodes running either SDK can read each other's timestamps.
    return str(datetime.datetime.now())


class Message:
    """A broker message. ``body`` is the JSON object sent on the wire; ``body['meta']`` holds its metadata."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.received_at = time.monotonic()

    @classmethod
    def outgoing(cls, message: dict[str, Any], category: str, sender: str, number: int) -> Message:
        if not isinstance(message, dict):
            raise TypeError(f"message must be a dict, got {type(message).__name__}")
        if "meta" in message:
            raise ValueError("the field 'meta' is reserved for the message broker's metadata; rename it in your message")
        if not isinstance(category, str) or not category:
            raise ValueError(f"message_category must be a non-empty string, got {category!r}")
        body = dict(message)
        body[envelope.META] = envelope.outgoing_meta(category, f"{sender[:4]}-{number}-{uuid.uuid4().hex[:8]}",
                                                     sender, number, _now_text())
        return cls(body)

    @property
    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = self.body[envelope.META]
        return meta

    @property
    def id(self) -> str:
        value: str = self.meta["id"]
        return value

    @property
    def sender(self) -> str:
        value: str = self.meta["sender"]
        return value

    @property
    def category(self) -> str:
        value: str = self.meta["category"]
        return value

    @property
    def status(self) -> str:
        value: str = self.meta["status"]
        return value

    def set_read(self) -> None:
        self.meta["status"] = envelope.READ

    def __repr__(self) -> str:
        return f"Message(id={self.id!r}, sender={self.sender!r}, category={self.category!r}, status={self.status!r})"


def _send_order(message: Message) -> int:
    number = message.meta.get("number")
    return number if isinstance(number, int) and not isinstance(number, bool) else 0


def encode_request(recipients: list[str], body: dict[str, Any]) -> bytes:
    """JSON-encode a broker request; TypeError or MessageTooLargeError naming the fix when it cannot go."""
    try:
        return envelope.encode_request(recipients, body)
    except envelope.EnvelopeError as exc:
        raise (MessageTooLargeError if exc.too_large else TypeError)(str(exc)) from None


#: What a change to the inbox concerns: a message of (sender, category), or the acknowledgements of a message id.
WaitKey = tuple[str, str, str]


def message_key(sender: str, category: str) -> WaitKey:
    return ("message", sender, category)


def ack_key(message_id: str) -> WaitKey:
    return ("ack", message_id, "")


@dataclass
class _Waiter:
    predicate: Callable[[], bool]
    keys: frozenset[WaitKey] | None  # None: re-checked on every change
    woken: asyncio.Future[None]


class Inbox:
    """Received messages and acknowledgements of this node. Lives on the SDK loop.

    Messages are indexed by (sender, category), so finding a sender's messages does not scan the inbox, and a
    waiter names the keys its predicate depends on, so an arrival re-checks only the waiters it concerns.
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._known_ids: set[str] = set()
        self._by_key: dict[tuple[str, str], list[Message]] = {}
        self._acks: dict[str, set[str]] = {}
        self._waiters: list[_Waiter] = []
        #: ``time.monotonic()`` of the last webhook delivery (message or acknowledgement, duplicates included).
        self.last_delivery = time.monotonic()

    def delivered(self) -> None:
        """Note that the broker delivered something (deliveries going quiet make waits check the subscription)."""
        self.last_delivery = time.monotonic()

    def _notify(self, key: WaitKey | None) -> None:
        """Wake the waiters whose predicate now holds, among those that depend on ``key`` (all for None)."""
        for waiter in self._waiters:
            if waiter.woken.done() or (key is not None and waiter.keys is not None and key not in waiter.keys):
                continue
            if waiter.predicate():
                waiter.woken.set_result(None)

    def add(self, message: Message) -> bool:
        """Store a new message; return False for a duplicate delivery (same id)."""
        if message.id in self._known_ids:
            return False
        self._known_ids.add(message.id)
        self.messages.append(message)
        self._by_key.setdefault((message.sender, message.category), []).append(message)
        self._notify(message_key(message.sender, message.category))
        return True

    def expect_acks(self, message_id: str) -> None:
        """Collect acknowledgements of ``message_id`` from now until ``forget_acks``."""
        self._acks.setdefault(message_id, set())

    def add_ack(self, message_id: str, acknowledged_by: str) -> None:
        """Record an acknowledgement of a message in flight; one of another (a late duplicate after the send
        ended, or an id this node never sent) is dropped, so acknowledgements cannot pile up."""
        acked = self._acks.get(message_id)
        if acked is None:
            return
        acked.add(acknowledged_by)
        self._notify(ack_key(message_id))

    def acked_by(self, message_id: str) -> set[str]:
        return self._acks.get(message_id, set())

    def forget_acks(self, message_id: str) -> None:
        self._acks.pop(message_id, None)

    def matching(self, sender: str, category: str, message_id: str | None = None) -> list[Message]:
        """Unread messages of ``sender`` in ``category`` in the order the sender sent them (its ``meta.number``;
        deliveries that were retried may arrive out of order)."""
        found = [
            m
            for m in self._by_key.get((sender, category), ())
            if m.status == "unread" and (message_id is None or m.id == message_id)
        ]
        return sorted(found, key=_send_order)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None,
                       keys: Iterable[WaitKey] | None = None) -> bool:
        """Wait until ``predicate()`` holds, at most ``timeout`` seconds; False on timeout. It is re-checked when
        something arrives under one of ``keys`` (``message_key``, ``ack_key``), or on every change without
        them, and on ``wake``."""
        if predicate():
            return True
        waiter = _Waiter(predicate, None if keys is None else frozenset(keys),
                         asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await bounded(waiter.woken, timeout)
            return True
        except asyncio.TimeoutError:
            return predicate()
        finally:
            self._waiters.remove(waiter)

    def wake(self) -> None:
        """Re-check every waiter (used when the run status changes)."""
        self._notify(None)

    def _reindex(self) -> None:
        self._by_key = {}
        for message in self.messages:
            self._by_key.setdefault((message.sender, message.category), []).append(message)

    def delete(self, message_ids: Iterable[str]) -> int:
        ids = set(message_ids)
        before = len(self.messages)
        self.messages = [m for m in self.messages if m.id not in ids]
        self._reindex()
        return before - len(self.messages)

    def clear(self, status: str, min_age: float | None) -> int:
        if status not in ("read", "unread", "all"):
            raise ValueError(f"status must be 'read', 'unread' or 'all', got {status!r}")
        now = time.monotonic()

        def doomed(m: Message) -> bool:
            return (status == "all" or m.status == status) and (min_age is None or now - m.received_at > min_age)

        before = len(self.messages)
        self.messages = [m for m in self.messages if not doomed(m)]
        self._reindex()
        return before - len(self.messages)
