"""The node result service (``/storage`` on the gateway): final results, global and local intermediate data.

Sources (PrivateAIM/node-result-service): ``project/server.py`` (routers mounted at ``/final``,
``/intermediate``, ``/local``), ``project/routers/final.py`` (``PUT /`` -> 204, ``PUT /localdp`` with form
fields ``epsilon`` and ``sensitivity`` -> 204), ``project/routers/intermediate.py`` (``PUT /`` with form field
``remote_node_id`` -> ``{"url", "object_id"}``; ``GET /{object_id}?node_id=<sender>``),
``project/routers/local.py`` (``PUT /`` with optional form field ``tag`` -> ``{"url"}``; ``GET /tags``,
``GET /tags/{tag_name}``, ``GET /{object_id}``; tags must match ``_TAG_PATTERN``); errors answer FastAPI's ``{"detail": ...}``.

The upload routes below are spelled as the SDK sends them today, without the real service's trailing slash
(``/final/``, ``/intermediate/``, ``/local/``); issue 10 tracks that difference.
"""

from __future__ import annotations

import re

#: Gateway prefix of the result service (stripped by the gateway).
PREFIX = "/storage"

# -- routes (relative to PREFIX) ---------------------------------------------------------------------------
FINAL = "/final"
FINAL_LOCAL_DP = "/final/localdp"
INTERMEDIATE = "/intermediate"
INTERMEDIATE_OBJECT = "/intermediate/{object_id}"
LOCAL = "/local"
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
#: ``PUT /intermediate`` -> ``{"url": ..., "object_id": ...}``; ``PUT /local`` -> ``{"url": ...}``.
URL = "url"
OBJECT_ID = "object_id"
#: ``GET /local/tags`` -> ``{"tags": [{"name", "url"}]}``; ``GET /local/tags/{tag}`` -> ``{"results": [...]}``.
TAGS = "tags"
RESULTS = "results"
#: Error bodies: ``{"detail": "<reason>"}``.
DETAIL = "detail"
#: Header the simulator sets on a verified global download (a simulator extension; see docs/protocol.md).
SENDER_HEADER = "X-Flame-Sender"
#: ``GET /intermediate/{id}?node_id=...`` answers that mean "not authentic for this node", as the simulator
#: answers them: wrong sender, encrypted for another node, failed authentication.
WRONG_SENDER, WRONG_RECIPIENT, TAMPERED = 400, 403, 422
