"""The node message broker (``/message-broker`` on the gateway): subscriptions, discovery, messages.

Sources (PrivateAIM/node-message-broker, ``src/main/java/de/privateaim/node_message_broker/``):
``discovery/DiscoveryController.java`` (``/analyses/{analysisId}/participants`` and ``/self``),
``discovery/api/ParticipantResponse.java`` (``nodeId``, ``nodeType``), ``discovery/api/ParticipantType.java``,
``message/MessageController.java`` (``/analyses/{analysisId}/messages``, ``broadcast``),
``message/api/MessageRequest.java`` (``recipients``, ``message``),
``message/subscription/MessageSubscriptionController.java`` and its ``api/`` request/response classes
(``webhookUrl``; ``subscriptionId``, ``analysisId``, ``webhookUrl``).
"""

from __future__ import annotations

#: Gateway prefix of the broker.
PREFIX = "/message-broker"

# -- routes (relative to PREFIX) ---------------------------------------------------------------------------
HEALTH = "/healthz"
PARTICIPANTS = "/analyses/{analysis_id}/participants"
PARTICIPANTS_SELF = "/analyses/{analysis_id}/participants/self"
MESSAGES = "/analyses/{analysis_id}/messages"
BROADCAST = "/analyses/{analysis_id}/messages/broadcast"
SUBSCRIPTIONS = "/analyses/{analysis_id}/messages/subscriptions"

# -- bodies ---------------------------------------------------------------------------------------------------
#: Subscription request ``{"webhookUrl": url}``; the answer adds ``subscriptionId`` and ``analysisId``.
WEBHOOK_URL = "webhookUrl"
SUBSCRIPTION_ID = "subscriptionId"
ANALYSIS_ID = "analysisId"
#: Message request ``{"recipients": [node ids], "message": {...}}`` (broadcast: only ``message``).
RECIPIENTS = "recipients"
MESSAGE = "message"
#: A participant ``{"nodeId": ..., "nodeType": "aggregator" | "default"}``.
NODE_ID = "nodeId"
NODE_TYPE = "nodeType"
AGGREGATOR, DEFAULT = "aggregator", "default"
NODE_TYPES: tuple[str, ...] = (AGGREGATOR, DEFAULT)

#: The analysis' webhook, relative to its gateway (the broker POSTs every message there).
WEBHOOK_PATH = "/analysis/webhook"

# -- answers --------------------------------------------------------------------------------------------------
SUBSCRIBED = 201
ACCEPTED = 202
#: Request body larger than ``envelope.MAX_MESSAGE_BYTES``.
TOO_LARGE = 413

#: Webhook deliveries the broker makes per message: the first try and 5 retries with backoff
#: (``common/HttpRetryConfig.java`` defaults, used by ``message/receive/HubMessageWebhookSubscriptionForwarder.java``).
DELIVERY_ATTEMPTS = 6


def route(template: str, analysis_id: str) -> str:
    """A route with the analysis id filled in (relative to PREFIX)."""
    return template.format(analysis_id=analysis_id)
