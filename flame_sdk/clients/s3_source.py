"""One S3 bucket through its Kong route (Kong's minio-gateway plugin), read with boto3 the way that route
can serve it.

* boto3 against ``endpoint_url=<base>/kong/{name}``, bucket ``s3`` (requests ``GET /kong/{name}/s3`` and
  ``GET /kong/{name}/s3/{key}``), path-style, unsigned (the plugin signs towards MinIO), with the
  ``apikey`` header added to every request. boto3 runs in worker threads.
* Keys and listing values are checked before any request (``flame_sdk.protocol.s3_gateway``): what the gateway
  cannot carry is refused with an error naming the characters and the reason. Listing values are sent with
  ``/`` and the other characters legal in a query written as themselves, so the plugin's signature
  matches MinIO's.
* Listing pages with ``marker``: the last key, cut before the first character a query cannot carry (keys
  already seen are skipped; when a whole page holds only such keys, the page grows to S3's 1000).
* Objects are read in ranged parts (``s3_part_size``, a quarter of it after a 504) into one preallocated buffer:
  the plugin reads each answer whole before it sends anything, and the analysis nginx gives up after 60 s
  without a byte. Later parts carry ``If-Match`` with the first part's ETag, so a changed object is noticed.
"""

from __future__ import annotations

import asyncio
import io
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from flame_sdk.clients.data_source import DataContext, SourceClient
from flame_sdk.data.refusals import hint, server_message
from flame_sdk.errors import DataSourceError
from flame_sdk.protocol.data_api import S3_BUCKET
from flame_sdk.protocol.s3_gateway import (
    explain_key_problems,
    key_problem,
    literal_query,
    query_problem,
    sendable_marker,
)

T = TypeVar("T")
DEFAULT_PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 64 * 1024
READ_TIMEOUT = 90  # seconds; above the gateway's 60 s, whose 504 says more than a client timeout
ATTEMPTS = 5
MAX_LIST_KEYS = 1000  # S3's largest listing page
_TRANSIENT_STATUSES = frozenset({429, 500, 502, 503})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class _GatewayTimeout(Exception):
    """A part took longer than the gateway's read limit (504)."""


class _MissingKey(DataSourceError):
    """The bucket has no object under the key (S3 NoSuchKey)."""


class _Buffer:
    """The object's bytes, preallocated once its size is known and filled in place (no copies)."""

    def __init__(self) -> None:
        self.size: int | None = None
        self._io: io.BytesIO | None = None
        self._view: memoryview | None = None

    def allocate(self, size: int) -> None:
        if self.size is None:
            self.size, self._io = size, io.BytesIO(bytes(size))
            self._view = self._io.getbuffer()
        elif size != self.size:
            raise DataSourceError(f"the object's size changed from {self.size} to {size} bytes while it was read")

    def fill(self, start: int, end: int, body: Any) -> None:
        assert self._view is not None
        _read_exactly(body, self._view[start:end + 1])

    def value(self) -> bytes:
        if self._view is not None:
            self._view.release()
        return self._io.getvalue() if self._io is not None else b""


class _File:
    """The object's bytes written to a file part by part."""

    def __init__(self, out: BinaryIO) -> None:
        self.size: int | None = None
        self._out = out

    def allocate(self, size: int) -> None:
        if self.size is not None and size != self.size:
            raise DataSourceError(f"the object's size changed from {self.size} to {size} bytes while it was read")
        self.size = size

    def fill(self, start: int, end: int, body: Any) -> None:
        self._out.seek(start)
        chunk = bytearray(1024 * 1024)
        remaining = end + 1 - start
        while remaining:
            view = memoryview(chunk)[: min(len(chunk), remaining)]
            _read_exactly(body, view)
            self._out.write(view)
            remaining -= len(view)


def _read_exactly(body: Any, target: memoryview) -> None:
    filled = 0
    while filled < len(target):
        count = body.readinto(target[filled:])
        if not count:
            raise DataSourceError(f"the answer ended after {filled} of {len(target)} bytes")
        filled += count


def _status(exc: BaseException) -> int | None:
    status = (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status else None


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: a dropped or broken connection, or a status the data store may not repeat."""
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        HTTPClientError,
        IncompleteReadError,
        ResponseStreamingError,
    )

    if isinstance(exc, ClientError):
        return _status(exc) in _TRANSIENT_STATUSES
    return isinstance(exc, (ConnectionError, HTTPClientError, IncompleteReadError, ResponseStreamingError))


_session_lock = threading.Lock()
_sessions: list[Any] = []


def _new_client(**kwargs: Any) -> Any:
    """An S3 client from the one boto3 session of the process: it loads the service models once (a session per
    client loads them again, ~0.1 s each). A session is not thread-safe, so clients are made under a lock (the
    clients themselves are)."""
    import boto3

    with _session_lock:
        if not _sessions:
            _sessions.append(boto3.session.Session())
        return _sessions[0].client("s3", **kwargs)


class S3SourceClient(SourceClient):
    """Async access to one S3 bucket through its Kong route (boto3 in worker threads)."""

    kind = "s3"

    def __init__(self, api: DataContext, source: dict[str, Any]) -> None:
        super().__init__(api, source)
        self._client: Any = None
        self._lock = threading.Lock()

    def boto3_client(self) -> Any:
        """The boto3 S3 client bound to this source's Kong route (bucket name ``s3``)."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    async def list_keys(self, prefix: str = "", page_size: int = 1000, limit: int | None = None) -> list[str]:
        """Every object key in the bucket (optionally under ``prefix``), over listing pages of ``page_size``;
        with ``limit``, the first ``limit`` keys only."""
        return await asyncio.to_thread(self._guarded, "the listing", self._list_keys, prefix, page_size, limit)

    async def get(self, key: str) -> bytes:
        """One object's bytes, read in ranged parts into one buffer."""
        self._check_key(key)
        return await asyncio.to_thread(self._guarded, f"key {key!r}", self._read, key, _Buffer())

    async def get_many(self, keys: Iterable[str], missing_ok: bool = False) -> dict[str, bytes]:
        """Several objects, read concurrently, keyed by their keys (in the given order). With ``missing_ok``
        keys that do not exist are left out; otherwise they are an error."""
        keys = list(keys)
        for key in keys:
            self._check_key(key)
        limit = asyncio.Semaphore(self.api.concurrency)

        async def one(key: str) -> bytes | None:
            async with limit:
                try:
                    return await self.get(key)
                except _MissingKey:
                    if missing_ok:
                        return None
                    raise

        bodies = await asyncio.gather(*(one(k) for k in keys))
        return {key: body for key, body in zip(keys, bodies, strict=True) if body is not None}

    async def download(self, key: str, path: str | Path) -> int:
        """Stream one object to a file, part by part; return the number of bytes written."""
        self._check_key(key)
        return await asyncio.to_thread(self._guarded, f"key {key!r}", self._download, key, Path(path))

    # -- boto3 ---------------------------------------------------------------------------------------------
    def _make_client(self) -> Any:
        from botocore import UNSIGNED
        from botocore.config import Config

        config = Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}, connect_timeout=10,
                        read_timeout=READ_TIMEOUT, retries={"total_max_attempts": 1},
                        max_pool_connections=max(10, self.api.concurrency),
                        request_checksum_calculation="when_required", response_checksum_validation="when_required")
        client = _new_client(endpoint_url=f"{self.api.config.base_url}/kong/{self.name}", region_name="us-east-1",
                             config=config)
        apikey = self.api.config.data_source_token or ""

        def shape_request(request: Any, **_: Any) -> None:
            request.headers["apikey"] = apikey
            path, mark, query = request.url.partition("?")
            request.url = path + mark + literal_query(query)

        def keep_error_body(response_dict: Any, customized_response_dict: Any, **_: Any) -> None:
            if response_dict.get("status_code", 200) >= 400:
                body = response_dict.get("body") or b""
                customized_response_dict["GatewayAnswer"] = body[:1000].decode(errors="replace")

        client.meta.events.register("request-created.s3", shape_request)
        client.meta.events.register("before-parse.s3", keep_error_body)
        return client

    def _retrying(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        for attempt in Retrying(retry=retry_if_exception(_transient), stop=stop_after_attempt(ATTEMPTS),
                                wait=wait_random_exponential(multiplier=0.1, max=5), reraise=True):
            with attempt:
                return fn(*args, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover

    def _guarded(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args)
        except ClientError as exc:
            status = _status(exc)
            body = str(exc.response.get("GatewayAnswer") or "")
            error = exc.response.get("Error", {})
            said = server_message(body) if body else f"{error.get('Code')}: {error.get('Message')}"
            kind = _MissingKey if error.get("Code") == "NoSuchKey" else DataSourceError
            raise kind(f"S3 source {self.name!r} refused {what}: HTTP {status} {said} "
                                  f"({hint(status, body or str(error.get('Code')), 's3')})") from exc
        except BotoCoreError as exc:
            raise DataSourceError(f"S3 source {self.name!r} is unreachable for {what}: {exc}") from exc

    def _check_key(self, key: str) -> None:
        problem = key_problem(key)
        if problem is not None:
            raise DataSourceError(f"S3 source {self.name!r}: a key cannot be read through the node's S3 gateway: "
                                  f"{explain_key_problems({key: problem})}")

    # -- listing -------------------------------------------------------------------------------------------
    def _list_keys(self, prefix: str, page_size: int, limit: int | None = None) -> list[str]:
        problem = query_problem(prefix)
        if problem is not None:
            raise DataSourceError(f"S3 prefix {prefix!r} cannot be sent through the node's S3 gateway: {problem}")
        keys: list[str] = []
        marker, last = "", None
        while True:
            args: dict[str, Any] = {"Bucket": S3_BUCKET, "Prefix": prefix, "MaxKeys": page_size}
            if marker:
                args["Marker"] = marker
            page = self._retrying(self.boto3_client().list_objects, **args)
            fresh = [item["Key"] for item in page.get("Contents", []) if last is None or item["Key"] > last]
            keys += fresh
            if limit is not None and len(keys) >= limit:
                return keys[:limit]
            if not page.get("IsTruncated"):
                return keys
            if not fresh and page_size < MAX_LIST_KEYS:
                page_size = MAX_LIST_KEYS  # more keys than a page share the cut marker: take the biggest page
                continue
            if not fresh:
                raise DataSourceError(
                    f"S3 source {self.name!r}: listing is stuck after {last!r}: more than {page_size} keys start "
                    f"with {marker!r} followed by characters a listing marker cannot carry through the gateway "
                    f"({query_problem(last or '')}); list a narrower prefix or rename those objects")
            last = fresh[-1]
            marker = sendable_marker(last)

    # -- reading -------------------------------------------------------------------------------------------
    def _read(self, key: str, sink: _Buffer) -> bytes:
        self._read_parts(key, sink)
        return sink.value()

    def _download(self, key: str, path: Path) -> int:
        try:
            with path.open("wb") as out:
                sink = _File(out)
                self._read_parts(key, sink)
        except BaseException:
            path.unlink(missing_ok=True)  # no partial file left behind
            raise
        return sink.size or 0

    def _read_parts(self, key: str, sink: _Buffer | _File) -> None:
        offset, part, etag = 0, self.api.s3_part_size, None
        while sink.size is None or offset < sink.size:
            try:
                offset, etag = self._retrying(self._read_part, key, offset, part, etag, sink)
            except _GatewayTimeout:
                if part <= MIN_PART_SIZE:
                    raise DataSourceError(
                        f"S3 source {self.name!r}: even {part} bytes of key {key!r} were not read within the "
                        f"gateway's 60 s limit ({hint(504, '', 's3')}); the data store is too slow") from None
                part = max(MIN_PART_SIZE, part // 4)
                self.api.logger.log(f"S3 source {self.name!r}: a part of {key!r} timed out at the gateway; "
                                    f"reading {part} bytes at a time", "warn")

    def _read_part(self, key: str, offset: int, part: int, etag: str | None,
                   sink: _Buffer | _File) -> tuple[int, str | None]:
        from botocore.exceptions import ClientError

        args: dict[str, Any] = {"Bucket": S3_BUCKET, "Key": key, "Range": f"bytes={offset}-{offset + part - 1}"}
        if etag is not None:
            args["IfMatch"] = etag
        try:
            answer = self.boto3_client().get_object(**args)
        except ClientError as exc:
            if _status(exc) == 504:
                raise _GatewayTimeout() from exc
            if _status(exc) == 416 and offset == 0:  # an empty object has no byte 0
                answer = self.boto3_client().get_object(Bucket=S3_BUCKET, Key=key)
            else:
                raise
        body = answer["Body"]
        try:
            match = _CONTENT_RANGE.fullmatch(answer.get("ContentRange") or "")
            length = int(answer["ContentLength"])
            start, end, size = (int(x) for x in match.groups()) if match else (0, length - 1, length)
            if start != offset or end - start + 1 != length:
                raise DataSourceError(f"S3 source {self.name!r} answered bytes {start}-{end} of {key!r} for "
                                      f"bytes {offset}-{offset + part - 1}")
            sink.allocate(size)
            sink.fill(start, end, body)
        finally:
            body.close()
        return end + 1, answer.get("ETag") or etag
