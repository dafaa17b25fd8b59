"""Small pure helpers on FHIR Bundles: links, paging URLs and the resources they hold."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit


def next_link(bundle: dict[str, Any]) -> str | None:
    """The ``next`` page URL of a Bundle, if any."""
    return _link(bundle, "next")


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == relation and link.get("url"):
            return str(link["url"])
    return None


def _is_absolute(url_or_query: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url_or_query) is not None  # a query may hold URLs (systems)


def server_base(bundle: dict[str, Any], tail: str) -> str | None:
    """The base URL the FHIR server uses in its links, read off the ``self`` link of the answer to ``tail``
    (what was asked after the base: ``/Patient?...`` or ``?_getpages=...``); None when it does not show."""
    link = _link(bundle, "self")
    if link is None or not _is_absolute(link):
        return None
    parts = urlsplit(link)
    asked = urlsplit(tail).path.rstrip("/")
    if not parts.path.rstrip("/").endswith(asked):
        return None
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path[: len(path) - len(asked)]}"


def fhir_suffix(url_or_query: str, base_paths: Iterable[str] = (), server_bases: Iterable[str] = ()) -> str:
    """What follows the FHIR base in ``url_or_query``: ``/Patient?...``, or ``?_getpages=...`` (HAPI links).

    A relative query (``Patient?_count=5``) gets a leading slash. An absolute URL that starts with one of
    ``server_bases`` (the bases the server showed in earlier answers, see ``server_base``) loses that base.
    Otherwise its base is the last occurrence of one of ``base_paths`` (e.g. the Kong service's ``path``)
    or of ``/fhir``, followed by ``/``, ``?`` or the end; a URL with none of these raises ValueError.
    """
    if not _is_absolute(url_or_query):
        return "/" + url_or_query.lstrip("/")
    for base in sorted({b.rstrip("/") for b in server_bases}, key=len, reverse=True):
        if url_or_query == base or url_or_query.startswith((base + "/", base + "?")):
            return url_or_query[len(base):]
    parts = urlsplit(url_or_query)
    query = f"?{parts.query}" if parts.query else ""
    best = -1
    for base in {b.rstrip("/") for b in (*base_paths, "/fhir") if b and b.rstrip("/")}:
        for candidate in (parts.path.rfind(base + "/"), len(parts.path) - len(base) if parts.path.endswith(base) else -1):
            if candidate >= 0 and candidate + len(base) > best:
                best = candidate + len(base)
    if best < 0:
        raise ValueError(f"cannot find the FHIR base path ({', '.join([*base_paths, '/fhir'])}) in {url_or_query!r}")
    return parts.path[best:] + query


def bundle_resources(data: Any) -> list[dict[str, Any]]:
    """The resources in ``data``: a Bundle, a resource, ``{query: Bundle}`` (one get_fhir_data item), or a
    list of any of these."""
    if isinstance(data, dict):
        if data.get("resourceType") == "Bundle":
            return [e["resource"] for e in data.get("entry") or [] if isinstance(e, dict) and "resource" in e]
        if "resourceType" in data:
            return [data]
        return bundle_resources(list(data.values()))
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        return [resource for item in data for resource in bundle_resources(item)]
    raise TypeError(f"expected FHIR Bundles or resources (dicts), got {type(data).__name__}")
