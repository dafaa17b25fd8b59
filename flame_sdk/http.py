"""HTTP access to one node service: a shared aiohttp session, auth headers and tenacity retries.

Only transient failures are retried (connection errors, timeouts, and the policy's ``retry_statuses``:
by default HTTP 429 and 5xx), with exponential backoff and full jitter, bounded by a total deadline.
Everything else raises at once.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryError, retry_if_exception, stop_after_delay, wait_random_exponential

from flame_sdk.errors import ServiceHTTPError, ServiceUnavailableError, TokenExpiredError
from flame_sdk.tokens import TokenHolder

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Statuses that mean "the bearer token was refused", unless a service says otherwise (``with_auth_statuses``).
AUTH_STATUSES = frozenset({401})

#: Bytes of an error answer kept for the error (an OperationOutcome listing valid search parameters runs to
#: a few kB and must stay whole to be parsed); messages show the first 500.
MAX_ERROR_BODY = 16 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff settings: waits grow from ``initial_wait`` up to ``max_wait``; all attempts end by ``deadline``."""

    deadline: float = 60.0
    initial_wait: float = 0.05
    max_wait: float = 5.0
    request_timeout: float | None = 300.0
    retry_statuses: frozenset[int] = TRANSIENT_STATUSES


DEFAULT_RETRY = RetryPolicy()


class _TransientError(Exception):
    def __init__(self, detail: str, status: int | None = None, body: str = "") -> None:
        super().__init__(detail)
        self.detail, self.status, self.body = detail, status, body


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, (_TransientError, aiohttp.ClientConnectionError, asyncio.TimeoutError))


class ServiceClient:
    """Requests against one service prefix of the node gateway (e.g. ``/message-broker``)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        service: str,
        token: TokenHolder | None = None,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.service = service
        self.token = token
        self.headers = dict(headers or {})
        self.retry = retry
        self.auth_statuses: frozenset[int] = AUTH_STATUSES

    def with_auth_statuses(self, statuses: Collection[int]) -> ServiceClient:
        """A client for the same service that treats ``statuses`` as token refusals (the node result service
        answers 403 for a missing, expired or invalid token)."""
        clone = copy.copy(self)
        clone.auth_statuses = frozenset(statuses)
        return clone

    def with_retry(self, retry: RetryPolicy) -> ServiceClient:
        """The same service (session, headers, token, auth statuses) with another retry policy."""
        clone = copy.copy(self)
        clone.retry = retry
        return clone

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        deadline: float | None = None,
        data_factory: Callable[[], Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> aiohttp.ClientResponse:
        url = self.url(path)
        policy = self.retry
        req_timeout = aiohttp.ClientTimeout(total=timeout if timeout is not None else policy.request_timeout)

        async def attempt() -> aiohttp.ClientResponse:
            token_version = self.token.version if self.token else 0
            all_headers = {**self.headers, **(self.token.bearer() if self.token else {}), **(headers or {})}
            if data_factory is not None:
                kwargs["data"] = data_factory()
            resp = await self.session.request(method, url, headers=all_headers, timeout=req_timeout, **kwargs)
            if resp.status in policy.retry_statuses:
                body = (await resp.text(errors="replace"))[:500]
                resp.release()
                raise _TransientError(f"HTTP {resp.status}: {body[:300]}", resp.status, body)
            if (resp.status in self.auth_statuses and self.token is not None
                    and self.token.version != token_version):
                resp.release()  # the token was refreshed while this request was in flight: retry once
                raise _TransientError(f"HTTP {resp.status} with a token that was just replaced", resp.status)
            return resp

        started = time.monotonic()
        try:  # most requests succeed at once: the retry machinery is built only for those that do not
            return await attempt()
        except Exception as exc:  # noqa: BLE001 - only transient failures are retried, the rest re-raised
            if not _is_transient(exc):
                raise
            first = exc
        end = started + (deadline if deadline is not None else policy.deadline)
        if time.monotonic() >= end:
            raise ServiceUnavailableError(self.service, url, first) from first
        await asyncio.sleep(min(end - time.monotonic(), random.uniform(0, policy.initial_wait)))  # the first backoff
        retrying = AsyncRetrying(
            stop=stop_after_delay(max(0.0, end - time.monotonic())),
            wait=wait_random_exponential(multiplier=policy.initial_wait, max=policy.max_wait),
            retry=retry_if_exception(_is_transient),
        )
        try:
            async for retry in retrying:
                with retry:
                    return await attempt()
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise ServiceUnavailableError(self.service, url, last or "retry deadline exceeded") from last
        raise AssertionError("unreachable")  # pragma: no cover

    async def _checked(self, method: str, path: str, ok: tuple[int, ...], **kwargs: Any) -> aiohttp.ClientResponse:
        resp = await self._send(method, path, **kwargs)
        if resp.status not in ok:
            reason = (await resp.text(errors="replace"))[:MAX_ERROR_BODY]
            resp.release()
            error = TokenExpiredError if resp.status in self.auth_statuses else ServiceHTTPError
            raise error(self.service, method, self.url(path), resp.status, reason)
        return resp

    async def json(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 202), **kwargs: Any) -> Any:
        """Send a request and decode the JSON answer (None for an empty body)."""
        resp = await self._checked(method, path, ok, **kwargs)
        async with resp:
            body = await resp.read()
        return json.loads(body) if body else None

    async def read(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> bytes:
        resp = await self._checked(method, path, ok, **kwargs)
        async with resp:
            return await resp.read()

    async def send(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 202, 204), **kwargs: Any) -> int:
        """Send a request whose answer body is not needed; return the status."""
        resp = await self._checked(method, path, ok, **kwargs)
        resp.release()
        return resp.status

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Open a response for streaming reads (``resp.content.iter_chunked``)."""
        resp = await self._checked(method, path, ok, **kwargs)
        try:
            yield resp
        finally:
            resp.release()
