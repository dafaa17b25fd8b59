"""Node configuration from the environment the FLAME pod orchestrator gives an analysis container."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from flame_sdk.constants import DEFAULT_API_PORT
from flame_sdk.errors import ConfigurationError

#: Variables set by the platform on every analysis container.
PLATFORM_ENV = ("ANALYSIS_ID", "PROJECT_ID", "KEYCLOAK_TOKEN", "DATA_SOURCE_TOKEN", "DEPLOYMENT_NAME")
#: Optional overrides (not set on a real node) so that many nodes can run on one machine.
ENV_NODE_BASE_URL = "FLAME_NODE_BASE_URL"
ENV_API_HOST = "FLAME_API_HOST"
ENV_API_PORT = "FLAME_API_PORT"


@dataclass
class NodeConfig:
    """Who and where this analysis is. ``node_id`` and ``node_role`` come from the message broker."""

    analysis_id: str
    project_id: str
    keycloak_token: str
    data_source_token: str | None
    deployment_name: str | None
    base_url: str
    api_host: str = "0.0.0.0"
    api_port: int = DEFAULT_API_PORT
    node_id: str | None = None
    node_role: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NodeConfig:
        env = os.environ if env is None else env
        base_url = env.get(ENV_NODE_BASE_URL)
        required = ["ANALYSIS_ID", "PROJECT_ID", "KEYCLOAK_TOKEN"] + ([] if base_url else ["DEPLOYMENT_NAME"])
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise ConfigurationError(
                f"missing environment variable(s) {', '.join(missing)}: a FLAME node sets them on the analysis "
                f"container; to run locally use `flame-sim run <analysis.py>` or flame_sdk.testing"
            )
        port_text = env.get(ENV_API_PORT, str(DEFAULT_API_PORT))
        try:
            api_port = int(port_text)
        except ValueError:
            raise ConfigurationError(f"{ENV_API_PORT}={port_text!r} is not a port number") from None
        deployment = env.get("DEPLOYMENT_NAME")
        return cls(
            analysis_id=env["ANALYSIS_ID"],
            project_id=env["PROJECT_ID"],
            keycloak_token=env["KEYCLOAK_TOKEN"],
            data_source_token=env.get("DATA_SOURCE_TOKEN"),
            deployment_name=deployment,
            base_url=(base_url or f"http://nginx-{deployment}").rstrip("/"),
            api_host=env.get(ENV_API_HOST, "0.0.0.0"),
            api_port=api_port,
        )
