"""The SDK side of the harness: one storage client per node, with every HTTP exchange recorded.

This is the only module that knows how the SDK builds its storage client, so it is the one to adapt
when the SDK's internals move.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp

from flame_sdk.clients.storage import StorageClient
from flame_sdk.config import NodeConfig, NodeIdentity
from flame_sdk.http import RetryPolicy, ServiceClient
from flame_sdk.logs import FlameLogger
from flame_sdk.tokens import TokenHolder

#: Fail fast: a harness run must not sit out the SDK's 60 s retry deadline on every broken call.
HARNESS_RETRY = RetryPolicy(deadline=5.0, initial_wait=0.05, max_wait=0.5, request_timeout=600.0)


@dataclass
class Wire:
    """``METHOD path -> status`` of every response (redirects included), in order."""

    lines: list[str] = field(default_factory=list)

    def take(self) -> list[str]:
        taken, self.lines = self.lines, []
        return taken

    def trace_config(self) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()

        async def on_redirect(_: Any, __: SimpleNamespace, params: Any) -> None:
            self.lines.append(f"{params.method} {params.url.path} -> {params.response.status} "
                              f"(Location: {params.response.headers.get('Location')})")

        async def on_end(_: Any, __: SimpleNamespace, params: Any) -> None:
            self.lines.append(f"{params.method} {params.url.path} -> {params.response.status}")

        async def on_error(_: Any, __: SimpleNamespace, params: Any) -> None:
            self.lines.append(f"{params.method} {params.url} -> {type(params.exception).__name__}")

        trace.on_request_redirect.append(on_redirect)
        trace.on_request_end.append(on_end)
        trace.on_request_exception.append(on_error)
        return trace


@dataclass
class SdkNode:
    """One node as an analysis sees it: its gateway, token and the SDK's storage client."""

    name: str
    node_id: str
    role: str
    gateway_url: str
    tokens: TokenHolder
    storage: StorageClient


def storage_client(session: aiohttp.ClientSession, *, name: str, node_id: str, role: str, gateway_url: str,
                   analysis_id: str, project_id: str, token: str, participants: Callable[[], list[str]]) -> SdkNode:
    config = NodeConfig(analysis_id=analysis_id, project_id=project_id, keycloak_token=token,
                        data_source_token=None, deployment_name=None,
                        base_url=gateway_url).identified(NodeIdentity(node_id, role))
    tokens = TokenHolder(token)
    service = ServiceClient(session, gateway_url + "/storage", "ResultService", token=tokens, retry=HARNESS_RETRY)
    client = StorageClient(service, config, FlameLogger(silent=True), participants)
    return SdkNode(name, node_id, role, gateway_url, tokens, client)
