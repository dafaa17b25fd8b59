"""Errors that end a star run. Each names the node responsible and what to do about it."""

from __future__ import annotations

from flame_sdk.errors import FlameError


class StarRunError(FlameError):
    """A star run stopped before it produced a final result.

    ``node_id`` is the node that caused the stop (may be this node), ``reason`` the short cause;
    ``relayed`` is True when a partner told this node about it.
    """

    def __init__(self, node_id: str | None, reason: str) -> None:
        self.node_id, self.reason = node_id, reason
        self.relayed = False
        super().__init__(reason)


class NodeFailedError(StarRunError):
    """A node's analyzer or aggregator raised; every node of the run stops with this error."""

    def __init__(self, node_id: str, error: str) -> None:
        super().__init__(node_id, f"node {node_id} failed: {error}")
        self.error = error


class RoundTimeoutError(StarRunError):
    """A node sent nothing within the round timeout."""

    def __init__(self, node_ids: list[str], round_number: int, timeout: float, what: str) -> None:
        self.node_ids = node_ids
        super().__init__(
            node_ids[0],
            f"round {round_number}: node(s) {node_ids} did not send {what} within {timeout:g} s; check that they "
            f"run and are healthy, or raise round_timeout if a round legitimately takes longer",
        )
