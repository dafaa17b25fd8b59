"""Alias package: the reference SDK's import, ``from flamesdk import FlameCoreSDK``, gives this SDK's
``FlameCoreSDK``.

The reference SDK is PrivateAIM/python-sdk (package ``flamesdk``). The module paths analyses and the star
templates of PrivateAIM/python-sdk-patterns import from are here too: ``flamesdk.flame_core``,
``flamesdk.resources.node_config`` (``NodeConfig``, the type of ``flame.config``) and
``flamesdk.resources.client_apis.storage_api`` / ``.clients.storage_client``
(``LocalDifferentialPrivacyParams``). The reference's client classes, REST API and utilities are not.
"""

from flame_sdk import FlameCoreSDK

__all__ = ["FlameCoreSDK"]
