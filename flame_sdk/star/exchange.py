"""Round-bounded exchange between the nodes of a star run, over the documented SDK methods only.

Intermediate data goes through ``send_intermediate_data``/``await_intermediate_data`` (storage path:
serialized and encrypted). A node that fails tells its partners with an ``analysis_failed`` message, so
they stop with that node's error instead of a generic one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flame_sdk.errors import AnalysisError
from flame_sdk.interface import FlameSDK
from flame_sdk.protocol.envelope import INTERMEDIATE_DATA
from flame_sdk.star.run_errors import NodeFailedError, RoundTimeoutError, StarRunError

if TYPE_CHECKING:
    from flame_sdk.clients.messages import Message

FAILED_CATEGORY = "analysis_failed"
FINISHED_CATEGORY = "analysis_finished"
#: Bounds of the failure notice a failing node sends before it stops (seconds).
NOTICE_TIMEOUT = 15.0
NOTICE_ATTEMPT_TIMEOUT = 5.0


class Exchange:
    """Sends and receives one round's data; turns silence and partner failures into named errors."""

    def __init__(self, flame: FlameSDK, round_timeout: float) -> None:
        self.flame = flame
        self.round_timeout = round_timeout

    # -- data -----------------------------------------------------------------------------------------
    def send(self, receivers: list[str], data: Any, round_number: int) -> None:
        """Send ``data`` to every receiver; raise if one did not acknowledge within the round timeout."""
        try:
            _, not_acked = self.flame.send_intermediate_data(
                receivers, data, max_attempts=3, timeout=self.round_timeout,
                attempt_timeout=min(30.0, self.round_timeout))
        except AnalysisError as exc:
            raise self.stopped(f"sending round {round_number}'s data", exc) from exc
        if not_acked and not self.finished():
            self.raise_partner_failure()
            raise RoundTimeoutError(not_acked, round_number, self.round_timeout, "an acknowledgement of our data")

    def receive(self, senders: list[str], round_number: int, what: str, category: str = INTERMEDIATE_DATA,
                allow_missing: bool = False) -> dict[str, Any]:
        """One result per sender (None for a missing one). Missing senders raise, unless ``allow_missing`` or
        the run finished meanwhile."""
        try:
            received = self.flame.await_intermediate_data(senders, category, timeout=self.round_timeout)
        except AnalysisError as exc:
            raise self.stopped(f"waiting for {what} of round {round_number}", exc) from exc
        missing = [sender for sender in senders if received.get(sender) is None]
        if missing and not allow_missing and not self.finished():
            self.raise_partner_failure()
            raise RoundTimeoutError(missing, round_number, self.round_timeout, what)
        return received

    def tell(self, receivers: list[str], category: str, body: dict[str, Any], round_number: int, what: str) -> None:
        """Send a control message to every receiver; raise if one did not acknowledge within the round timeout."""
        try:
            _, not_acked = self.flame.send_message(receivers, category, body, max_attempts=3,
                                                   timeout=self.round_timeout,
                                                   attempt_timeout=min(30.0, self.round_timeout))
        except AnalysisError as exc:
            raise self.stopped(f"sending {what} of round {round_number}", exc) from exc
        if not_acked and not self.finished():
            self.raise_partner_failure()
            raise RoundTimeoutError(not_acked, round_number, self.round_timeout, f"an acknowledgement of {what}")

    def listen(self, senders: list[str], category: str, round_number: int, what: str) -> dict[str, dict[str, Any]]:
        """The latest control message body per sender (absent when it sent none within the round timeout)."""
        try:
            found = self.flame.await_messages(senders, category, timeout=self.round_timeout)
        except AnalysisError as exc:
            raise self.stopped(f"waiting for {what} of round {round_number}", exc) from exc
        return {sender: messages[-1].body for sender, messages in found.items() if messages}

    # -- notices --------------------------------------------------------------------------------------
    def _messages(self, category: str) -> list[Message]:
        return [m for status in ("unread", "read") for m in self.flame.get_messages(status)
                if m.category == category]

    def finished(self) -> bool:
        """True once the aggregator announced the end of the analysis."""
        return bool(self._messages(FINISHED_CATEGORY))

    def failure(self) -> StarRunError | None:
        """The error from the first failure notice a partner sent, if any (marked ``relayed``)."""
        notices = self._messages(FAILED_CATEGORY)
        if not notices:
            return None
        body, reporter = notices[0].body, notices[0].sender
        node, text = str(body.get("node") or reporter), str(body.get("error", "no error text"))
        error = NodeFailedError(node, text) if node == reporter else \
            StarRunError(node, f"{text} (reported by node {reporter})")
        error.relayed = True
        return error

    def raise_partner_failure(self) -> None:
        error = self.failure()
        if error is not None:
            raise error

    def stopped(self, doing: str, exc: AnalysisError) -> StarRunError:
        """The error for a wait the platform ended: a partner's reported failure, else a stop by the platform."""
        return self.failure() or StarRunError(None, f"the run was stopped by the platform while {doing}: {exc}")

    def announce_failure(self, node_id: str, error: str) -> None:
        """Tell every partner that the run failed because of ``node_id`` (best effort, bounded)."""
        partners = self.flame.get_participant_ids()
        if not partners:
            return
        try:
            self.flame.send_message(partners, FAILED_CATEGORY, {"node": node_id, "error": error},
                                    max_attempts=2, timeout=NOTICE_TIMEOUT, attempt_timeout=NOTICE_ATTEMPT_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - the node is failing already; status sync still tells partners
            self.flame.flame_log(f"could not tell partners about the failure: {exc}", log_type="warn")
