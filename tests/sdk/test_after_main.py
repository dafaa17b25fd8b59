"""After main() returns: a node keeps serving so a partner can still finish it, and fails (saying why) once
nobody can, without waiting out a long timeout (``flame_sdk.after_main``)."""

from __future__ import annotations

import threading
import time

import pytest

from flame_sdk.after_main import FORGOTTEN_FINISH, finish_or_fail
from flame_sdk.protocol.status import AnalysisStatus
from flame_sdk.run_state import RunState

pytestmark = pytest.mark.sim


def _main_returned(sdk, finish_wait: float = 60.0) -> threading.Thread:
    """What the after-main thread does first, for an SDK in this process (as if its main() had returned)."""
    core = sdk._core
    thread = threading.Thread(target=sdk._run, args=(finish_or_fail(core._state, core._logger, core._parts.broker,
                                                                    finish_wait),))
    thread.start()
    return thread


def _errors(sdk) -> list[str]:
    return [r.log for r in sdk._core._logger.history if r.log_type == "error"]


def test_analyzers_that_returned_are_finished_by_the_aggregator(analysis, sdks):
    waiting = [_main_returned(sdks[n]) for n in analysis.data_node_ids]
    time.sleep(0.5)  # they told the aggregator and wait
    assert all(t.is_alive() for t in waiting)
    assert all(sdks[n]._core._state.health_status() == AnalysisStatus.EXECUTING for n in analysis.data_node_ids)
    assert sdks[analysis.aggregator_id]._core._state.returned_partners == set(analysis.data_node_ids)
    assert sdks[analysis.aggregator_id].analysis_finished() is True
    for thread in waiting:
        thread.join(20)
        assert not thread.is_alive()
    assert all(sdks[n]._core._state.health_status() == AnalysisStatus.EXECUTED for n in analysis.node_ids)
    assert not any(_errors(sdks[n]) for n in analysis.node_ids)


def test_when_every_main_returned_unfinished_every_node_fails_at_once_saying_why(analysis, sdks):
    started = time.monotonic()
    threads = [_main_returned(sdks[n], finish_wait=120) for n in analysis.node_ids]
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    assert time.monotonic() - started < 30  # not the 120 s bound
    for node in analysis.node_ids:
        assert sdks[node]._core._state.health_status() == AnalysisStatus.FAILED
        assert _errors(sdks[node]) == [FORGOTTEN_FINISH]
    assert "none called analysis_finished()" in FORGOTTEN_FINISH


def test_a_node_waits_for_a_running_partner_only_up_to_the_bound(analysis, sdks):
    node = analysis.data_node_ids[0]
    _main_returned(sdks[node], finish_wait=0.5).join(20)
    assert sdks[node]._core._state.health_status() == AnalysisStatus.FAILED
    (error,) = _errors(sdks[node])
    assert error.startswith("main() returned 0.5 s ago and no partner finished the analysis since")


def test_a_dead_main_thread_alone_does_not_fail_the_health_status():
    """Unlike the reference SDK, /healthz keeps answering executing: the after-main logic decides."""
    state = RunState()
    state.set_status(AnalysisStatus.EXECUTING)
    finished = threading.Thread(target=lambda: None)
    finished.start()
    finished.join()
    assert state.health_status() == AnalysisStatus.EXECUTING
    state.partner_returned("p")
    state.apply_partner_statuses({"p": "executing"})
    assert state.returned_partners == {"p"} and state.partner_statuses == {"p": "executing"}
