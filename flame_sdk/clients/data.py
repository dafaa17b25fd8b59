"""Data API client: the project's data sources (hub adapter) and their FHIR and S3 routes (Kong).

* Sources: GET ``<base>/hub-adapter/kong/datastore/{PROJECT_ID}`` (bearer token) -> ``{"data": [Kong service
  objects]}``; a service's type is its ``type:fhir`` / ``type:s3`` tag.
* FHIR (``flame_sdk.clients.fhir_source``): GET ``<base>/kong/{service name}/fhir/{query}`` with header
  ``apikey: DATA_SOURCE_TOKEN``. Searches follow ``Bundle.link`` ``next`` until the last page (bounded page
  count, loops are an error) and come back as one Bundle holding every entry.
* S3 (``flame_sdk.clients.s3_source``): boto3 against ``<base>/kong/{service name}``, bucket ``s3``, shaped
  for Kong's minio-gateway plugin. Named keys are read directly; only ``get_s3_data([])`` lists the bucket.

Data requests are retried on connection errors, 429, 502 and 503; a 500 (the server failed on this
request) or a 504 (the gateway's 60 s read limit) is reported at once, as a ``DataSourceError`` that names
the source, the query and the server's words.

Per-source clients (``get_data_client``) are async; they may be awaited from any event loop (their work
runs on the SDK loop that owns the HTTP session).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from flame_sdk.clients.data_source import SourceClient
from flame_sdk.clients.fhir_source import FhirSourceClient
from flame_sdk.clients.s3_source import DEFAULT_PART_SIZE, S3SourceClient
from flame_sdk.config import NodeConfig
from flame_sdk.data.refusals import server_message
from flame_sdk.data.requests import (
    KEYS_SHOWN,
    matched_nothing,
    missing_keys,
    missing_keys_error,
    missing_keys_warning,
    no_match_notice,
    node_name,
    refuse_unreadable,
)
from flame_sdk.errors import DataSourceError, ServiceHTTPError
from flame_sdk.http import ServiceClient
from flame_sdk.logs import FlameLogger

__all__ = ["DataApiClient", "FhirSourceClient", "S3SourceClient", "source_type"]

DEFAULT_MAX_PAGES = 10_000
DEFAULT_CONCURRENCY = 8
DATA_RETRY_STATUSES = frozenset({429, 502, 503})
LINKS_KEPT = 10_000


def source_type(source: dict[str, Any]) -> str | None:
    """``fhir`` or ``s3`` from the Kong service's ``type:`` tag (the hub adapter tags every data store it
    creates). An untagged service (created by hand in Kong) is typed by ``fhir`` or ``s3`` in its name or
    path; None when neither tells."""
    for tag in source.get("tags") or []:
        key, _, value = str(tag).partition(":")
        if key == "type" and value in ("fhir", "s3"):
            return value
    hints = f"{source.get('name', '')} {source.get('path') or ''}".lower()
    kinds = [kind for kind in ("fhir", "s3") if kind in hints]
    return kinds[0] if len(kinds) == 1 else None


class DataApiClient:
    """The node's data API for one analysis: source list, FHIR queries and S3 reads across all sources."""

    def __init__(self, kong: ServiceClient, hub_adapter: ServiceClient, config: NodeConfig, logger: FlameLogger,
                 max_pages: int = DEFAULT_MAX_PAGES, concurrency: int = DEFAULT_CONCURRENCY,
                 s3_part_size: int = DEFAULT_PART_SIZE) -> None:
        self.kong = kong.with_retry(replace(kong.retry, retry_statuses=DATA_RETRY_STATUSES))
        self.hub_adapter = hub_adapter
        self.config = config
        self.logger = logger
        self.max_pages = max_pages
        self.concurrency = concurrency
        self.s3_part_size = s3_part_size
        self.loop: asyncio.AbstractEventLoop | None = None
        self._sources: list[dict[str, Any]] = []
        self._clients: dict[str, FhirSourceClient | S3SourceClient] = {}
        self._links: OrderedDict[str, SourceClient] = OrderedDict()  # next link -> the source that gave it

    async def connect(self) -> None:
        """Fetch this project's data sources; raise DataSourceError when the answer is unusable."""
        self.loop = asyncio.get_running_loop()
        try:
            body = await self.hub_adapter.json("GET", f"/kong/datastore/{self.config.project_id}", ok=(200,))
        except ServiceHTTPError as exc:
            raise DataSourceError(f"the hub adapter refused to list the data sources of project "
                                  f"{self.config.project_id}: HTTP {exc.status} {server_message(exc.reason)}") from exc
        sources = body.get("data") if isinstance(body, dict) else None
        if not isinstance(sources, list) or not all(isinstance(s, dict) and s.get("name") for s in sources):
            raise DataSourceError(f"the hub adapter listed the data sources of project {self.config.project_id} as "
                                  f"{str(body)[:200]!r}; expected {{'data': [Kong service objects with a name]}}")
        self._sources = sources
        self._clients = {}
        for source in sources:
            kind = source_type(source)
            if kind is None:
                self.logger.log(f"data source {source['name']!r} has no type:fhir / type:s3 tag (nor 'fhir' or "
                                f"'s3' in its name or path) and is skipped", "warn")
                continue
            client_cls = FhirSourceClient if kind == "fhir" else S3SourceClient
            self._clients[str(source.get("id", source["name"]))] = client_cls(self, source)

    # -- sync ---------------------------------------------------------------------------------------
    def get_data_sources(self) -> list[dict[str, Any]]:
        """The project's data sources (Kong service objects), as listed by the hub adapter."""
        return [dict(source) for source in self._sources]

    def get_data_client(self, data_id: str) -> FhirSourceClient | S3SourceClient:
        """The async client of one source, by Kong service id (or name)."""
        client = self._clients.get(data_id) or next((c for c in self._clients.values() if c.name == data_id), None)
        if client is None:
            known = ", ".join(f"{c.id} ({c.name}, {c.kind})" for c in self._clients.values()) or "none"
            raise ValueError(f"no data source with id {data_id!r} in project {self.config.project_id}; "
                             f"known ids: {known}")
        return client

    def remember_link(self, url: str, client: SourceClient) -> None:
        """Note which source gave a page link, so ``fetch_fhir_page`` asks that source for it."""
        self._links[url] = client
        self._links.move_to_end(url)
        if len(self._links) > LINKS_KEPT:
            self._links.popitem(last=False)

    # -- async --------------------------------------------------------------------------------------
    def _of_kind(self, kind: str) -> list[Any]:
        return [c for c in self._clients.values() if c.kind == kind]

    async def get_fhir_data(self, fhir_queries: list[str] | None) -> list[dict[str, Any]] | None:
        """Per FHIR source, ``{query: Bundle with every page}``; None for None or no queries. A search that
        matched nothing gets a notice in the log naming the node, the source and the query."""
        if not fhir_queries:
            return None
        queries = list(dict.fromkeys(fhir_queries))
        limit = asyncio.Semaphore(self.concurrency)

        async def one(client: FhirSourceClient, query: str) -> dict[str, Any]:
            async with limit:
                return await client.search(query)

        async def per_source(client: FhirSourceClient) -> dict[str, Any]:
            bundles = await asyncio.gather(*(one(client, q) for q in queries))
            for query, bundle in zip(queries, bundles, strict=True):
                if matched_nothing(bundle):
                    self.logger.log(no_match_notice(query, client.name, node_name(self.logger.label)), "notice")
            return dict(zip(queries, bundles, strict=True))

        return list(await asyncio.gather(*(per_source(c) for c in self._of_kind("fhir"))))

    async def get_s3_data(self, s3_keys: list[str] | None) -> list[dict[str, bytes]] | None:
        """Per S3 source, ``{key: bytes}`` of the keys named that exist there (all keys for ``[]``); None for
        None. Named keys are read directly (no listing); every key is checked before the first request.
        Named keys that no source holds are named in a warning, with the keys the sources hold; when none
        of the named keys exists, that is a DataSourceError (see ``flame_sdk.data.requests``)."""
        if s3_keys is None:
            return None
        named = list(dict.fromkeys(s3_keys))
        refuse_unreadable(named, "the keys asked for")
        sources: list[S3SourceClient] = self._of_kind("s3")

        async def per_source(client: S3SourceClient) -> dict[str, bytes]:
            if named:
                return await client.get_many(named, missing_ok=True)
            keys = await client.list_keys()
            refuse_unreadable(keys, f"S3 source {client.name!r}", " or name the others in get_s3_data([...])")
            return await client.get_many(keys)

        found = list(await asyncio.gather(*(per_source(c) for c in sources)))
        missing = missing_keys(named, found)
        if missing and sources:
            listings = await asyncio.gather(*(c.list_keys(page_size=KEYS_SHOWN + 1, limit=KEYS_SHOWN + 1)
                                              for c in sources))
            held = {c.name: keys for c, keys in zip(sources, listings, strict=True)}
            node = node_name(self.logger.label)
            if len(missing) == len(named):
                raise missing_keys_error(named, held, node)
            self.logger.log(missing_keys_warning(missing, held, node), "warn")
        return found

    async def fetch_fhir_page(self, url_or_query: str) -> dict[str, Any]:
        """One FHIR page for a link URL or query (used to follow ``next`` links, e.g. by fhir_to_csv).

        The source is the one that gave the link (remembered for the last 10,000 links), else the one named in
        a ``/kong/{name}/fhir`` URL, else the one whose server base the URL starts with, else the only FHIR
        source.
        """
        fhir: list[FhirSourceClient] = self._of_kind("fhir")
        owner = self._links.get(url_or_query)
        owner = owner if isinstance(owner, FhirSourceClient) else None
        named = [c for c in fhir if f"/kong/{c.name}/fhir" in url_or_query]
        by_base = [c for c in fhir if c.owns(url_or_query)]
        for candidates in ([owner] if owner else [], named, by_base, fhir):
            if len(candidates) == 1:
                return await candidates[0].fetch_page(url_or_query)
        names = [c.name for c in fhir]
        raise DataSourceError(f"cannot tell which FHIR source serves {url_or_query!r} (sources: {names or 'none'}); "
                              f"use get_data_client(data_id).fetch_page(...) instead")
