"""Environment variables of an analysis container: what the platform sets, local overrides, SDK tunables.

Sources: PrivateAIM/node-pod-orchestration ``src/k8s/kubernetes.py`` (the analysis deployment's env) and
PrivateAIM/python-sdk ``flamesdk/resources/node_config.py`` (which of them the SDK reads; the gateway is
``nginx-<DEPLOYMENT_NAME>``).
"""

from __future__ import annotations

# -- set by the platform on every analysis container ------------------------------------------------------
ANALYSIS_ID = "ANALYSIS_ID"
PROJECT_ID = "PROJECT_ID"
#: Bearer token for every node service; also what ``/analysis/token_refresh`` replaces.
KEYCLOAK_TOKEN = "KEYCLOAK_TOKEN"
#: Kong key (``apikey`` header) for the data routes.
DATA_SOURCE_TOKEN = "DATA_SOURCE_TOKEN"
#: The node gateway is reached at ``http://nginx-<DEPLOYMENT_NAME>``.
DEPLOYMENT_NAME = "DEPLOYMENT_NAME"

PLATFORM_ENV: tuple[str, ...] = (ANALYSIS_ID, PROJECT_ID, KEYCLOAK_TOKEN, DATA_SOURCE_TOKEN, DEPLOYMENT_NAME)

# -- local overrides, never set on a real node, so that many nodes run on one machine --------------------
#: Gateway base URL instead of ``http://nginx-<DEPLOYMENT_NAME>``.
NODE_BASE_URL = "FLAME_NODE_BASE_URL"
#: Listen address of the embedded analysis API (default ``0.0.0.0``).
API_HOST = "FLAME_API_HOST"
#: Listen port of the embedded analysis API (default ``analysis_api.DEFAULT_PORT``).
API_PORT = "FLAME_API_PORT"

LOCAL_OVERRIDES: tuple[str, ...] = (NODE_BASE_URL, API_HOST, API_PORT)
DEFAULT_API_HOST = "0.0.0.0"

# -- SDK tunables (not part of the platform protocol) --------------------------------------------------------
#: Seconds the SDK waits for the node gateway at startup.
STARTUP_TIMEOUT = "FLAME_STARTUP_TIMEOUT"
DEFAULT_STARTUP_TIMEOUT = 300.0
#: Partner statuses are ignored this long after start (the reference SDK's grace; the simulator sets 0).
STATUS_SYNC_GRACE = "FLAME_STATUS_SYNC_GRACE_SECONDS"
DEFAULT_STATUS_SYNC_GRACE = 100.0
#: Console prefix of every log line (the simulator sets the node name).
LOG_PREFIX = "FLAME_LOG_PREFIX"
#: Seconds a node whose main() returned before the run ended stays up for a partner's analysis_finished.
FINISH_WAIT = "FLAME_FINISH_WAIT_SECONDS"
DEFAULT_FINISH_WAIT = 3600.0

#: Classes intermediate data may hold beyond plain data, numpy and pandas (comma-separated ``module.name``
#: or ``module:qualname``; ``module.*`` for every public class of a module).
UNPICKLE_ALLOW = "FLAME_UNPICKLE_ALLOW"

SDK_TUNABLES: tuple[str, ...] = (STARTUP_TIMEOUT, STATUS_SYNC_GRACE, LOG_PREFIX, FINISH_WAIT, UNPICKLE_ALLOW)


def gateway_url(deployment_name: str) -> str:
    """Where the analysis reaches its node gateway on a real node."""
    return f"http://nginx-{deployment_name}"
