"""Local storage tags, validated with the node result service's own rule."""

from __future__ import annotations

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
