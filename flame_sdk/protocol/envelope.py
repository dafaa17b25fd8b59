"""The message envelope nodes exchange through the message broker: pure encode and validate.

A message is any JSON object plus ``meta``, which the SDK owns. The broker relays the request's ``message``
unchanged. Sources: PrivateAIM/python-sdk ``flamesdk/resources/client_apis/clients/message_broker_client.py``
(the ``Message`` class: meta fields, ``meta`` reserved, acknowledgements carry ``akn_id``); the size limit is
the one the FLAME Python Core SDK docs give for the message broker ("around 2 MB").
"""

from __future__ import annotations

import json
from typing import Any

#: Largest JSON request body the message broker accepts.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024

#: The body field the SDK reserves for its metadata.
META = "meta"
#: Fields of ``meta``, in the order the SDK writes them.
META_KEYS: tuple[str, ...] = (
    "type", "category", "id", "akn_id", "status", "sender", "created_at", "arrived_at", "number",
)
#: ``meta.type`` of a message as its sender and as its receiver holds it.
OUTGOING, INCOMING = "outgoing", "incoming"
#: ``meta.status`` values (and the ``status`` argument of get_messages).
UNREAD, READ = "unread", "read"

#: Message categories with a meaning in this protocol.
READY_CHECK = "ready_check"
ANALYSIS_FINISHED = "analysis_finished"
INTERMEDIATE_DATA = "intermediate_data"
#: This SDK's own: a node whose main() returned before the run ended tells its partners (``flame_sdk.after_main``).
MAIN_RETURNED = "main_returned"
#: Body field of an ``intermediate_data`` message: ``{receiver node id: storage id}``.
RESULT_ID = "result_id"
#: Body field of an acknowledgement (this SDK's own): ids of further messages it acknowledges besides ``meta.id``.
#: A receiver sends acknowledgements that queued up while one to the same node was in flight as one message.
ALSO_ACKNOWLEDGES = "also_acknowledges"
#: Most message ids one acknowledgement carries (~40 kB of JSON, far below the size cap).
MAX_IDS_PER_ACKNOWLEDGEMENT = 1000
#: ``meta`` field of a message (this SDK's own): further messages to the same receivers that travel with it. A
#: sender sends messages that queued up while one to the same receivers was in flight as one broker message.
ALSO_CARRIES = "also_carries"
#: Most messages one broker message carries, and the most JSON bytes of messages bundled into one (a larger
#: message travels alone).
MAX_MESSAGES_PER_BUNDLE = 100
MAX_BUNDLE_BYTES = 256 * 1024


class EnvelopeError(ValueError):
    """A message cannot be sent as it is (not JSON-serializable, or too large)."""

    def __init__(self, reason: str, too_large: bool = False) -> None:
        super().__init__(reason)
        self.too_large = too_large


def outgoing_meta(category: str, message_id: str, sender: str, number: int, created_at: str) -> dict[str, Any]:
    """The ``meta`` of a new message."""
    return {
        "type": OUTGOING,
        "category": category,
        "id": message_id,
        "akn_id": None,
        "status": UNREAD,
        "sender": sender,
        "created_at": created_at,
        "arrived_at": None,
        "number": number,
    }


def encode_request(recipients: list[str], message: dict[str, Any]) -> bytes:
    """The broker request ``{"recipients": [...], "message": {...}}`` as compact UTF-8 JSON, within the size cap.

    Strict JSON only (no ``NaN``/``Infinity``, which the broker's JSON parser refuses); non-ASCII text is sent as
    UTF-8, so the cap counts its real bytes. Raises EnvelopeError (``too_large`` set when only the size is
    wrong) with a reason a user can act on.
    """
    try:
        text = json.dumps({"recipients": recipients, "message": message}, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise EnvelopeError("message is nested too deeply to be sent as JSON; flatten it, or use "
                            "send_intermediate_data for arbitrary Python objects") from None
    except ValueError as exc:
        if "Out of range float values" in str(exc):
            raise EnvelopeError("message contains NaN or infinity, which JSON cannot carry; replace them (e.g. "
                                "with None or a string), or use send_intermediate_data") from None
        raise EnvelopeError(f"message is not JSON-serializable ({exc})") from None
    except TypeError as exc:
        raise EnvelopeError(
            f"message is not JSON-serializable ({exc}); send plain dicts/lists/str/numbers, "
            f"or use send_intermediate_data for arbitrary Python objects"
        ) from None
    try:
        payload = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EnvelopeError(f"message contains text that is not valid Unicode ({exc.reason} at position "
                            f"{exc.start}); lone surrogates cannot be sent") from None
    if len(payload) > MAX_MESSAGE_BYTES:
        raise EnvelopeError(
            f"message is {len(payload) / 1e6:.2f} MB as JSON, above the broker's {MAX_MESSAGE_BYTES / 1e6:.1f} MB "
            f"cap; save large data with save_intermediate_data/send_intermediate_data and send its id instead",
            too_large=True,
        )
    return payload


def validate_incoming(body: Any) -> str | None:
    """Why a webhook body is not a broker message, or None when it is well-formed."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    meta = body.get(META)
    if not isinstance(meta, dict):
        return "body.meta must be an object"
    for key in ("id", "sender", "category"):
        if not isinstance(meta.get(key), str) or not meta.get(key):
            return f"body.meta.{key} must be a non-empty string"
    if "akn_id" not in meta or not (meta["akn_id"] is None or isinstance(meta["akn_id"], str)):
        return "body.meta.akn_id must be present (null or a node id)"
    if ALSO_CARRIES in meta:
        return _bundle_problem(meta)
    if ALSO_ACKNOWLEDGES in body and meta["akn_id"] is not None:
        more = body[ALSO_ACKNOWLEDGES]
        if not isinstance(more, list) or len(more) > MAX_IDS_PER_ACKNOWLEDGEMENT \
                or not all(isinstance(i, str) and i for i in more):
            return (f"body.{ALSO_ACKNOWLEDGES} must be a list of at most {MAX_IDS_PER_ACKNOWLEDGEMENT} "
                    f"non-empty message ids")
    return None


def _bundle_problem(meta: dict[str, Any]) -> str | None:
    more = meta[ALSO_CARRIES]
    if meta["akn_id"] is not None:
        return f"an acknowledgement carries no messages (body.meta.{ALSO_CARRIES})"
    if not isinstance(more, list) or len(more) >= MAX_MESSAGES_PER_BUNDLE:
        return f"body.meta.{ALSO_CARRIES} must be a list of at most {MAX_MESSAGES_PER_BUNDLE - 1} messages"
    for index, message in enumerate(more):
        where = f"body.meta.{ALSO_CARRIES}[{index}]"
        inner = message.get(META) if isinstance(message, dict) else None
        if isinstance(inner, dict) and ALSO_CARRIES in inner:
            return f"{where} must carry no further messages"
        problem = validate_incoming(message)
        if problem is not None:
            return where + problem.removeprefix("body")
        assert isinstance(inner, dict)
        if inner["akn_id"] is not None or inner["sender"] != meta["sender"]:
            return f"{where} must be a message (akn_id null) from the same sender"
    return None


def bundle(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """One broker message carrying ``messages`` (all to the same receivers): the first, whose ``meta`` lists the
    others under ``also_carries``."""
    first = messages[0]
    if len(messages) == 1:
        return first
    return {**first, META: {**first[META], ALSO_CARRIES: messages[1:]}}


def unbundle(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages a (validated) broker message carries, in the order they were sent: itself, then any it
    carries (taken out of its ``meta``)."""
    more: list[dict[str, Any]] = body[META].pop(ALSO_CARRIES, [])
    return [body, *more]


def acknowledged_ids(body: dict[str, Any]) -> list[str]:
    """The ids of the messages a (validated) acknowledgement covers: ``meta.id``, then any further ones."""
    return [body[META]["id"], *body.get(ALSO_ACKNOWLEDGES, ())]


def acknowledgement(meta: dict[str, Any], also: list[str] | None = None) -> dict[str, Any]:
    """What a receiver sends back for a message: only its metadata (``akn_id`` set to the receiver), plus the
    ids of further messages acknowledged with it (at most ``MAX_IDS_PER_ACKNOWLEDGEMENT``)."""
    if also:
        return {META: dict(meta), ALSO_ACKNOWLEDGES: also}
    return {META: dict(meta)}
