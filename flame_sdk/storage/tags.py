"""Names a client puts into result service paths: local storage tags (validated with the service's own rule)
and storage ids (UUIDs, the service's path parameter type)."""

from __future__ import annotations

import uuid

from flame_sdk.protocol.result_api import TAG_PATTERN


def is_valid_tag(tag: object) -> bool:
    return isinstance(tag, str) and TAG_PATTERN.fullmatch(tag) is not None


def check_tag(tag: object) -> str:
    if not is_valid_tag(tag):
        raise ValueError(
            f"invalid tag {tag!r}: use 1 to 32 lowercase letters, digits and hyphens, starting and ending with a "
            f"letter or digit (e.g. 'round-1')"
        )
    return tag  # type: ignore[return-value]


def check_storage_id(query: object) -> str:
    """A storage id as the result service's routes take it (a UUID); ValueError for anything else, so that a
    query never becomes another route (``tags/x`` would fetch the tag listing)."""
    try:
        return str(uuid.UUID(str(query))) if isinstance(query, str) else str(uuid.UUID(query))  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"{query!r} is not a storage id (not a valid UUID). Storage ids are the UUIDs that "
                         f"save_intermediate_data returned (its 'id'), or that a sender's message carries") from None
