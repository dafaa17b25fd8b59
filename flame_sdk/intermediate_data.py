"""Intermediate data between nodes: the result service holds the data, the message broker carries its id.

``send_intermediate_data`` saves the data globally, encrypted for each receiver and bound to this node,
the message category and the round (``flame_sdk.storage.intermediate_binding``), then messages each receiver
the storage id meant for it (``{"result_id": {node id: storage id}}``); ``await_intermediate_data`` waits for
those messages, fetches what each sender stored for this node and checks the binding, so each storage id is
used once and only for the exchange it was sent in.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from flame_sdk.errors import FlameError
from flame_sdk.protocol.envelope import RESULT_ID
from flame_sdk.runtime import all_or_none
from flame_sdk.startup import Components
from flame_sdk.storage import intermediate_binding as binding

#: Downloads of the senders' data in flight at once in ``await_intermediate_data``.
DOWNLOAD_CONCURRENCY = 8


async def send_intermediate_data(components: Components, receivers: list[str], data: Any, message_category: str,
                                 max_attempts: int, timeout: float | None,
                                 attempt_timeout: float) -> tuple[list[str], list[str]]:
    """Save ``data`` for the receivers and message them its ids; (acknowledged, not acknowledged)."""
    broker = components.require_broker()
    receivers = broker.check_nodes(receivers, "receivers")
    if not isinstance(message_category, str) or not message_category:
        raise ValueError(f"message_category must be a non-empty string, got {message_category!r}")
    bound = binding.wrap(data, components.ledger.next_round(components.require_identity().node_id, message_category))
    saved = await components.require_storage().save_intermediate_data(bound, "global", remote_node_ids=receivers)
    per_receiver = cast(dict[str, dict[str, str]], saved)  # a global save answers per receiver
    ids = {node: response["id"] for node, response in per_receiver.items()}
    return await broker.send_message(receivers, message_category, {RESULT_ID: ids}, max_attempts, timeout,
                                     attempt_timeout)


async def await_intermediate_data(components: Components, senders: list[str], message_category: str,
                                  timeout: float | None) -> dict[str, Any]:
    """The data each sender stored for this node (in the senders' order); None for senders whose message did
    not arrive. The senders' data is downloaded concurrently, at most ``DOWNLOAD_CONCURRENCY`` at a time."""
    messages = await components.require_broker().await_messages(senders, message_category, timeout=timeout)
    own_id = components.require_identity().node_id
    storage = components.require_storage()
    storage_ids: dict[str, str] = {}
    for sender, found in messages.items():
        if not found:
            continue
        ids = found[-1].body.get(RESULT_ID)
        storage_id = ids.get(own_id) if isinstance(ids, dict) else None
        if not isinstance(storage_id, str) or not storage_id:
            raise FlameError(f"message from {sender} in category {message_category!r} carries no storage id "
                             f"for this node (body: {str(found[-1].body)[:200]})")
        components.ledger.check_unused(storage_id, sender, message_category)
        storage_ids[sender] = storage_id
    limit = asyncio.Semaphore(DOWNLOAD_CONCURRENCY)

    async def fetch(sender: str, storage_id: str) -> Any:
        async with limit:
            return await storage.get_intermediate_data("global", storage_id, None, "all", sender_id=sender)

    stored = await all_or_none([fetch(sender, storage_id) for sender, storage_id in storage_ids.items()])
    data: dict[str, Any] = dict.fromkeys(messages)
    for (sender, storage_id), obj in zip(storage_ids.items(), stored, strict=True):
        bound, data[sender] = binding.unwrap(obj, storage_id, sender)
        components.ledger.accept(storage_id, sender, message_category, bound)
    return data

