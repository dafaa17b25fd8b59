"""The node's per-analysis nginx server block, rendered for loopback.

Source of every directive: PrivateAIM/node-pod-orchestration ``src/k8s/kubernetes.py``,
``_create_nginx_config_map`` (the ``nginx.conf`` of the ConfigMap ``nginx-<deployment>-config``). What
matters for the result service: ``/storage/(final|local|intermediate)`` is rewritten to the path without
``/storage`` and proxied to the service, only the analysis pod's address is allowed, ``proxy_redirect
off`` passes the service's ``Location`` headers through unchanged, ``Host`` is set to ``$host`` (the
name without the port), ``client_max_body_size 0`` (no size limit) and chunked transfer encoding on.

Local adaptations (none changes how requests are routed): upstream names become loopback addresses;
routes to services the harness does not run (Kong, hub adapter, message broker, PO, the analysis) point
at a closed port; pid, logs and temp folders live in the work folder so nginx runs without a system setup.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CLOSED = "127.0.0.1:9"  # discard port: nothing listens, so unused routes answer 502


@dataclass(frozen=True)
class NodeGateway:
    listen: str            # e.g. 127.0.0.2:80 (as on a node: port 80) or 127.0.0.2:<free port>
    storage_upstream: str  # host:port of the result service
    analysis_ip: str       # the only client allowed on egress routes
    analysis_id: str
    project_id: str


def render(gw: NodeGateway, prefix: Path) -> str:
    temp = "\n".join(f"    {name}_temp_path {prefix / ('tmp-' + name)};"
                     for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    egress = f"allow {gw.analysis_ip};\n            deny all;"
    return f"""worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} info;
events {{ worker_connections 1024; }}
http {{
    sendfile on;
    access_log {prefix / 'access.log'};
{temp}
    server {{
        listen {gw.listen};
        client_max_body_size 0;
        chunked_transfer_encoding on;
        proxy_redirect off;
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;

        location /healthz {{
            return 200 'healthy';
        }}
        location /kong {{
            rewrite ^/kong(/.*) $1 break;
            proxy_pass http://{CLOSED};
            {egress}
        }}
        location ~ ^/storage/(final|local|intermediate) {{
            rewrite ^/storage(/.*) $1 break;
            proxy_pass http://{gw.storage_upstream};
            {egress}
        }}
        location /hub-adapter/kong/datastore/{gw.project_id} {{
            rewrite ^/hub-adapter(/.*) $1 break;
            proxy_pass http://{CLOSED};
            {egress}
        }}
        location ~ ^/message-broker/analyses/{gw.analysis_id}/participants(|/self) {{
            rewrite ^/message-broker(/.*) $1 break;
            proxy_pass http://{CLOSED};
            {egress}
        }}
        location ~ ^/message-broker/analyses/{gw.analysis_id}/messages(|/subscriptions) {{
            rewrite ^/message-broker(/.*) $1 break;
            proxy_pass http://{CLOSED};
            {egress}
        }}
        location /message-broker/healthz {{
            rewrite ^/message-broker(/.*) $1 break;
            proxy_pass http://{CLOSED};
            {egress}
        }}
        location /po/stream_logs {{
            proxy_pass http://{CLOSED};
            {egress}
        }}
        location /analysis {{
            rewrite ^/analysis(/.*) $1 break;
            proxy_pass http://{CLOSED};
            deny all;
        }}
    }}
}}
"""
