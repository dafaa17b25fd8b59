"""Exceptions raised by the SDK. Every message names the problem and how to fix it."""

from __future__ import annotations


class FlameError(RuntimeError):
    """Base class of all flame_sdk errors."""


class ConfigurationError(FlameError):
    """The node environment (env vars, roles, ids) is missing or inconsistent."""


class ServiceUnavailableError(FlameError):
    """A node service could not be reached within its retry deadline."""

    def __init__(self, service: str, url: str, cause: BaseException | str) -> None:
        self.service, self.url, self.cause = service, url, cause
        super().__init__(
            f"{service} is unreachable at {url} ({cause!r}); check that the node services run "
            f"and that FLAME_NODE_BASE_URL / DEPLOYMENT_NAME point at the node gateway"
        )


class ServiceHTTPError(FlameError):
    """A node service answered with a non-retryable HTTP error."""

    def __init__(self, service: str, method: str, url: str, status: int, reason: str) -> None:
        self.service, self.method, self.url, self.status, self.reason = service, method, url, status, reason
        super().__init__(f"{service} rejected {method} {url} with HTTP {status}: {reason[:500]}")


class TokenExpiredError(ServiceHTTPError):
    """The bearer token was refused (401; 403 from the result service) and no fresh token arrived via
    /token_refresh in the meantime."""


class MessageTooLargeError(FlameError, ValueError):
    """A message body exceeds the message broker's size cap."""


class UnknownNodeError(FlameError, ValueError):
    """A node id is not a participant of this analysis."""


class RoleError(FlameError, PermissionError):
    """The operation is not allowed for this node's role."""


class DataSourceError(FlameError):
    """A data source refused a request, answered something unusable, or paged in a loop."""


class TamperedDataError(FlameError):
    """Encrypted data failed authentication: it was modified, or is not meant for this node."""


class ReplayedDataError(TamperedDataError):
    """Intermediate data whose storage id was used before, or whose sender/category/round binding does not fit
    the message that named it (a replayed or stale message)."""


class DecryptionLimitError(FlameError):
    """Global data too large for the node result service to decrypt (node-result-service 0.1.4 decrypts in
    1024-byte chunks, so it fails on objects of 997 plaintext bytes or more)."""


class AnalysisError(FlameError):
    """Raised by ``flame_log(..., log_type='error')``: the analysis is marked failed."""
