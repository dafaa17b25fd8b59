"""The node message broker (``/message-broker`` on the gateway): subscriptions, discovery, messages, delivery.

Sources (PrivateAIM/node-message-broker, ``src/main/java/de/privateaim/node_message_broker/``):
``discovery/DiscoveryController.java`` (``/analyses/{analysisId}/participants`` and ``/self``),
``discovery/api/ParticipantResponse.java`` (``nodeId``, ``nodeType``), ``discovery/api/ParticipantType.java``,
``message/MessageController.java`` (``/analyses/{analysisId}/messages``, ``broadcast``; 202, 400, 502),
``message/MessageService.java`` (a message the hub does not take is logged and dropped, never retried),
``message/api/MessageRequest.java`` (``recipients``, ``message``),
``message/subscription/MessageSubscriptionController.java`` and its ``api/`` request/response classes
(``webhookUrl``; ``subscriptionId``, ``analysisId``, ``webhookUrl``; list, get, add, delete),
``message/subscription/persistence/`` (subscriptions are kept in MongoDB per analysis, one per POST),
``message/receive/HubMessageWebhookSubscriptionForwarder.java`` and ``message/MessageSpringConfig.java``
(webhook delivery and its retries), ``WebSecurityConfig.java`` (every API route needs a valid JWT).
"""

from __future__ import annotations

#: Gateway prefix of the broker.
PREFIX = "/message-broker"

# -- routes (relative to PREFIX) ---------------------------------------------------------------------------
#: Reachable through the gateway, but the broker maps no ``/healthz`` on its API port (its health probes live
#: on the management port, ``/actuator/health``): authenticated requests get 404, others 401.
HEALTH = "/healthz"
PARTICIPANTS = "/analyses/{analysis_id}/participants"
PARTICIPANTS_SELF = "/analyses/{analysis_id}/participants/self"
MESSAGES = "/analyses/{analysis_id}/messages"
BROADCAST = "/analyses/{analysis_id}/messages/broadcast"
SUBSCRIPTIONS = "/analyses/{analysis_id}/messages/subscriptions"
#: ``GET`` (200 or 404) and ``DELETE`` (204, also for an unknown id) of one subscription; the id is a UUID.
SUBSCRIPTION = "/analyses/{analysis_id}/messages/subscriptions/{subscription_id}"

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
UNSUBSCRIBED = 204
#: Request body larger than ``envelope.MAX_MESSAGE_BYTES``.
TOO_LARGE = 413
#: Missing, malformed or expired bearer token (Spring's OAuth2 resource server): 401, an empty body and a
#: ``WWW-Authenticate`` header, ``Bearer`` alone or with ``error="invalid_token"`` and a description.
UNAUTHORIZED = 401
WWW_AUTHENTICATE = "WWW-Authenticate"

# -- webhook delivery (HubMessageWebhookSubscriptionForwarder, configured in MessageSpringConfig) ---------------
#: Every subscription of the message's analysis gets a POST of the ``message`` object (Content-Type JSON).
#: Only a 5xx answer is retried: up to ``DELIVERY_RETRIES`` times, waiting ``DELIVERY_FIRST_BACKOFF`` seconds
#: doubled each time, with jitter of +-75% (Reactor ``Retry.backoff(5, 1 s).jitter(0.75)``). Any 4xx answer
#: (429 included) and any connection error end the delivery at once. Either way an undelivered message is
#: logged and dropped: there is no dead-letter queue and no later redelivery. The broker sets no response
#: timeout on this client.
DELIVERY_RETRIES = 5
DELIVERY_FIRST_BACKOFF = 1.0
DELIVERY_JITTER = 0.75
#: Webhook deliveries the broker makes per message at most: the first try and the retries.
DELIVERY_ATTEMPTS = 1 + DELIVERY_RETRIES


def retries_delivery(status: int) -> bool:
    """Whether the broker retries a webhook delivery that was answered with ``status``."""
    return 500 <= status <= 599


def route(template: str, analysis_id: str, **fields: str) -> str:
    """A route with the analysis id (and any other field) filled in (relative to PREFIX)."""
    return template.format(analysis_id=analysis_id, **fields)
