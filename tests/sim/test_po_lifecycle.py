"""The simulated PO ends a node as the real one does: statuses decided per node-pod-orchestration's status loop,
removal once a final status was read, failure when ``/healthz`` stays silent, and a named reason for each."""

from __future__ import annotations

import threading
import time

import pytest

from flame_sdk import FlameCoreSDK
from flame_sdk.protocol.status import AnalysisStatus as S
from flame_sdk.sim.run.simulation import SimConfig, Simulation
from flame_sdk.sim.services.po_lifecycle import Action, PoLimits, decide, finished_status, hub_status

pytestmark = pytest.mark.sim


@pytest.mark.parametrize(("db", "internal", "action"), [
    (S.STARTED, S.EXECUTING, Action.RUNNING),
    (S.STARTED, S.FAILED, Action.UNSTUCK),      # "slow": the real PO restarts it
    (S.EXECUTING, S.STUCK, Action.UNSTUCK),
    (S.STARTED, S.EXECUTED, Action.FINISHING),  # "speedy finished"
    (S.EXECUTING, S.EXECUTED, Action.FINISHING),
    (S.EXECUTING, S.FAILED, Action.FINISHING),
    (S.FAILED, S.STUCK, Action.FINISHING),      # "firmly stuck"
    (S.EXECUTING, S.EXECUTING, None),
])
def test_decisions_are_those_of_the_real_status_loop(db, internal, action):
    assert decide(db, internal) is action


def test_final_and_hub_statuses_are_those_of_the_real_po():
    assert finished_status(S.STUCK) == S.FAILED and finished_status(S.EXECUTED) == S.EXECUTED
    assert hub_status(S.STARTED, S.EXECUTING) == S.STARTED  # the database status wins until it moved on
    assert hub_status(S.EXECUTING, S.FAILED) == S.FAILED
    with pytest.raises(ValueError, match="health_timeout must be a positive"):
        PoLimits(health_timeout=0)


def _simulation(**limits: float) -> Simulation:
    return Simulation(SimConfig(nodes=2, seed=21, status_interval=0.2,
                                po_limits=PoLimits(retry_interval=0.2, **limits)))


def _wait_removed(analysis, node_id: str, removals: list, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while analysis.removed(node_id) is None:
        assert time.monotonic() < deadline, f"not removed; PO status {analysis.po_status(node_id)}"
        time.sleep(0.05)
    assert (node_id, analysis.removed(node_id)) in removals


def test_a_node_whose_api_stops_answering_is_failed_after_the_health_timeout():
    with _simulation(health_timeout=1.0) as sim:
        analysis = sim.create_analysis()
        node = analysis.data_node_ids[0]
        removals: list = []
        analysis.on_removed(lambda n, s: removals.append((n, s)))
        sdk = FlameCoreSDK(env=analysis.env(node), silent=True)
        try:
            deadline = time.monotonic() + 15
            while analysis.po_status(node) != S.EXECUTING:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            sdk._run(sdk._core._parts.api.stop())  # alive, but its API no longer answers
            _wait_removed(analysis, node, removals)
            assert analysis.removed(node) == S.FAILED and analysis.status(node) == "failed"
            assert analysis.po_reason(node) == "its API did not answer /healthz for 1 s"
        finally:
            sdk.close()


def test_a_node_whose_process_is_gone_is_failed_at_once_with_the_reason():
    with _simulation(health_timeout=30.0, startup_limit=60.0) as sim:
        analysis = sim.create_analysis()
        node = analysis.data_node_ids[0]
        removals: list = []
        analysis.on_removed(lambda n, s: removals.append((n, s)))
        started = time.monotonic()
        analysis.process_gone(node, "its process was killed by SIGKILL before it reported a final status")
        _wait_removed(analysis, node, removals)
        assert time.monotonic() - started < 10  # not after the 30 s health timeout
        assert analysis.po_reason(node) == "its process was killed by SIGKILL before it reported a final status"


def test_a_node_that_never_answers_is_failed_after_the_startup_limit():
    with _simulation(health_timeout=0.4, startup_limit=1.5) as sim:
        analysis = sim.create_analysis()
        silent = analysis.data_node_ids[0]
        removals: list = []
        analysis.on_removed(lambda n, s: removals.append((n, s)))
        _wait_removed(analysis, silent, removals)
        assert analysis.po_reason(silent) == ("its API did not answer /healthz within 1.5 s of its deployment (a real "
                                              "PO restarts such a deployment up to 10 times, then marks it failed)")


def test_a_stuck_node_is_failed_at_once():
    with _simulation(health_timeout=5.0, startup_limit=60.0) as sim:
        analysis = sim.create_analysis()
        stuck = analysis.data_node_ids[0]
        removals: list = []
        analysis.on_removed(lambda n, s: removals.append((n, s)))
        env = dict(analysis.env(stuck), FLAME_NODE_BASE_URL="http://127.0.0.1:9", FLAME_STARTUP_TIMEOUT="1")
        sdk = FlameCoreSDK(env=env, silent=True)  # its API answers "stuck": no node service was reachable
        try:
            _wait_removed(analysis, stuck, removals)
            assert analysis.po_reason(stuck).startswith("the node reported stuck")
            assert "restarts such a deployment up to 10 times" in analysis.po_reason(stuck)
        finally:
            sdk.close()


def test_removal_follows_the_final_status_in_the_same_look():
    with _simulation() as sim:
        analysis = sim.create_analysis()
        removals: list = []
        seen = threading.Event()
        analysis.on_removed(lambda n, s: (removals.append((n, s)), seen.set()))
        sdks = {n: FlameCoreSDK(env=analysis.env(n), silent=True) for n in analysis.node_ids}
        try:
            sdks[analysis.aggregator_id].analysis_finished()
            for node in analysis.node_ids:
                _wait_removed(analysis, node, removals)
                assert sdks[node].wait_until_reported(timeout=1) is True  # it had served the final status
            assert sorted(removals) == sorted((n, S.EXECUTED) for n in analysis.node_ids)
        finally:
            for sdk in sdks.values():
                sdk.close()
