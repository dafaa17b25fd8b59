"""What a refusal on the data path means: the server's own words and the likely cause (pure, no I/O).

Error answers come from several hands on a node, each with its own body: the FHIR server (an
OperationOutcome), MinIO through Kong's minio-gateway plugin (S3 error XML), Kong itself
(``{"message": ...}``), the hub adapter (``{"detail": {...}}``) and the analysis nginx (an HTML page).
"""

from __future__ import annotations

import json
import re
from typing import Any

from flame_sdk.protocol import data_api


def server_message(body: str) -> str:
    """The human part of an error body; the body itself (shortened) when its form is unknown."""
    text = body.strip()
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        if data.get("resourceType") == "OperationOutcome":
            issues = [i for i in data.get("issue") or [] if isinstance(i, dict)]
            notes = [str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code") or "")
                     for i in issues]
            return "; ".join(n for n in notes if n) or "OperationOutcome without diagnostics"
        detail = data.get("detail")
        if isinstance(detail, dict) and detail.get("message"):
            return str(detail["message"])
        if isinstance(detail, str):
            return detail
        if data.get("message"):
            return str(data["message"])
    code = re.search(r"<Code>(.*?)</Code>", text, re.S)
    if code:
        message = re.search(r"<Message>(.*?)</Message>", text, re.S)
        return f"{code.group(1)}: {message.group(1)}" if message else code.group(1)
    title = re.search(r"<title>(.*?)</title>", text, re.S | re.I)
    if title:
        return f"{title.group(1).strip()} (from nginx)" if "nginx" in text else title.group(1).strip()
    return text[:300]


def hint(status: int | None, body: str, kind: str) -> str:
    """The likely cause of a refusal and what to do about it; ``kind`` is ``fhir`` or ``s3``."""
    if status == 401:
        return "DATA_SOURCE_TOKEN is missing or not accepted by Kong's key-auth"
    if status == 403 and data_api.KONG_ACL_DENIED in body:
        return "Kong's acl plugin: the source is not linked to this analysis' project"
    if status == 403 and data_api.S3_SIGNATURE_MISMATCH in body:
        return ("Kong's minio-gateway plugin signed the request differently from MinIO: the key or a listing value "
                "holds characters the gateway cannot pass unchanged")
    if status == 403 and kind == "s3":
        return "MinIO refused the gateway's credentials for the bucket; a node admin must check the data store"
    if status == 404 and data_api.KONG_NO_ROUTE in body:
        return "the source is not routed on this node (wrong name or type)"
    if status == 400 and kind == "s3":
        return "the gateway's request to MinIO was malformed (a key with a space breaks its request line)"
    if status == 504:
        what = "query" if kind == "fhir" else "read"
        return (f"no answer within the analysis gateway's {data_api.GATEWAY_READ_TIMEOUT_S:.0f} s read limit (nginx "
                f"proxy_read_timeout; Kong sends nothing before it has the whole answer): make the {what} smaller")
    return _BY_STATUS.get((status, kind)) or _BY_STATUS.get((status, "")) or "see the server's answer"


_BY_STATUS: dict[tuple[int | None, str], str] = {
    (None, ""): "no answer through the node's gateway (connection refused, reset or timed out)",
    (400, "fhir"): "check the FHIR query (resource type and search parameters)",
    (404, "fhir"): "the FHIR resource does not exist",
    (404, "s3"): "no such object",
    (410, "fhir"): "the server's paging link expired (HAPI keeps a search's pages for a limited time); run the "
                   "query again",
    (412, "s3"): "the object changed while it was read; read it again",
    (429, ""): "the data store is rate limiting; try again later",
    (500, ""): "the data store failed on this request",
    (502, ""): "Kong could not reach the data store",
    (503, ""): "the data store is unavailable",
}
