"""The node's data API: the hub adapter lists a project's data stores, Kong routes to each store.

Sources: PrivateAIM/node-hub-api-adapter ``hub_adapter/routers/kong.py`` (router prefix ``/kong``, route
``/datastore/{datastore_id_or_name}`` answering ``{"data": [Kong service objects]}``; stores are created with a
``type`` of ``fhir`` or ``s3``); PrivateAIM/node-pod-orchestration ``src/k8s/kubernetes.py`` (the gateway
forwards ``/hub-adapter/kong/datastore/<PROJECT_ID>`` and ``/kong/...``, prefixes stripped);
PrivateAIM/python-sdk ``flamesdk/resources/client_apis/clients/data_api_client.py`` (``apikey`` header with
``DATA_SOURCE_TOKEN``, ``{name}/fhir/{query}`` and ``{name}/s3/{key}`` on Kong);
PrivateAIM/kong-plugin-minio-gateway ``kong/plugins/minio-gateway/handler.lua`` (signs the request to the
store; the bucket is the configured ``bucket_name``, so clients address the route's own path; what its signing
lets through is ``s3_gateway``); hub_adapter ``errors.py`` / ``auth.py`` (error bodies); Kong's key-auth and
acl plugins; nginx's default ``proxy_read_timeout``; minio/minio ``cmd/api-errors.go``; hapi-fhir
``RestfulServerUtils.createPagingLink`` and ``PageMethodBinding`` (paging links, expired searches).
"""

from __future__ import annotations

from typing import Any

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
#: Kong's acl plugin, for a key whose consumer (analysis) belongs to another project than the route's.
KONG_ACL_DENIED = "You cannot consume this service"
#: Kong, when the upstream of a proxied route (FHIR) cannot be reached.
KONG_BAD_UPSTREAM = "An invalid response was received from the upstream server"
#: The minio-gateway plugin, when it cannot reach the bucket's server (``{"message": ..., "error": ...}``, 502).
PLUGIN_NO_MINIO = "Failed to connect to MinIO"

#: The analysis nginx waits this long for Kong's next bytes (its default proxy_read_timeout; the /kong location
#: sets none). Kong buffers answers (routes have response_buffering; the S3 plugin reads the store's answer
#: whole), so this bounds the time Kong may take to gather a whole answer.
GATEWAY_READ_TIMEOUT_S = 60.0
#: nginx's answer when that time is up (status 504, text/html).
NGINX_GATEWAY_TIMEOUT_PAGE = ("<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center>"
                              "<h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n"
                              "</html>\r\n")

#: MinIO's refusal of a request whose signature differs from its own (HTTP 403, S3 error XML).
S3_SIGNATURE_MISMATCH = "SignatureDoesNotMatch"
S3_SIGNATURE_MISMATCH_MESSAGE = ("The request signature we calculated does not match the signature you provided. "
                                 "Check your key and signing method.")

#: FHIR JSON; a server's default may be XML (HAPI's RestfulServer), so clients ask for it.
FHIR_JSON = "application/fhir+json"
#: HAPI's paging links: ``<server base>?_getpages=<search id>&_getpagesoffset=<n>&_count=<m>&_bundletype=searchset``.
PAGING_SEARCH = "_getpages"
PAGING_OFFSET = "_getpagesoffset"
PAGING_BUNDLE_TYPE = "_bundletype"
#: HAPI's answer (410 Gone) to a paging link whose search is unknown or expired.
SEARCH_GONE = "Search ID[{search_id}] does not exist and may have expired."
#: HAPI's answer (400, OperationOutcome issue code ``processing``) to a search parameter the type does not have
#: (hapi-fhir, hapi-fhir-storage ca/uhn/fhir/jpa/dao/BaseStorageDao.java, Msg.code(524) with the localized
#: ``invalidSearchParameter`` text; ``valid`` is the sorted list of the type's parameters, meta ones included).
HAPI_UNKNOWN_PARAMETER = ('HAPI-0524: Unknown search parameter "{name}" for resource type "{rtype}". Valid search '
                          'parameters for this search are: {valid}')
#: HAPI's answer (404, ResourceNotFoundException) to a resource type it has no provider for (hapi-fhir,
#: RestfulServer.throwUnknownResourceTypeException, Msg.code(302)); a JPA server has a provider for every type.
HAPI_UNKNOWN_RESOURCE_TYPE = "HAPI-0302: Unknown resource type '{rtype}' - Server knows how to handle: {known}"

#: The hub adapter's refusals (FastAPI ``HTTPException`` with a detail object, see ``adapter_error``).
ADAPTER_NOT_FOUND = "No data store or project found matching {key!r}"
ADAPTER_TOKEN_EXPIRED = "Authorization token expired"
ADAPTER_TOKEN_UNREADABLE = "Unable to parse authentication token"
#: FastAPI's HTTPBearer answer to a request without Authorization header: ``{"detail": "Not authenticated"}``.
ADAPTER_NOT_AUTHENTICATED = "Not authenticated"


def adapter_error(status: int, message: str, service: str = "Kong") -> dict[str, Any]:
    """The body of a hub adapter refusal: ``{"detail": {"message", "service", "status_code"}}``."""
    return {"detail": {"message": message, "service": service, "status_code": status}}


def datastore_route(project_id: str) -> str:
    """The hub adapter route listing a project's data stores (relative to HUB_ADAPTER_PREFIX)."""
    return DATASTORE.format(project_id=project_id)
