"""Messages and the node's inbox: dedup by id, acknowledgements, and waits that wake on arrival."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from flame_sdk.constants import MAX_MESSAGE_BYTES
from flame_sdk.errors import MessageTooLargeError

META_KEYS = ("type", "category", "id", "akn_id", "status", "sender", "created_at", "arrived_at", "number")


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
        body["meta"] = {
            "type": "outgoing",
            "category": category,
            "id": f"{sender[:4]}-{number}-{uuid.uuid4().hex[:8]}",
            "akn_id": None,
            "status": "unread",
            "sender": sender,
            "created_at": _now_text(),
            "arrived_at": None,
            "number": number,
        }
        return cls(body)

    @property
    def meta(self) -> dict[str, Any]:
        return self.body["meta"]

    @property
    def id(self) -> str:
        return self.meta["id"]

    @property
    def sender(self) -> str:
        return self.meta["sender"]

    @property
    def category(self) -> str:
        return self.meta["category"]

    @property
    def status(self) -> str:
        return self.meta["status"]

    def set_read(self) -> None:
        self.meta["status"] = "read"

    def __repr__(self) -> str:
        return f"Message(id={self.id!r}, sender={self.sender!r}, category={self.category!r}, status={self.status!r})"


def encode_request(recipients: list[str], body: dict[str, Any]) -> bytes:
    """JSON-encode a broker request, enforcing the size cap with an actionable error."""
    try:
        payload = json.dumps({"recipients": recipients, "message": body}, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"message is not JSON-serializable ({exc}); send plain dicts/lists/str/numbers, "
            f"or use send_intermediate_data for arbitrary Python objects"
        ) from None
    if len(payload) > MAX_MESSAGE_BYTES:
        raise MessageTooLargeError(
            f"message is {len(payload) / 1e6:.2f} MB as JSON, above the broker's {MAX_MESSAGE_BYTES / 1e6:.1f} MB cap; "
            f"save large data with save_intermediate_data/send_intermediate_data and send its id instead"
        )
    return payload


def validate_incoming(body: Any) -> str | None:
    """Return why a webhook body is not a broker message, or None when it is well-formed."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    meta = body.get("meta")
    if not isinstance(meta, dict):
        return "body.meta must be an object"
    for key in ("id", "sender", "category"):
        if not isinstance(meta.get(key), str) or not meta.get(key):
            return f"body.meta.{key} must be a non-empty string"
    if "akn_id" not in meta or not (meta["akn_id"] is None or isinstance(meta["akn_id"], str)):
        return "body.meta.akn_id must be present (null or a node id)"
    return None


class Inbox:
    """Received messages and acknowledgements of this node. Lives on the SDK loop."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._known_ids: set[str] = set()
        self._acks: dict[str, set[str]] = {}
        self._changed = asyncio.Condition()

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
        return [
            m
            for m in self.messages
            if m.sender == sender
            and m.category == category
            and m.status == "unread"
            and (message_id is None or m.id == message_id)
        ]

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
