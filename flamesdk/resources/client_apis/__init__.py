"""``flamesdk.resources.client_apis``: only ``storage_api`` and ``clients.storage_client`` (see ``flamesdk``)."""
