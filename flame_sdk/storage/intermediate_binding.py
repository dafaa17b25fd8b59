"""What binds a storage id of intermediate data to its sender, category and round, so that it is used once.

``send_intermediate_data`` stores the data wrapped with its sender, message category and round (the
sender's count of ``send_intermediate_data`` calls in that category): the wrapper travels inside the
payload the result services encrypt and authenticate between the two nodes, so no one else can change it.
``await_intermediate_data`` refuses a storage id it has used before, data whose wrapper names another
sender or category, and a round not newer than the last one it took from that sender in that category. A
replayed or stale message is therefore an error naming it, never data silently taken for a later round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flame_sdk.errors import ReplayedDataError, TamperedDataError

#: Marks the wrapper (a plain dict, so it passes the restricted unpickler).
MARKER = "flame_sdk.intermediate"
VERSION = 1


@dataclass(frozen=True)
class Binding:
    sender: str
    category: str
    round: int


def wrap(data: Any, binding: Binding) -> dict[str, Any]:
    return {MARKER: VERSION, "sender": binding.sender, "category": binding.category, "round": binding.round,
            "data": data}


def unwrap(obj: Any, storage_id: str, sender: str) -> tuple[Binding, Any]:
    """The binding and the data of a wrapper; TamperedDataError when ``obj`` is no wrapper."""
    if not isinstance(obj, dict) or obj.get(MARKER) != VERSION or not {"sender", "category", "round", "data"} <= set(obj):
        raise TamperedDataError(f"intermediate data {storage_id} from {sender} was not stored by "
                                f"send_intermediate_data of flame_sdk (no sender/category/round binding); fetch such "
                                f"data with get_intermediate_data('global', ...)")
    round_ = obj["round"]
    if isinstance(round_, bool) or not isinstance(round_, int) or not isinstance(obj["sender"], str) \
            or not isinstance(obj["category"], str):
        raise TamperedDataError(f"intermediate data {storage_id} from {sender} has a malformed binding")
    return Binding(obj["sender"], obj["category"], round_), obj["data"]


class Ledger:
    """Rounds this node sent per category, and what it took from whom (lives on the SDK's loop)."""

    def __init__(self) -> None:
        self._sent: dict[str, int] = {}
        self._taken: dict[tuple[str, str], int] = {}
        self._used: dict[str, tuple[str, str, int]] = {}

    def next_round(self, sender: str, category: str) -> Binding:
        self._sent[category] = self._sent.get(category, 0) + 1
        return Binding(sender, category, self._sent[category])

    def check_unused(self, storage_id: str, sender: str, category: str) -> None:
        if storage_id in self._used:
            by, used_category, used_round = self._used[storage_id]
            raise ReplayedDataError(
                f"storage id {storage_id} in a {category!r} message from {sender} was already used (round "
                f"{used_round} of {used_category!r} from {by}); a storage id is used once, so this message is a "
                f"replay and was rejected")

    def accept(self, storage_id: str, sender: str, category: str, binding: Binding) -> None:
        """Record ``storage_id`` as used; ReplayedDataError when its binding does not fit this exchange."""
        self.check_unused(storage_id, sender, category)
        if binding.sender != sender or binding.category != category:
            raise ReplayedDataError(
                f"storage id {storage_id} arrived in a {category!r} message from {sender}, but its data was sent by "
                f"{binding.sender} in category {binding.category!r}; the message was rejected as a replay")
        last = self._taken.get((sender, category), 0)
        if binding.round <= last:
            raise ReplayedDataError(
                f"storage id {storage_id} from {sender} holds round {binding.round} of {category!r}, but round "
                f"{last} was taken already; the stale or replayed message was rejected")
        self._taken[(sender, category)] = binding.round
        self._used[storage_id] = (sender, category, binding.round)
