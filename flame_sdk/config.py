"""Node configuration: what the FLAME pod orchestrator gives an analysis container, and who the node is.

Both are immutable: ``NodeConfig`` is read from the environment once at startup; ``NodeIdentity`` (this node's
id and role) is learnt from the message broker once, when it connects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from flame_sdk.errors import ConfigurationError
from flame_sdk.protocol import env as names
from flame_sdk.protocol.analysis_api import DEFAULT_PORT as DEFAULT_API_PORT
from flame_sdk.protocol.broker_api import AGGREGATOR


@dataclass(frozen=True)
class NodeIdentity:
    """This node as the message broker knows it: its id and role (``aggregator`` or ``default``)."""

    node_id: str
    node_role: str

    @property
    def is_aggregator(self) -> bool:
        return self.node_role == AGGREGATOR


@dataclass(frozen=True)
class NodeConfig:
    """Where this analysis is and how it authenticates, from the environment."""

    analysis_id: str
    project_id: str
    keycloak_token: str
    data_source_token: str | None
    deployment_name: str | None
    base_url: str
    api_host: str = names.DEFAULT_API_HOST
    api_port: int = DEFAULT_API_PORT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NodeConfig:
        env = os.environ if env is None else env
        base_url = env.get(names.NODE_BASE_URL)
        required = [names.ANALYSIS_ID, names.PROJECT_ID, names.KEYCLOAK_TOKEN] + ([] if base_url else [names.DEPLOYMENT_NAME])
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise ConfigurationError(
                f"missing environment variable(s) {', '.join(missing)}: a FLAME node sets them on the analysis "
                f"container; to run locally use `flame-sim run <analysis.py>` or flame_sdk.testing"
            )
        port_text = env.get(names.API_PORT, str(DEFAULT_API_PORT))
        try:
            api_port = int(port_text)
        except ValueError:
            raise ConfigurationError(f"{names.API_PORT}={port_text!r} is not a port number") from None
        deployment = env.get(names.DEPLOYMENT_NAME)
        return cls(
            analysis_id=env[names.ANALYSIS_ID],
            project_id=env[names.PROJECT_ID],
            keycloak_token=env[names.KEYCLOAK_TOKEN],
            data_source_token=env.get(names.DATA_SOURCE_TOKEN),
            deployment_name=deployment,
            base_url=(base_url or names.gateway_url(str(deployment))).rstrip("/"),
            api_host=env.get(names.API_HOST, names.DEFAULT_API_HOST),
            api_port=api_port,
        )

    def identified(self, identity: NodeIdentity | None) -> IdentifiedNodeConfig:
        """This configuration together with the node's identity (None: the message broker never answered)."""
        return IdentifiedNodeConfig(**{f.name: getattr(self, f.name) for f in fields(NodeConfig)}, identity=identity)


@dataclass(frozen=True)
class IdentifiedNodeConfig(NodeConfig):
    """A ``NodeConfig`` plus the ``NodeIdentity`` the message broker told (``node_id``, ``node_role``; None
    when the broker never answered)."""

    identity: NodeIdentity | None = field(kw_only=True)

    @property
    def node_id(self) -> str | None:
        return None if self.identity is None else self.identity.node_id

    @property
    def node_role(self) -> str | None:
        return None if self.identity is None else self.identity.node_role
