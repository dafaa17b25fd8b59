"""The per-deployment gateway ``nginx-<DEPLOYMENT_NAME>``: its locations, who may use them, its own answers.

Source: PrivateAIM/node-pod-orchestration ``src/k8s/kubernetes.py`` (``_create_nginx_config_map``: the
``location`` blocks of an analysis' nginx, ``return 200 'healthy'`` on ``/healthz``, ``proxy_redirect off``,
``client_max_body_size 0``, ``allow <analysis pod ip>; deny all;`` on every egress location and
``allow <message broker ip>; allow <pod orchestration ip>; deny all;`` on ``/analysis``). nginx checks no
token: each service behind it checks the bearer token itself.

How nginx matches (checked with nginx 1.22 on the same ``location`` lines): a regular expression location
(``~ ^/...``) is anchored at the start only, so it matches every path that begins with it
(``.../messages/broadcast`` and ``.../messages/subscriptions/<id>`` go to the broker as ``.../messages`` does);
a prefix location (``/kong``) matches every path with that prefix. A path no location matches is served
by nginx's static file handler, which finds no file; a location whose ``allow`` list does not name the
client answers 403.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

HEALTH = "/healthz"
HEALTH_ANSWER = "healthy"
#: Listen port of the gateway.
PORT = 80


class Upstream(Enum):
    """Where a gateway location sends a request."""

    HEALTH = "health"  # answered by nginx itself
    KONG = "kong"
    STORAGE = "storage"
    HUB_ADAPTER = "hub-adapter"
    MESSAGE_BROKER = "message-broker"
    PO = "po"
    ANALYSIS = "analysis"


@dataclass(frozen=True)
class Location:
    """One ``location`` of the server block. ``ingress``: only the broker and the PO may use it."""

    pattern: re.Pattern[str]
    upstream: Upstream
    ingress: bool = False

    def matches(self, path: str) -> bool:
        return self.pattern.match(path) is not None


def locations(analysis_id: str, project_id: str) -> list[Location]:
    """The locations of one analysis' gateway, in the order nginx picks them for the paths at hand."""
    a, p = re.escape(analysis_id), re.escape(project_id)

    def loc(pattern: str, upstream: Upstream, ingress: bool = False) -> Location:
        return Location(re.compile(pattern), upstream, ingress)

    return [
        loc(r"/healthz", Upstream.HEALTH),
        loc(r"/kong", Upstream.KONG),
        loc(r"/storage/(final|local|intermediate)", Upstream.STORAGE),
        loc(rf"/hub-adapter/kong/datastore/{p}", Upstream.HUB_ADAPTER),
        loc(rf"/message-broker/analyses/{a}/participants(|/self)", Upstream.MESSAGE_BROKER),
        loc(rf"/message-broker/analyses/{a}/messages(|/subscriptions)", Upstream.MESSAGE_BROKER),
        loc(r"/message-broker/healthz", Upstream.MESSAGE_BROKER),
        loc(r"/po/stream_logs", Upstream.PO),
        loc(r"/analysis", Upstream.ANALYSIS, ingress=True),
    ]


def find_location(analysis_id: str, project_id: str, path: str) -> Location | None:
    """The location serving ``path``, or None (nginx's static file handler answers then)."""
    return next((loc for loc in locations(analysis_id, project_id) if loc.matches(path)), None)


def no_location_status(method: str) -> int:
    """What nginx's static file handler answers when no location matched: 404 for GET, HEAD and POST (no such
    file), 405 for every other method (checked with nginx 1.22)."""
    return 404 if method.upper() in ("GET", "HEAD", "POST") else 405


#: nginx's answer when an ``allow``/``deny`` rule refuses the client.
FORBIDDEN = 403
#: nginx's answer when the upstream of a location cannot be reached.
BAD_GATEWAY = 502


def nginx_page(status: int, title: str) -> str:
    """The HTML body nginx sends with its own error answers."""
    return (f"<html>\r\n<head><title>{status} {title}</title></head>\r\n<body>\r\n<center><h1>{status} {title}</h1>"
            f"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
