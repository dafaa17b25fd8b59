"""The node's data API: the hub adapter lists a project's data stores, Kong routes to each store.

Sources: PrivateAIM/node-hub-api-adapter ``hub_adapter/routers/kong.py`` (router prefix ``/kong``, route
``/datastore/{datastore_id_or_name}`` answering ``{"data": [Kong service objects]}``; stores are created with a
``type`` of ``fhir`` or ``s3``); PrivateAIM/node-pod-orchestration ``src/k8s/kubernetes.py`` (the gateway
forwards ``/hub-adapter/kong/datastore/<PROJECT_ID>`` and ``/kong/...``, prefixes stripped);
PrivateAIM/python-sdk ``flamesdk/resources/client_apis/clients/data_api_client.py`` (``apikey`` header with
``DATA_SOURCE_TOKEN``, ``{name}/fhir/{query}`` and ``{name}/s3/{key}`` on Kong);
PrivateAIM/kong-plugin-minio-gateway ``kong/plugins/minio-gateway/handler.lua`` (signs the request to the
store; the bucket is the configured ``bucket_name``, so clients address the route's own path).
"""

from __future__ import annotations

#: Gateway prefixes (both stripped by the gateway).
HUB_ADAPTER_PREFIX = "/hub-adapter"
KONG_PREFIX = "/kong"

#: Hub adapter route (relative to HUB_ADAPTER_PREFIX): the project's data stores as ``{"data": [...]}``.
DATASTORE = "/kong/datastore/{project_id}"
DATA = "data"
#: Tag on a Kong service that tells the store's kind: ``type:fhir`` or ``type:s3``.
TYPE_TAG_KEY = "type"
KINDS: tuple[str, ...] = ("fhir", "s3")

#: Kong routes (relative to KONG_PREFIX) of one store, by its Kong service name.
FHIR_ROUTE = "/{name}/fhir"
S3_ROUTE = "/{name}/s3"
#: Header carrying ``DATA_SOURCE_TOKEN`` on Kong routes (Kong's key-auth).
APIKEY_HEADER = "apikey"
#: The bucket name S3 clients use: with the route ``/{name}`` as endpoint, ``/{name}/s3/{key}`` is the object.
S3_BUCKET = "s3"
#: Kong's answer when no route matches, and for a missing or wrong key (``{"message": ...}``).
KONG_NO_ROUTE = "no Route matched with those values"
KONG_NO_KEY = "No API key found in request"
KONG_BAD_KEY = "Invalid authentication credentials"


def datastore_route(project_id: str) -> str:
    """The hub adapter route listing a project's data stores (relative to HUB_ADAPTER_PREFIX)."""
    return DATASTORE.format(project_id=project_id)
