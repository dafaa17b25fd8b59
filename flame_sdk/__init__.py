"""flame_sdk: the Python SDK a federated analysis imports on a FLAME node."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flame_sdk.async_core import AsyncFlameCoreSDK
    from flame_sdk.clients.messages import Message
    from flame_sdk.core import FlameCoreSDK
    from flame_sdk.storage.safe_pickle import allow_unpickling

__all__ = ["AsyncFlameCoreSDK", "FlameCoreSDK", "Message", "allow_unpickling"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported lazily so that light modules (templates, simulator) load without the SDK core.
    if name == "FlameCoreSDK":
        from flame_sdk.core import FlameCoreSDK

        return FlameCoreSDK
    if name == "AsyncFlameCoreSDK":
        from flame_sdk.async_core import AsyncFlameCoreSDK

        return AsyncFlameCoreSDK
    if name == "allow_unpickling":
        from flame_sdk.storage.safe_pickle import allow_unpickling

        return allow_unpickling
    if name == "Message":
        from flame_sdk.clients.messages import Message

        return Message
    raise AttributeError(f"module 'flame_sdk' has no attribute {name!r}")
