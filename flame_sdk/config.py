"""Node configuration from the environment the FLAME pod orchestrator gives an analysis container."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from flame_sdk.errors import ConfigurationError
from flame_sdk.protocol import env as names
from flame_sdk.protocol.analysis_api import DEFAULT_PORT as DEFAULT_API_PORT


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
