"""One FHIR store through its Kong route: pages, whole searches, counts, frames.

``GET <base>/kong/{name}/fhir{tail}`` with ``Accept: application/fhir+json`` (a server's default may be
XML). Page links name the FHIR server's own base (HAPI: ``http://<internal host>/fhir?_getpages=...``), so
the client keeps what follows that base and asks its own route for it. The base is read off each answer's
``self`` link; the Kong service path and ``/fhir`` are the fallback. Refusals, timeouts and 5xx become a
``DataSourceError`` naming the source, the query, the server's words and the likely cause.

A search asks for the next page as soon as the current page's head names it, and decodes pages in a worker
thread with the garbage collector paused (``flame_sdk.data.page_decoding``), so fetching, the server's work
and decoding overlap.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from flame_sdk.clients.data_source import DataContext, SourceClient
from flame_sdk.data.bundles import fhir_suffix, next_link, server_base
from flame_sdk.data.page_decoding import collector_paused, decode_json, peek_links
from flame_sdk.data.refusals import hint, server_message
from flame_sdk.errors import DataSourceError, ServiceHTTPError, ServiceUnavailableError
from flame_sdk.protocol.data_api import FHIR_JSON, FHIR_ROUTE

_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
MAX_SERVER_BASES = 8
#: Answers larger than this are decoded in a worker thread, not on the SDK loop.
THREAD_DECODE_BYTES = 256 * 1024


@dataclass(frozen=True)
class _Answer:
    body: bytes
    content_type: str


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
        """The search's resources parsed into fhir.resources (R4B) models (in a worker thread)."""
        return await asyncio.to_thread(_models, await self.resources(query))

    async def frame(self, query: str) -> Any:
        """The search's resources as a pandas DataFrame (Patient, Observation or Condition; in a worker thread)."""
        return await asyncio.to_thread(_frame, await self.resources(query))

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
        return await self._accept(tail, await self._get(tail))

    async def _accept(self, tail: str, answer: _Answer, threaded: bool = False) -> dict[str, Any]:
        """Decode one answer (in a worker thread when ``threaded`` or large) and note its base and next link."""
        if threaded or len(answer.body) > THREAD_DECODE_BYTES:
            page = await asyncio.to_thread(self._decode, tail, answer)
        else:
            page = self._decode(tail, answer)
        self._learn_base(page, tail)
        link = next_link(page)
        if link is not None:
            self.api.remember_link(link, self)
        return page

    def _learn_base(self, page: dict[str, Any], tail: str) -> None:
        base = server_base(page, tail)
        if base is not None and base not in self.server_bases:
            self.server_bases = [*self.server_bases, base][-MAX_SERVER_BASES:]

    async def _get(self, tail: str) -> _Answer:
        try:
            route = FHIR_ROUTE.format(name=self.name) + tail
            async with self.api.kong.stream("GET", route, headers={"Accept": FHIR_JSON}) as resp:
                return _Answer(await resp.read(), resp.content_type)
        except ServiceHTTPError as exc:
            raise self._refusal(tail, exc.status, exc.reason) from exc
        except ServiceUnavailableError as exc:
            status, text = getattr(exc.cause, "status", None), getattr(exc.cause, "body", "") or str(exc.cause)
            raise self._refusal(tail, status, text, gave_up=True) from exc

    def _decode(self, tail: str, answer: _Answer) -> dict[str, Any]:
        body = answer.body
        if answer.content_type not in _JSON_TYPES:
            raise DataSourceError(f"FHIR source {self.name!r} answered {tail!r} with {answer.content_type or 'no type'}, "
                                  f"not FHIR JSON, although the request asked for {FHIR_JSON}: "
                                  f"{body[:200].decode(errors='replace')!r}")
        try:
            page = decode_json(body)
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

    def _next_tail(self, link: str, query: str, seen: set[str], pages: int, max_pages: int) -> str:
        """The tail of the next page; DataSourceError for a paging loop or too many pages."""
        tail = self._tail(link)
        if tail in seen:
            raise DataSourceError(f"FHIR source {self.name!r} paged in a loop: the next link {link!r} of "
                                  f"query {query!r} was already fetched (after {pages} pages)")
        if pages >= max_pages:
            raise DataSourceError(f"FHIR query {query!r} on {self.name!r} has more than {max_pages} pages; "
                                  f"narrow the query or raise max_pages")
        seen.add(tail)
        return tail

    async def _search(self, query: str, max_pages: int) -> dict[str, Any]:
        """Every page of a search. Page n+1 is asked for as soon as page n's head names it (``peek_links``), so
        the server works on it while page n is decoded (in a worker thread). The garbage collector is paused
        meanwhile (``page_decoding.collector_paused``)."""
        with collector_paused():  # the pages' dicts stay alive: see page_decoding
            return await self._search_pages(query, max_pages)

    async def _search_pages(self, query: str, max_pages: int) -> dict[str, Any]:
        tail = self._tail(query)
        seen = {tail}
        fetching: tuple[str, asyncio.Task[_Answer]] | None = (tail, asyncio.ensure_future(self._get(tail)))
        first: dict[str, Any] | None = None
        entries: list[Any] = []
        pages = 0
        try:
            while fetching is not None:
                tail, task = fetching
                answer = await task
                fetching, pages = None, pages + 1
                early = peek_links(answer.body)
                early_link = None if early is None else next_link({"link": early})
                if early_link is not None:
                    self._learn_base({"link": early}, tail)
                    next_tail = self._next_tail(early_link, query, seen, pages, max_pages)
                    fetching = (next_tail, asyncio.ensure_future(self._get(next_tail)))
                page = await self._accept(tail, answer, threaded=True)
                link = next_link(page)
                if link != early_link:  # the head did not tell (or told otherwise): follow the decoded page
                    if fetching is not None:
                        await _discard(fetching[1])
                        seen.discard(fetching[0])
                        fetching = None
                    if link is not None:
                        next_tail = self._next_tail(link, query, seen, pages, max_pages)
                        fetching = (next_tail, asyncio.ensure_future(self._get(next_tail)))
                if first is None:
                    first = page
                    entries = list(page.get("entry") or [])
                else:
                    entries += page.get("entry") or []
        finally:
            if fetching is not None:
                await _discard(fetching[1])
        assert first is not None
        if pages == 1:
            return first
        merged = {k: v for k, v in first.items() if k not in ("link", "entry")}
        merged["link"] = [x for x in first.get("link") or [] if x.get("relation") == "self"]
        merged["entry"] = entries
        merged.setdefault("total", len(entries))
        return merged


async def _discard(task: asyncio.Task[Any]) -> None:
    """Cancel a fetch that is no longer wanted and wait until it let go of its connection."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _models(resources: list[dict[str, Any]]) -> list[Any]:
    # fhir.resources is imported here, in the worker thread, not on the SDK loop
    from flame_sdk.data.frames import to_models

    return to_models(resources)


def _frame(resources: list[dict[str, Any]]) -> Any:
    # pandas is imported here, in the worker thread, not on the SDK loop
    from flame_sdk.data.frames import resources_frame

    return resources_frame(resources)
