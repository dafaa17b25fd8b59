"""``flamesdk.resources.client_apis.storage_api``: re-exports ``LocalDifferentialPrivacyParams`` as the
reference's module of that name does."""

from flamesdk.resources.client_apis.clients.storage_client import LocalDifferentialPrivacyParams

__all__ = ["LocalDifferentialPrivacyParams"]
