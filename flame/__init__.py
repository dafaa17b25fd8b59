"""Alias package: ``from flame import FlameCoreSDK`` as in the FLAME Python Core SDK docs."""

from flame_sdk import FlameCoreSDK, Message

__all__ = ["FlameCoreSDK", "Message"]
