"""The analysis' embedded API: what the PO and the message broker call, through ``/analysis`` on the gateway.

Sources: PrivateAIM/python-sdk ``flamesdk/resources/rest_api.py`` (routes ``/healthz``, ``/webhook``,
``/token_refresh``, ``/partner_status``; port 8000; the health answer's ``status`` and
``token_remaining_time``); PrivateAIM/node-pod-orchestration ``src/status/status.py`` (what the PO sends:
``{"token": ...}``, ``{"partner_status": {node id: status}}``) and ``src/k8s/kubernetes.py`` (nginx forwards
``/analysis/...`` to the analysis service with the prefix stripped, only from the broker and the PO).
"""

from __future__ import annotations

#: Gateway prefix under which the broker and the PO reach the API (stripped by the gateway).
PREFIX = "/analysis"
#: Port of the embedded API on a real node (the analysis service's target port).
DEFAULT_PORT = 8000

HEALTH = "/healthz"
WEBHOOK = "/webhook"
TOKEN_REFRESH = "/token_refresh"
PARTNER_STATUS = "/partner_status"

#: ``GET /healthz`` -> ``{"status": <AnalysisStatus value>, "token_remaining_time": seconds}``.
STATUS = "status"
TOKEN_REMAINING_TIME = "token_remaining_time"
#: ``POST /token_refresh`` body ``{"token": <new Keycloak token>}``; answer ``{"message": TOKEN_REFRESHED}``.
TOKEN = "token"
TOKEN_REFRESHED = "Token refreshed successfully"
#: ``POST /partner_status`` body ``{"partner_status": {node id: status}}``; answer ``{"status": own status}``.
PARTNER_STATUS_FIELD = "partner_status"
#: ``POST /webhook`` answer for a stored message.
RECEIVED = {"status": "received"}
