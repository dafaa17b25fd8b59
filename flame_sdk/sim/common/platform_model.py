"""Plain data describing a simulated platform: nodes, analyses, their deployments, and the hub's records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flame_sdk.protocol import analysis_api, env


@dataclass
class NodeSpec:
    """One simulated node (a hospital). ``data_sources`` are raw specs read by the data service."""

    name: str
    node_id: str
    data_sources: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Deployment:
    """One analysis deployed on one node: what nginx-<deployment_name> serves on a real node."""

    analysis_id: str
    project_id: str
    node_id: str
    role: str  # "aggregator" | "default"
    deployment_name: str
    keycloak_token: str
    data_source_token: str
    analysis_api_url: str  # where the gateway forwards /analysis/* (the embedded analysis API)
    gateway_url: str = ""  # filled in once the gateway listens

    def analysis_env(self) -> dict[str, str]:
        """The environment a node gives the analysis container, plus the local-run overrides."""
        from urllib.parse import urlsplit

        api = urlsplit(self.analysis_api_url)
        return {
            env.ANALYSIS_ID: self.analysis_id,
            env.PROJECT_ID: self.project_id,
            env.KEYCLOAK_TOKEN: self.keycloak_token,
            env.DATA_SOURCE_TOKEN: self.data_source_token,
            env.DEPLOYMENT_NAME: self.deployment_name,
            env.NODE_BASE_URL: self.gateway_url,
            env.API_HOST: api.hostname or "127.0.0.1",
            env.API_PORT: str(api.port or analysis_api.DEFAULT_PORT),
        }


#: Header by which node services identify themselves to the simulated hub (a simulator-internal hop).
NODE_HEADER = "X-Node-Id"
#: Header by which a node's broker and PO prove to its gateways that they are who nginx's ``allow`` rules of
#: ``/analysis`` let in (a real node tells them by their pod IPs); the gateway removes it before forwarding.
PEER_HEADER = "X-Flame-Sim-Peer"


@dataclass
class HubNode:
    """A node as registered at the hub."""

    node_id: str
    name: str
    public_key_hex: str
    inbox_url: str  # where the hub delivers messages for this node's broker


@dataclass
class HubAnalysis:
    """An analysis as the hub records it: participants, their statuses and streamed logs."""

    analysis_id: str
    project_id: str
    participants: dict[str, str]  # node id -> role
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)  # node id -> {"status", "progress"}
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
