"""The node result service (``/storage`` on the gateway): final results, global and local intermediate data.

Sources (PrivateAIM/node-result-service 0.1.4, checked against the real service with ``make conformance``):
``project/server.py`` (routers mounted at ``/final``, ``/intermediate``, ``/local``; their ``/`` routes end
in a slash, the other spelling is a 307 that loses the gateway's ``/storage`` prefix),
``project/routers/final.py`` (``PUT /`` -> 204; ``PUT /localdp``: one number, form fields ``epsilon`` and
``sensitivity``), ``project/routers/intermediate.py`` (``PUT /`` with optional ``remote_node_id`` ->
``{"url", "object_id"}``; ``GET /{object_id}?node_id=<sender>``, one 400 for every decryption failure),
``project/routers/local.py`` (``PUT /`` with optional ``tag`` -> ``{"url"}``; ``GET /tags``,
``GET /tags/{tag_name}``, ``GET /{object_id}``; ``_TAG_PATTERN``; no ORDER BY), ``project/dependencies.py``
(``HTTPBearer`` and ``get_client_id``: 403 for a missing or refused token), ``project/crypto.py`` and
flame-hub-client ``StorageClient.stream_bucket_file`` (1024-byte chunks, each decrypted on its own).
Errors answer FastAPI's ``{"detail": ...}``; object ids are UUIDs (else 422).
"""

from __future__ import annotations

import re

#: Gateway prefix of the result service (stripped by the gateway).
PREFIX = "/storage"

# -- routes (relative to PREFIX) ---------------------------------------------------------------------------
FINAL = "/final/"
FINAL_LOCAL_DP = "/final/localdp"
INTERMEDIATE = "/intermediate/"
INTERMEDIATE_OBJECT = "/intermediate/{object_id}"
LOCAL = "/local/"
LOCAL_TAGS = "/local/tags"
LOCAL_TAGGED = "/local/tags/{tag}"
LOCAL_OBJECT = "/local/{object_id}"

# -- multipart form fields ------------------------------------------------------------------------------------
FILE = "file"
REMOTE_NODE_ID = "remote_node_id"
TAG = "tag"
EPSILON = "epsilon"
SENSITIVITY = "sensitivity"
#: Query parameter of ``GET /intermediate/{object_id}``: the node that encrypted the object.
SENDER_QUERY = "node_id"
#: Valid local storage tags (``project/routers/local.py``: ``_TAG_PATTERN``, matched in full).
TAG_PATTERN = re.compile(r"[a-z0-9]{1,2}|[a-z0-9][a-z0-9-]{,30}[a-z0-9]")

# -- answers --------------------------------------------------------------------------------------------------
#: ``PUT /intermediate/`` -> ``{"url": ..., "object_id": ...}``; ``PUT /local/`` -> ``{"url": ...}``.
URL = "url"
OBJECT_ID = "object_id"
#: ``GET /local/tags`` -> ``{"tags": [{"name", "url"}]}``; ``GET /local/tags/{tag}`` -> ``{"results": [...]}``.
TAGS = "tags"
RESULTS = "results"
#: Error bodies: ``{"detail": "<reason>"}`` (422: ``{"detail": [{"type", "loc", "msg", "input"}]}``).
DETAIL = "detail"

#: A missing or refused bearer token: 403 (never 401), with one of these details.
AUTH_STATUSES = (401, 403)
NOT_AUTHENTICATED = "Not authenticated"
JWT_MALFORMED = "JWT is malformed"
#: Further details, as the service words them.
LOCAL_DP_NOT_A_NUMBER = "Uploaded file must contain a single numerical value."
REMOTE_NODE_MISSING = "Remote node with ID {node_id} does not exist."
REMOTE_NODE_KEYLESS = "Remote node with ID {node_id} does not provide a public key"
OBJECT_MISSING = "Object with ID {object_id} does not exist"
UNDECRYPTABLE = ("File with ID {object_id} cannot be decrypted under the assumption that the file was encrypted by "
                 "node {node_id} for this node.")
INVALID_TAG = "Invalid tag `{tag}`"
HUB_ERROR = "Hub returned an unexpected response ({status})"

# -- the decrypt limit (upstream bug) -------------------------------------------------------------------------
#: The service decrypts downloads in the chunks its hub client streams, each on its own.
DECRYPT_CHUNK = 1024
#: AES-GCM framing of the service's encryption: a 12-byte IV in front, a 16-byte tag at the end.
IV_SIZE, TAG_SIZE = 12, 16
#: Largest plaintext ``GET /intermediate/{id}?node_id=`` can return (996 bytes).
MAX_DECRYPTABLE_PLAINTEXT = DECRYPT_CHUNK - IV_SIZE - TAG_SIZE
