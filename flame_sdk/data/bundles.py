"""Small pure helpers on FHIR Bundles: links, paging URLs and the resources they hold."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def next_link(bundle: dict[str, Any]) -> str | None:
    """The ``next`` page URL of a Bundle, if any."""
    for link in bundle.get("link") or []:
        if link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def fhir_tail(url_or_query: str) -> str:
    """The part of a FHIR URL after ``/fhir/`` (a relative query comes back without a leading slash)."""
    marker = url_or_query.rfind("/fhir/")
    return url_or_query[marker + len("/fhir/"):] if marker >= 0 else url_or_query.lstrip("/")


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
