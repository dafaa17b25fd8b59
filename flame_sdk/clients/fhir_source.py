"""One FHIR store through its Kong route: pages, whole searches, counts, frames.

``GET <base>/kong/{name}/fhir{tail}`` with ``Accept: application/fhir+json`` (a server's default may be
XML). Page links name the FHIR server's own base (HAPI: ``http://<internal host>/fhir?_getpages=...``), so
the client keeps what follows that base and asks its own route for it. The base is read off each answer's
``self`` link; the Kong service path and ``/fhir`` are the fallback. Refusals, timeouts and 5xx become a
``DataSourceError`` naming the source, the query, the server's words and the likely cause.
"""

from __future__ import annotations

import json
from typing import Any

from flame_sdk.clients.data_source import DataContext, SourceClient
from flame_sdk.data.bundles import fhir_suffix, next_link, server_base
from flame_sdk.data.refusals import hint, server_message
from flame_sdk.errors import DataSourceError, ServiceHTTPError, ServiceUnavailableError
from flame_sdk.protocol.data_api import FHIR_JSON, FHIR_ROUTE

_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
MAX_SERVER_BASES = 8


class FhirSourceClient(SourceClient):
    """Async access to one FHIR store through its Kong route."""

    kind = "fhir"

    def __init__(self, api: DataContext, source: dict[str, Any]) -> None:
        super().__init__(api, source)
        self.server_bases: list[str] = []  # bases the server showed in its answers, newest last

    async def fetch_page(self, url_or_query: str) -> dict[str, Any]:
        """One FHIR answer (one page of a search), for a query or a link URL from a Bundle of this source."""
        return await self._home(self._fetch(url_or_query))

    async def search(self, query: str, max_pages: int | None = None) -> dict[str, Any]:
        """The search result with every page's entries in one Bundle (``link`` keeps only ``self``)."""
        return await self._home(self._search(query, max_pages or self.api.max_pages))

    async def count(self, query: str) -> int:
        """Number of matches of a search (``_summary=count``)."""
        joiner = "&" if "?" in query else "?"
        bundle = await self.fetch_page(f"{query}{joiner}_summary=count")
        return int(bundle.get("total", 0))

    async def resources(self, query: str) -> list[dict[str, Any]]:
        """The resources (dicts) of every page of a search."""
        bundle = await self.search(query)
        return [e["resource"] for e in bundle.get("entry", []) if "resource" in e]

    async def models(self, query: str) -> list[Any]:
        """The search's resources parsed into fhir.resources (R4B) models."""
        from flame_sdk.data.frames import to_models

        return to_models(await self.resources(query))

    async def frame(self, query: str) -> Any:
        """The search's resources as a pandas DataFrame (Patient, Observation or Condition)."""
        from flame_sdk.data.frames import resources_frame

        return resources_frame(await self.resources(query))

    def owns(self, url: str) -> bool:
        """Whether ``url`` starts with a base this server used in its answers."""
        return any(url == b or url.startswith((b + "/", b + "?")) for b in self.server_bases)

    # -- internals -------------------------------------------------------------------------------------
    def _tail(self, url_or_query: str) -> str:
        try:
            return fhir_suffix(url_or_query, [str(self.source.get("path") or "")], self.server_bases)
        except ValueError as exc:
            raise DataSourceError(f"FHIR source {self.name!r}: {exc}; pass a query such as 'Patient?_count=50' "
                                  f"or a link of a Bundle from this source") from None

    async def _fetch(self, url_or_query: str) -> dict[str, Any]:
        tail = self._tail(url_or_query)
        page = await self._get(tail)
        base = server_base(page, tail)
        if base is not None and base not in self.server_bases:
            self.server_bases = [*self.server_bases, base][-MAX_SERVER_BASES:]
        link = next_link(page)
        if link is not None:
            self.api.remember_link(link, self)
        return page

    async def _get(self, tail: str) -> dict[str, Any]:
        try:
            route = FHIR_ROUTE.format(name=self.name) + tail
            async with self.api.kong.stream("GET", route, headers={"Accept": FHIR_JSON}) as resp:
                body, content_type = await resp.read(), resp.content_type
        except ServiceHTTPError as exc:
            raise self._refusal(tail, exc.status, exc.reason) from exc
        except ServiceUnavailableError as exc:
            status, text = getattr(exc.cause, "status", None), getattr(exc.cause, "body", "") or str(exc.cause)
            raise self._refusal(tail, status, text, gave_up=True) from exc
        if content_type not in _JSON_TYPES:
            raise DataSourceError(f"FHIR source {self.name!r} answered {tail!r} with {content_type or 'no type'}, "
                                  f"not FHIR JSON, although the request asked for {FHIR_JSON}: "
                                  f"{body[:200].decode(errors='replace')!r}")
        try:
            page = json.loads(body)
        except ValueError as exc:
            raise DataSourceError(f"FHIR source {self.name!r} answered {tail!r} with broken JSON ({exc}): "
                                  f"{body[:200].decode(errors='replace')!r}") from None
        if not isinstance(page, dict) or "resourceType" not in page:
            raise DataSourceError(f"FHIR source {self.name!r} answered {tail!r} with something that is not a "
                                  f"FHIR resource: {str(page)[:200]!r}")
        return page

    def _refusal(self, tail: str, status: int | None, body: str, gave_up: bool = False) -> DataSourceError:
        answer = f"HTTP {status}" if status else "no answer"
        retried = " (after retries)" if gave_up else ""
        return DataSourceError(f"FHIR source {self.name!r} answered query {tail!r} with {answer}{retried}: "
                               f"{server_message(body)} ({hint(status, body, 'fhir')})")

    async def _search(self, query: str, max_pages: int) -> dict[str, Any]:
        first = await self._fetch(query)
        entries = list(first.get("entry") or [])
        seen = {self._tail(query)}
        link = next_link(first)
        pages = 1
        while link is not None:
            tail = self._tail(link)
            if tail in seen:
                raise DataSourceError(f"FHIR source {self.name!r} paged in a loop: the next link {link!r} of "
                                      f"query {query!r} was already fetched (after {pages} pages)")
            if pages >= max_pages:
                raise DataSourceError(f"FHIR query {query!r} on {self.name!r} has more than {max_pages} pages; "
                                      f"narrow the query or raise max_pages")
            seen.add(tail)
            page = await self._fetch(link)
            entries += page.get("entry") or []
            link = next_link(page)
            pages += 1
        if pages == 1:
            return first
        merged = {k: v for k, v in first.items() if k not in ("link", "entry")}
        merged["link"] = [x for x in first.get("link") or [] if x.get("relation") == "self"]
        merged["entry"] = entries
        merged.setdefault("total", len(entries))
        return merged
