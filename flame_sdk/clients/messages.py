"""Messages and the node's inbox: dedup by id, acknowledgements, and waits that wake on arrival."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from flame_sdk.errors import MessageTooLargeError
from flame_sdk.protocol import envelope


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


class Inbox:
    """Received messages and acknowledgements of this node. Lives on the SDK loop."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._known_ids: set[str] = set()
        self._acks: dict[str, set[str]] = {}
        self._changed = asyncio.Condition()
        #: ``time.monotonic()`` of the last webhook delivery (message or acknowledgement, duplicates included).
        self.last_delivery = time.monotonic()

    def delivered(self) -> None:
        """Note that the broker delivered something (deliveries going quiet make waits check the subscription)."""
        self.last_delivery = time.monotonic()

    def _notify(self) -> None:
        async def _wake() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.ensure_future(_wake())

    def add(self, message: Message) -> bool:
        """Store a new message; return False for a duplicate delivery (same id)."""
        if message.id in self._known_ids:
            return False
        self._known_ids.add(message.id)
        self.messages.append(message)
        self._notify()
        return True

    def add_ack(self, message_id: str, acknowledged_by: str) -> None:
        self._acks.setdefault(message_id, set()).add(acknowledged_by)
        self._notify()

    def acked_by(self, message_id: str) -> set[str]:
        return self._acks.get(message_id, set())

    def forget_acks(self, message_id: str) -> None:
        self._acks.pop(message_id, None)

    def matching(self, sender: str, category: str, message_id: str | None = None) -> list[Message]:
        """Unread messages of ``sender`` in ``category`` in the order the sender sent them (its ``meta.number``;
        deliveries that were retried may arrive out of order)."""
        found = [
            m
            for m in self.messages
            if m.sender == sender
            and m.category == category
            and m.status == "unread"
            and (message_id is None or m.id == message_id)
        ]
        return sorted(found, key=_send_order)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``predicate()`` holds (re-checked on every change); False on timeout."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
                return True
            except asyncio.TimeoutError:
                return predicate()

    def wake(self) -> None:
        """Re-check every waiter (used when the run status changes)."""
        self._notify()

    def delete(self, message_ids: Iterable[str]) -> int:
        ids = set(message_ids)
        before = len(self.messages)
        self.messages = [m for m in self.messages if m.id not in ids]
        return before - len(self.messages)

    def clear(self, status: str, min_age: float | None) -> int:
        if status not in ("read", "unread", "all"):
            raise ValueError(f"status must be 'read', 'unread' or 'all', got {status!r}")
        now = time.monotonic()

        def doomed(m: Message) -> bool:
            return (status == "all" or m.status == status) and (min_age is None or now - m.received_at > min_age)

        before = len(self.messages)
        self.messages = [m for m in self.messages if not doomed(m)]
        return before - len(self.messages)
