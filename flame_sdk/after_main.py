"""After the analyst's main thread ends, the node stays up until the platform has seen its final status.

On a FLAME node the analysis runs in a Kubernetes Deployment, so its process must not just exit: Kubernetes
starts an exited container again (the analysis would run a second time from the top), and the pod orchestrator
removes the deployment only once ``/healthz`` reported a final status (PrivateAIM/node-pod-orchestration
``src/status/status.py``, ``src/k8s/kubernetes.py``). The reference SDK stays up through a non-daemon API thread.

This SDK does the same, bounded, with one non-daemon thread per ``FlameCoreSDK`` that owns its process:

1. it waits for the main thread to end;
2. if the run has not ended, the node tells its partners (a ``main_returned`` message) and keeps serving, so a
   partner's ``analysis_finished`` still finishes it (the reference SDK answers ``failed`` meanwhile). Once
   every partner's main() has returned too, or the partner ended, nobody is left to call
   ``analysis_finished()``: the run fails at once, saying so; the same after ``FLAME_FINISH_WAIT_SECONDS``;
3. it waits (bounded) until ``/healthz`` served the final status, keeps serving ``AFTER_REPORT_LINGER`` seconds
   more (the PO removes the deployment right after it read a final status; an exit before that would make
   Kubernetes restart the container), then flushes logs, lets acknowledgements go out and closes the SDK; then
   the process exits.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from flame_sdk.protocol.envelope import MAIN_RETURNED
from flame_sdk.protocol.status import AnalysisStatus, is_final

if TYPE_CHECKING:
    from flame_sdk.clients.message_broker import MessageBrokerClient
    from flame_sdk.logs import FlameLogger
    from flame_sdk.run_state import RunState
    from flame_sdk.runtime import EventLoopThread

#: Bounds on telling the partners (seconds); once the run ended, pending acknowledgements get ``NOTICE_LINGER``.
NOTICE_TIMEOUT = 60.0
NOTICE_ATTEMPT_TIMEOUT = 20.0
NOTICE_LINGER = 5.0
#: Seconds the node keeps serving after ``/healthz`` served its final status.
AFTER_REPORT_LINGER = 5.0

FORGOTTEN_FINISH = (
    "main() returned on every node, but none called analysis_finished(), so the analysis can never finish "
    "(the platform fails such a run). Call flame.analysis_finished() once the analysis is done, usually on the "
    "aggregator right after submit_final_result()."
)


def keep_process_alive(loop: EventLoopThread, after_main: Callable[[], Coroutine[Any, Any, None]]) -> threading.Thread:
    """Start the non-daemon thread that runs ``after_main()`` on the SDK loop once the main thread ended."""

    def run() -> None:
        threading.main_thread().join()
        if loop.loop.is_closed():  # the analysis closed the SDK itself
            return
        try:
            loop.run(after_main())
        except Exception as exc:  # noqa: BLE001 - the process is ending; say why it ended early
            print(f"flame_sdk: could not finish the node cleanly: {type(exc).__name__}: {exc}", flush=True)
        finally:
            loop.stop()

    thread = threading.Thread(target=run, name="flame-sdk-after-main", daemon=False)
    thread.start()
    return thread


def _partners_done(state: RunState, partners: list[str]) -> bool:
    """Every partner's main() returned or the partner ended: nobody is left to finish this run."""
    return all(p in state.returned_partners or is_final(state.partner_statuses.get(p, "")) for p in partners)


async def finish_or_fail(state: RunState, logger: FlameLogger, broker: MessageBrokerClient | None,
                         finish_wait: float) -> None:
    """Main() returned: keep serving until a partner finishes the run, or fail it once that cannot happen."""
    if state.ended() is not None or state.init_failed:
        return
    if broker is None:  # no partners can be reached: nothing will finish this run
        _fail(state, logger, "main() returned before analysis_finished() was called; this node cannot reach its "
                             "partners (see the start-up log)")
        return
    partners = broker.participant_ids()
    logger.log(f"main() returned before the analysis finished; the node stays up (up to {finish_wait:.0f} s) so "
               f"that a partner's analysis_finished() can finish it", "notice")
    notice = asyncio.ensure_future(broker.send_message(
        partners, MAIN_RETURNED, {}, max_attempts=3, timeout=NOTICE_TIMEOUT, attempt_timeout=NOTICE_ATTEMPT_TIMEOUT,
        warn=False))
    await broker.inbox.wait_for(lambda: state.ended() is not None or _partners_done(state, partners), finish_wait)
    if state.ended() is None:
        _fail(state, logger, FORGOTTEN_FINISH if _partners_done(state, partners) else
              f"main() returned {finish_wait:g} s ago and no partner finished the analysis since; call "
              f"flame.analysis_finished() when the analysis is done")
    done, pending = await asyncio.wait([notice], timeout=NOTICE_LINGER)
    for task in pending:
        task.cancel()
    for task in done:
        task.exception()  # a notice that failed changes nothing now


def _fail(state: RunState, logger: FlameLogger, reason: str) -> None:
    state.set_status(AnalysisStatus.FAILED)
    logger.log(reason, "error")
