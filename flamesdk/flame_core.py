"""``flamesdk.flame_core``: the names the reference SDK's module of that name defines or imports for users."""

from flame_sdk import FlameCoreSDK
from flamesdk.resources.client_apis.clients.storage_client import LocalDifferentialPrivacyParams
from flamesdk.resources.node_config import NodeConfig

__all__ = ["FlameCoreSDK", "LocalDifferentialPrivacyParams", "NodeConfig"]
