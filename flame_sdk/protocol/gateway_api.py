"""The per-deployment gateway ``nginx-<DEPLOYMENT_NAME>``: prefixes, allowed paths, health answer.

Source: PrivateAIM/node-pod-orchestration ``src/k8s/kubernetes.py`` (the nginx config map of an analysis
deployment: ``location`` blocks, ``return 200 'healthy'`` on ``/healthz``, ``proxy_redirect off``).
"""

from __future__ import annotations

import re

HEALTH = "/healthz"
HEALTH_ANSWER = "healthy"
#: Listen port of the gateway.
PORT = 80


def allowed_egress(analysis_id: str, project_id: str) -> list[re.Pattern[str]]:
    """The paths an analysis may call through its gateway (everything else is refused).

    As the simulator allows them today: it also lets ``.../messages/broadcast`` through, which the real
    config does not (issue 10).
    """
    a, p = re.escape(analysis_id), re.escape(project_id)
    return [re.compile(x) for x in (
        rf"^/message-broker/analyses/{a}/participants(/self)?$",
        rf"^/message-broker/analyses/{a}/messages(/subscriptions|/broadcast)?$",
        r"^/message-broker/healthz$",
        r"^/po/stream_logs$",
        r"^/storage/(final|local|intermediate)(/.*)?$",
        rf"^/hub-adapter/kong/datastore/{p}",  # a prefix location in the real config
        r"^/kong/.+$",
    )]
