"""Data API client: the project's data sources (hub adapter) and their FHIR and S3 routes (Kong).

* Sources: GET ``<base>/hub-adapter/kong/datastore/{PROJECT_ID}`` (bearer token) -> ``{"data": [Kong service
  objects]}``; a service's type is its ``type:fhir`` / ``type:s3`` tag.
* FHIR: GET ``<base>/kong/{service name}/fhir/{query}`` with header ``apikey: DATA_SOURCE_TOKEN``. Searches
  follow ``Bundle.link`` ``next`` until the last page (bounded page count, loops are an error) and come
  back as one Bundle holding every entry.
* S3: boto3 against ``endpoint_url=<base>/kong/{service name}``, bucket ``s3`` (so the requests are
  ``GET /kong/{name}/s3`` to list and ``GET /kong/{name}/s3/{key}`` to read), path-style, unsigned (Kong
  signs upstream), with the ``apikey`` header added to every request. boto3 runs in worker threads.

Per-source clients (``get_data_client``) are async; they may be awaited from any event loop (their work
runs on the SDK loop that owns the HTTP session).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

from flame_sdk.config import NodeConfig
from flame_sdk.data.bundles import fhir_suffix, next_link
from flame_sdk.errors import DataSourceError, ServiceHTTPError
from flame_sdk.http import ServiceClient
from flame_sdk.logs import FlameLogger
from flame_sdk.protocol.data_api import S3_BUCKET

T = TypeVar("T")
DEFAULT_MAX_PAGES = 10_000
DEFAULT_CONCURRENCY = 8
_HINTS = {
    400: "check the FHIR query (resource type and search parameters)",
    401: "DATA_SOURCE_TOKEN is missing or not accepted by Kong",
    403: "this analysis' project is not allowed to use the source",
    404: "the source is not routed for this project, or the resource does not exist",
}


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


class _SourceClient:
    """Common part of the per-source clients."""

    kind = ""

    def __init__(self, api: DataApiClient, source: dict[str, Any]) -> None:
        self.api = api
        self.source = source
        self.id: str = str(source.get("id"))
        self.name: str = str(source.get("name"))

    async def _home(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the SDK loop, awaiting it from whichever loop the caller uses."""
        home = self.api.loop
        if home is None or asyncio.get_running_loop() is home:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, home))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} id={self.id}>"


class FhirSourceClient(_SourceClient):
    """Async access to one FHIR store through its Kong route."""

    kind = "fhir"

    async def fetch_page(self, url_or_query: str) -> dict[str, Any]:
        """One FHIR answer (one page of a search), for a query or a link URL from a Bundle."""
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

    def _suffix(self, url_or_query: str) -> str:
        try:
            return fhir_suffix(url_or_query, [str(self.source.get("path") or "")])
        except ValueError as exc:
            raise DataSourceError(f"FHIR source {self.name!r}: {exc}; pass a query such as 'Patient?_count=50' "
                                  f"or a link of a Bundle from this source") from None

    async def _fetch(self, url_or_query: str) -> dict[str, Any]:
        tail = self._suffix(url_or_query)
        try:
            body = await self.api.kong.json("GET", f"/{self.name}/fhir{tail}", ok=(200,))
        except ServiceHTTPError as exc:
            hint = _HINTS.get(exc.status, "see the server's answer")
            raise DataSourceError(f"FHIR source {self.name!r} answered {tail!r} with HTTP {exc.status}: "
                                  f"{exc.reason[:300]} ({hint})") from exc
        if not isinstance(body, dict) or "resourceType" not in body:
            raise DataSourceError(f"FHIR source {self.name!r} answered {tail!r} with something that is not a "
                                  f"FHIR resource: {str(body)[:200]!r}")
        return body

    async def _search(self, query: str, max_pages: int) -> dict[str, Any]:
        first = await self._fetch(query)
        entries = list(first.get("entry") or [])
        seen = {self._suffix(query)}
        link = next_link(first)
        pages = 1
        while link is not None:
            tail = self._suffix(link)
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


class S3SourceClient(_SourceClient):
    """Async access to one S3 bucket through its Kong route (boto3 in worker threads)."""

    kind = "s3"

    def __init__(self, api: DataApiClient, source: dict[str, Any]) -> None:
        super().__init__(api, source)
        self._client: Any = None
        self._lock = threading.Lock()

    def boto3_client(self) -> Any:
        """The boto3 S3 client bound to this source's Kong route (bucket name ``s3``)."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        config = Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}, connect_timeout=10,
                        read_timeout=120, retries={"max_attempts": 5, "mode": "standard"},
                        request_checksum_calculation="when_required", response_checksum_validation="when_required")
        client = boto3.session.Session().client("s3", endpoint_url=f"{self.api.config.base_url}/kong/{self.name}",
                                                region_name="us-east-1", config=config)
        apikey = self.api.config.data_source_token or ""

        def add_apikey(request: Any, **_: Any) -> None:
            request.headers["apikey"] = apikey

        client.meta.events.register("request-created.s3", add_apikey)
        return client

    async def list_keys(self, prefix: str = "", page_size: int = 1000) -> list[str]:
        """Every object key in the bucket (optionally under ``prefix``), over all listing pages of
        ``page_size`` keys."""
        return await asyncio.to_thread(self._run_s3, "list", self._list_keys, prefix, page_size)

    async def get(self, key: str) -> bytes:
        """One object's bytes, read in chunks."""
        return await asyncio.to_thread(self._run_s3, key, self._get, key)

    async def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """Several objects, read concurrently, keyed by their keys (in the given order)."""
        keys = list(keys)
        limit = asyncio.Semaphore(self.api.concurrency)

        async def one(key: str) -> bytes:
            async with limit:
                return await self.get(key)

        bodies = await asyncio.gather(*(one(k) for k in keys))
        return dict(zip(keys, bodies, strict=True))

    async def download(self, key: str, path: str | Path) -> int:
        """Stream one object to a file; return the number of bytes written."""
        return await asyncio.to_thread(self._run_s3, key, self._download, key, Path(path))

    def _run_s3(self, what: str, fn: Any, *args: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            hint = _HINTS.get(status, "see the server's answer")
            raise DataSourceError(f"S3 source {self.name!r} refused {what!r}: HTTP {status} "
                                  f"{exc.response.get('Error', {}).get('Message') or exc} ({hint})") from exc
        except BotoCoreError as exc:
            raise DataSourceError(f"S3 source {self.name!r} is unreachable for {what!r}: {exc}") from exc

    def _list_keys(self, prefix: str, page_size: int) -> list[str]:
        paginator = self.boto3_client().get_paginator("list_objects")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=S3_BUCKET, Prefix=prefix, PaginationConfig={"PageSize": page_size}):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys

    def _get(self, key: str) -> bytes:
        body = self.boto3_client().get_object(Bucket=S3_BUCKET, Key=key)["Body"]
        data = bytearray()
        for chunk in body.iter_chunks(1024 * 1024):
            data += chunk
        return bytes(data)

    def _download(self, key: str, path: Path) -> int:
        body = self.boto3_client().get_object(Bucket=S3_BUCKET, Key=key)["Body"]
        written = 0
        with path.open("wb") as out:
            for chunk in body.iter_chunks(1024 * 1024):
                out.write(chunk)
                written += len(chunk)
        return written


class DataApiClient:
    """The node's data API for one analysis: source list, FHIR queries and S3 reads across all sources."""

    def __init__(self, kong: ServiceClient, hub_adapter: ServiceClient, config: NodeConfig, logger: FlameLogger,
                 max_pages: int = DEFAULT_MAX_PAGES, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.kong = kong
        self.hub_adapter = hub_adapter
        self.config = config
        self.logger = logger
        self.max_pages = max_pages
        self.concurrency = concurrency
        self.loop: asyncio.AbstractEventLoop | None = None
        self._sources: list[dict[str, Any]] = []
        self._clients: dict[str, FhirSourceClient | S3SourceClient] = {}

    async def connect(self) -> None:
        """Fetch this project's data sources; raise DataSourceError when the answer is unusable."""
        self.loop = asyncio.get_running_loop()
        body = await self.hub_adapter.json("GET", f"/kong/datastore/{self.config.project_id}", ok=(200,))
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

    # -- async --------------------------------------------------------------------------------------
    def _of_kind(self, kind: str) -> list[Any]:
        return [c for c in self._clients.values() if c.kind == kind]

    async def get_fhir_data(self, fhir_queries: list[str] | None) -> list[dict[str, Any]] | None:
        """Per FHIR source, ``{query: Bundle with every page}``; None for None or no queries."""
        if not fhir_queries:
            return None
        queries = list(dict.fromkeys(fhir_queries))
        limit = asyncio.Semaphore(self.concurrency)

        async def one(client: FhirSourceClient, query: str) -> dict[str, Any]:
            async with limit:
                return await client.search(query)

        async def per_source(client: FhirSourceClient) -> dict[str, Any]:
            bundles = await asyncio.gather(*(one(client, q) for q in queries))
            return dict(zip(queries, bundles, strict=True))

        return list(await asyncio.gather(*(per_source(c) for c in self._of_kind("fhir"))))

    async def get_s3_data(self, s3_keys: list[str] | None) -> list[dict[str, bytes]] | None:
        """Per S3 source, ``{key: bytes}`` of the keys named (all keys for ``[]``); None for None."""
        if s3_keys is None:
            return None
        wanted = set(s3_keys)

        async def per_source(client: S3SourceClient) -> dict[str, bytes]:
            keys = await client.list_keys()
            return await client.get_many([k for k in keys if not wanted or k in wanted])

        return list(await asyncio.gather(*(per_source(c) for c in self._of_kind("s3"))))

    async def fetch_fhir_page(self, url_or_query: str) -> dict[str, Any]:
        """One FHIR page for a link URL or query (used to follow ``next`` links, e.g. by fhir_to_csv).

        The source is the one named in a ``/kong/{name}/fhir`` URL, else the only FHIR source.
        """
        fhir = self._of_kind("fhir")
        named = [c for c in fhir if f"/kong/{c.name}/fhir" in url_or_query]
        if named:
            return await named[0].fetch_page(url_or_query)
        if len(fhir) == 1:
            return await fhir[0].fetch_page(url_or_query)
        names = [c.name for c in fhir]
        raise DataSourceError(f"cannot tell which FHIR source serves {url_or_query!r} (sources: {names or 'none'}); "
                              f"use get_data_client(data_id).fetch_page(...) instead")
