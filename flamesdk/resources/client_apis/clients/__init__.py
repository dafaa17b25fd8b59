"""``flamesdk.resources.client_apis.clients``: only ``storage_client`` (see ``flamesdk``)."""
