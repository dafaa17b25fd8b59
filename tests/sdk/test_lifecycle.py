"""Startup, status API, token refresh, finishing, status sync and log streaming against the simulator."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from flame_sdk import FlameCoreSDK
from flame_sdk.errors import AnalysisError, ConfigurationError
from flame_sdk.sim.run.simulation import SimConfig, Simulation
from tests.conftest import connect_all

pytestmark = pytest.mark.sim


def _http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _api(analysis, node_id: str) -> str:
    """The node's embedded API where the gateway forwards ``/analysis`` (which nginx opens to the broker and the
    PO only)."""
    return analysis.deployments[node_id].analysis_api_url


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_startup_prints_the_documented_lines(analysis, capsys):
    sdk = FlameCoreSDK(env=analysis.env(analysis.data_node_ids[0]))
    try:
        out = capsys.readouterr().out
        for line in ("Starting FlameCoreSDK", "Extracting node config", "Connecting to nginx...success",
                     "Connecting to MessageBroker...success", "Connecting to PO service...success",
                     "Connecting to ResultService...success", "Connecting to DataApi...success",
                     "Starting FlameApi thread...success", "FlameCoreSDK ready"):
            assert line in out, (line, out)
        status, health = _http("GET", _api(analysis, sdk.get_id()) + "/healthz")
        assert status == 200 and health["status"] == "executing" and health["token_remaining_time"] > 3000
    finally:
        sdk.close()


def test_missing_environment_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="ANALYSIS_ID.*flame-sim"):
        FlameCoreSDK(env={"PROJECT_ID": "p", "KEYCLOAK_TOKEN": "t", "DEPLOYMENT_NAME": "d"}, silent=True)


def test_unreachable_gateway_fails_startup_in_bounded_time(analysis):
    env = dict(analysis.env(analysis.data_node_ids[0]), FLAME_NODE_BASE_URL="http://127.0.0.1:9",
               FLAME_STARTUP_TIMEOUT="1")
    sdk = FlameCoreSDK(env=env, silent=True)
    try:
        assert sdk._core._state.init_failed
        status, health = _http("GET", f"http://127.0.0.1:{env['FLAME_API_PORT']}/healthz")
        assert health["status"] == "stuck"
        with pytest.raises(Exception, match="message broker is not available"):
            sdk.get_participant_ids()
    finally:
        sdk.close()


@pytest.mark.slow
def test_token_refresh_mid_run():
    with Simulation(SimConfig(nodes=2, seed=3, status_interval=0.2, token_ttl=4)) as sim:
        analysis = sim.create_analysis()
        sdks = connect_all(analysis)
        try:
            first = {n: s._core._tokens.token for n, s in sdks.items()}
            time.sleep(5)  # the first tokens have expired; the PO refreshed them before that
            a, b = analysis.node_ids
            assert sdks[a].send_message([b], "after-refresh", {"ok": True}, timeout=10) == ([b], [])
            assert sdks[b].await_messages([a], "after-refresh", timeout=10)[a][0].body["ok"] is True
            assert all(sdks[n]._core._tokens.token != first[n] for n in sdks)
            # a direct refresh is accepted; a malformed one is refused with a reason
            assert _http("POST", _api(analysis, a) + "/token_refresh", {"token": sim.tokens.issue(
                analysis.analysis_id)})[0] == 200
            status, answer = _http("POST", _api(analysis, a) + "/token_refresh", {"tok": 1})
            assert status == 400 and "token" in answer["error"]
            assert sdks[a].send_message([b], "after-manual", {}, timeout=10) == ([b], [])
        finally:
            for sdk in sdks.values():
                sdk.close()


def test_analysis_finished_propagates_to_partners(analysis, sdks):
    agg = sdks[analysis.aggregator_id]
    assert agg.analysis_finished() is True
    for node_id in analysis.node_ids:
        _wait(lambda n=node_id: _http("GET", _api(analysis, n) + "/healthz")[1]["status"] == "executed")
        assert sdks[node_id].get_progress() == 100
    assert analysis.wait_finished(10) == dict.fromkeys(analysis.node_ids, "executed")
    assert agg.wait_until_reported(timeout=10) is True


def test_partner_status_sync_rules(analysis, sdks):
    node = analysis.data_node_ids[0]
    url = _api(analysis, node) + "/partner_status"
    p = analysis.aggregator_id
    for bad in ({"partner_status": "x"}, {"partner_status": {p: "weird"}}, {"other": 1}):
        status, answer = _http("POST", url, bad)
        assert status == 400 and "partner_status" in answer["error"] or "unknown status" in answer["error"]
    assert _http("POST", url, {"partner_status": {p: "executing"}})[1]["status"] == "executing"
    assert _http("POST", url, {"partner_status": {p: "stopped"}})[1]["status"] == "stopped"
    with pytest.raises(AnalysisError, match="stopped"):
        sdks[node].await_messages([analysis.aggregator_id], "never", timeout=5)


def test_status_sync_respects_the_constructor_tuple(analysis):
    node = analysis.data_node_ids[0]
    sdk = FlameCoreSDK(env=analysis.env(node), silent=True, status_sync=("stopped",))
    try:
        url = _api(analysis, node) + "/partner_status"
        p = analysis.aggregator_id
        assert _http("POST", url, {"partner_status": {p: "failed"}})[1]["status"] == "executing"
        assert _http("POST", url, {"partner_status": {p: "stopped"}})[1]["status"] == "stopped"
    finally:
        sdk.close()


def test_a_failing_node_fails_its_partners(analysis, sdks):
    failing = analysis.data_node_ids[0]
    with pytest.raises(AnalysisError, match="division went wrong"):
        sdks[failing].flame_log("division went wrong", log_type="error")
    assert analysis.wait_finished(15) == dict.fromkeys(analysis.node_ids, "failed")
    with pytest.raises(AnalysisError, match="failed"):
        sdks[analysis.aggregator_id].await_messages([failing], "result", timeout=5)


def test_log_streaming_levels_halt_and_append(analysis):
    node = analysis.data_node_ids[0]
    sdk = FlameCoreSDK(env=analysis.env(node), silent=True, stream_log_level=25)
    try:
        sdk.flame_log("hidden detail", log_type="debug")
        sdk.flame_log("routine", log_type="info")
        sdk.flame_log("notable", log_type="notice")
        sdk.flame_log(["a", "b", "c"], sep="-", end="!", log_type="warn")
        sdk.flame_log(b"bytes message", log_type="crit")
        sdk.flame_log("Awaiting contact...", log_type="alert", halt_submission=True)
        sdk.flame_log("success", log_type="alert", append=True)
        sdk.set_progress(40.7)
        sdk.set_progress(30)
        sdk.flame_log("after progress", log_type="emerg")
        with pytest.raises(ValueError, match="unknown log_type"):
            sdk.flame_log("x", log_type="verbose")
        assert sdk.wait_until_reported(timeout=0.1) is False  # still running: nothing final to report
        logs = [(r["log"], r["log_type"]) for r in analysis.logs(node)]
        assert ("notable", "notice") in logs
        assert ("a-b-c!", "warn") in logs
        assert ("bytes message", "crit") in logs
        assert ("Awaiting contact...success", "alert") in logs
        assert ("Awaiting contact...", "alert") not in logs
        assert not any(text in ("hidden detail", "routine") for text, _ in logs)
        assert any("progress only increases" in text for text, _ in logs)
        assert analysis.logs(node)[-1]["progress"] == 40 and sdk.get_progress() == 40
    finally:
        sdk.close()


def test_a_failed_node_stays_failed_when_a_partner_finishes(analysis, sdks):
    failing = analysis.data_node_ids[0]
    with pytest.raises(AnalysisError):
        sdks[failing].flame_log("broken", log_type="error")
    sdks[analysis.aggregator_id].send_message([failing], "analysis_finished", {}, timeout=10)
    status, health = _http("GET", _api(analysis, failing) + "/healthz")
    assert health["status"] == "failed"
