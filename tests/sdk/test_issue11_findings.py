"""One test per numbered finding of issue 11 (faults, trust boundaries, hostile input), over the simulator.

Waits here are bounded generously and end on events, never on a timing window.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import threading
import urllib.error
import urllib.request

import pytest

from flame_sdk.errors import ReplayedDataError
from flame_sdk.protocol.envelope import MAX_MESSAGE_BYTES
from flame_sdk.storage.safe_pickle import UnsafePickleError

pytestmark = pytest.mark.sim


def _http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _meta(category: str, sender: str, message_id: str, akn_id: str | None = None) -> dict:
    return {"type": "outgoing", "category": category, "id": message_id, "akn_id": akn_id, "status": "unread",
            "sender": sender, "created_at": "2026-01-01 00:00:00.000000", "arrived_at": None, "number": 1}


def _in_thread(target, *args, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = target(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _broker(sdk):
    return sdk._core._parts.broker


# -- 1. a single lost message must not hang the sender -----------------------------------------------------------
def test_a_lost_delivery_is_resent_until_acknowledged(analysis, sdks):
    sender, receiver = sdks[analysis.aggregator_id], sdks[analysis.data_node_ids[0]]
    broker = _broker(receiver)
    real_receive, lost = broker.receive, []

    def lose_first(body):
        if not lost and body["meta"]["akn_id"] is None:
            lost.append(body["meta"]["id"])  # as if the broker had dropped it (a 429 or a connection error)
            return None
        return real_receive(body)

    broker.receive = lose_first
    receiver._core._parts.api.on_message = lose_first
    # the documented defaults: one attempt, no timeout (before: waited for its acknowledgement forever)
    thread, out = _in_thread(sender.send_message, [receiver.get_id()], "lossy", {"n": 1}, attempt_timeout=0.5)
    thread.join(60)
    assert not thread.is_alive(), "send_message hung on a lost message"
    assert out["value"] == ([receiver.get_id()], []) and lost
    got = receiver.await_messages([analysis.aggregator_id], "lossy", timeout=30)[analysis.aggregator_id]
    assert [m.body["n"] for m in got] == [1]


def test_the_simulated_broker_drops_what_its_webhook_refuses_and_logs_it(analysis, sdks, caplog):
    sim_node = analysis.sim.node(analysis.data_node_ids[0])
    deployment = analysis.deployments[analysis.data_node_ids[0]]
    before = len(sim_node.broker.undelivered)
    with caplog.at_level("WARNING", logger="flame_sdk.sim.message_broker"):
        analysis.sim.run(sim_node.broker._deliver("m-1", analysis.analysis_id,
                                                  f"http://nginx-{deployment.deployment_name}/analysis/nothing",
                                                  {"x": 1}), timeout=60)
    dropped = sim_node.broker.undelivered[before:]
    assert [d.message_id for d in dropped] == ["m-1"] and "HTTP 404" in dropped[0].reason  # no such API route
    assert "not retried" in dropped[0].reason and "failed to forward message with id 'm-1'" in caplog.text
    from flame_sdk.protocol.broker_api import retries_delivery

    assert not retries_delivery(429) and not retries_delivery(404) and retries_delivery(503)


def test_webhook_hosts_nginx_deployment_resolve_to_that_gateway(analysis, sdks):
    node = analysis.data_node_ids[0]
    deployment = analysis.deployments[node]
    broker = analysis.sim.node(node).broker
    resolved = broker.resolve(f"http://nginx-{deployment.deployment_name}/analysis/webhook")
    assert resolved == deployment.gateway_url + "/analysis/webhook"
    subscriptions = broker.subscriptions[analysis.analysis_id].values()
    assert list(subscriptions) == [f"http://nginx-{deployment.deployment_name}/analysis/webhook"]  # one, as on a node


# -- 2. a lost subscription is found and renewed ------------------------------------------------------------------
def test_a_lost_subscription_is_renewed_while_waiting(analysis, sdks):
    sender, receiver = sdks[analysis.aggregator_id], sdks[analysis.data_node_ids[0]]
    _broker(receiver).subscription_check_interval = 0.5
    analysis.sim.node(receiver.get_id()).broker.subscriptions[analysis.analysis_id].clear()
    thread, out = _in_thread(sender.send_message, [receiver.get_id()], "after-loss", {"n": 2}, attempt_timeout=0.5)
    got = receiver.await_messages([analysis.aggregator_id], "after-loss", timeout=60)[analysis.aggregator_id]
    thread.join(60)
    assert got is not None and got[0].body["n"] == 2
    assert out["value"] == ([receiver.get_id()], [])
    assert len(analysis.sim.node(receiver.get_id()).broker.subscriptions[analysis.analysis_id]) == 1


# -- 3. who may steer the node ------------------------------------------------------------------------------------
def test_only_the_broker_and_the_po_reach_analysis_through_the_gateway(analysis, sdks):
    node = analysis.data_node_ids[0]
    forged = {"meta": _meta("analysis_finished", analysis.aggregator_id, "forged-1")}
    status, page = _http("POST", analysis.deployments[node].gateway_url + "/analysis/webhook",
                         json.dumps(forged).encode())
    assert status == 403 and b"403 Forbidden" in page  # nginx's deny, as for any pod but the broker and the PO
    assert sdks[node]._core._state.ended() is None
    assert sdks[node].get_messages() == []


def test_webhook_messages_from_non_participants_are_refused(analysis, sdks):
    node = analysis.data_node_ids[0]
    api = analysis.deployments[node].analysis_api_url
    stranger = {"meta": _meta("data", "not-a-participant", "s-1")}
    status, answer = _http("POST", api + "/webhook", json.dumps(stranger).encode())
    assert status == 403 and b"not a partner" in answer
    ack = {"meta": _meta("data", node, "s-2", akn_id="not-a-participant")}
    assert _http("POST", api + "/webhook", json.dumps(ack).encode())[0] == 403
    assert sdks[node].get_messages() == []


def test_partner_status_only_for_participants(analysis, sdks):
    node = analysis.data_node_ids[0]
    url = analysis.deployments[node].analysis_api_url + "/partner_status"
    status, answer = _http("POST", url, json.dumps({"partner_status": {"intruder": "failed"}}).encode())
    assert status == 400 and b"intruder" in answer
    assert json.loads(_http("GET", analysis.deployments[node].analysis_api_url + "/healthz")[1])["status"] == \
        "executing"


def test_a_replayed_storage_id_is_rejected(analysis, sdks):
    agg, analyzer = sdks[analysis.aggregator_id], sdks[analysis.data_node_ids[0]]
    analyzer_id = analyzer.get_id()
    analyzer.send_intermediate_data([analysis.aggregator_id], {"round": 1}, timeout=30)
    first = agg.await_intermediate_data([analyzer_id], timeout=30)[analyzer_id]
    assert first == {"round": 1}
    message = agg.get_messages("read")[-1]
    replay = {"result_id": message.body["result_id"], "meta": _meta("intermediate_data", analyzer_id, "replay-1")}
    status, _ = _http("POST", analysis.deployments[analysis.aggregator_id].analysis_api_url + "/webhook",
                      json.dumps(replay).encode())
    assert status == 200
    with pytest.raises(ReplayedDataError, match="already used"):
        agg.await_intermediate_data([analyzer_id], timeout=30)


# -- 4. pickles run nothing ---------------------------------------------------------------------------------------
class Gadget:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_pickle_gadget_from_a_partner_runs_nothing(analysis, sdks, tmp_path):
    agg, analyzer = sdks[analysis.aggregator_id], sdks[analysis.data_node_ids[0]]
    marker = tmp_path / "pwned"
    analyzer.send_intermediate_data([analysis.aggregator_id], {"weights": [1.0], "evil": Gadget(str(marker))},
                                    timeout=30)
    with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system"):
        agg.await_intermediate_data([analyzer.get_id()], timeout=30)
    assert not marker.exists()


def test_a_planted_local_pickle_runs_nothing(analysis, sdks, tmp_path):
    node = sdks[analysis.data_node_ids[0]]
    marker = tmp_path / "pwned-local"
    node.save_intermediate_data(Gadget(str(marker)), "local", tag="planted")
    with pytest.raises(UnsafePickleError, match="allow_unpickling"):
        node.get_intermediate_data("local", tag="planted")
    assert not marker.exists()


def test_plain_pickles_of_the_reference_sdk_still_load():
    import numpy as np
    import pandas as pd

    from flame_sdk.storage.serialization import load_object

    data = {"n": 3, "mean": 1.5, "names": ["a", "b"], "t": (1, 2), "s": {1}, "arr": np.arange(4),
            "df": pd.DataFrame({"x": [1, 2], "y": ["a", None]})}
    for protocol in (2, 4, 5):  # the reference SDK pickles with pickle.dumps' default protocol
        loaded = load_object(pickle.dumps(data, protocol=protocol))
        assert loaded["names"] == ["a", "b"] and loaded["df"].equals(data["df"])


# -- 5. a token with an absurd expiry is refused; /healthz keeps answering -----------------------------------------
@pytest.mark.parametrize("exp", ["1e400", "NaN", "-Infinity", '"soon"', "true"])
def test_token_refresh_needs_a_finite_expiry(analysis, sdks, exp):
    node = analysis.data_node_ids[0]
    api = analysis.deployments[node].analysis_api_url
    claims = base64.urlsafe_b64encode(f'{{"exp": {exp}}}'.encode()).decode().rstrip("=")
    token = f"eyJhbGciOiJIUzI1NiJ9.{claims}.c2ln"
    status, answer = _http("POST", api + "/token_refresh", json.dumps({"token": token}).encode())
    assert status == 400 and b"exp" in answer
    status, health = _http("GET", api + "/healthz")
    assert status == 200 and json.loads(health)["token_remaining_time"] > 0


# -- 7. smaller ones -----------------------------------------------------------------------------------------------
def test_deeply_nested_json_gets_400_not_500(analysis, sdks):
    api = analysis.deployments[analysis.data_node_ids[0]].analysis_api_url
    deep = b"[" * 100_000 + b"]" * 100_000
    for route in ("/webhook", "/partner_status", "/token_refresh"):
        status, answer = _http("POST", api + route, deep)
        assert status == 400 and b"nested too deeply" in answer


def test_nan_and_infinity_are_refused_before_sending(analysis, sdks):
    agg = sdks[analysis.aggregator_id]
    with pytest.raises(TypeError, match="NaN or infinity"):
        agg.send_message(analysis.data_node_ids, "nan", {"x": float("nan")})


def test_non_ascii_text_counts_its_utf8_bytes(analysis, sdks):
    agg = sdks[analysis.aggregator_id]
    text = "é" * (MAX_MESSAGE_BYTES // 3)  # 2/3 of the cap in UTF-8; 4 times the cap as \\u escapes
    assert agg.send_message(analysis.data_node_ids[:1], "utf8", {"t": text}, timeout=60) == (
        analysis.data_node_ids[:1], [])
    got = sdks[analysis.data_node_ids[0]].await_messages([analysis.aggregator_id], "utf8", timeout=30)
    assert got[analysis.aggregator_id][0].body["t"] == text


def test_a_local_query_is_an_id_not_a_path(analysis, sdks):
    node = sdks[analysis.data_node_ids[0]]
    node.save_intermediate_data({"x": 1}, "local", tag="x")
    with pytest.raises(ValueError, match="storage id"):
        node.get_intermediate_data("local", query="tags/x")


def test_fault_injection_is_deterministic_per_seed():
    from flame_sdk.sim.common.faults import FaultPlan

    def decisions(seed: int) -> list:
        injector = FaultPlan(0.3, seed).injector("nginx-a")
        return [injector.draw() for _ in range(200)]

    assert decisions(7) == decisions(7) != decisions(8)
    assert 30 < sum(fault is not None for fault, _ in decisions(7)) < 90


def test_benchmarks_never_wait_on_a_dead_child():
    import time

    from benchmarks.processes import ChildError, run_child

    start = time.monotonic()
    with pytest.raises(ChildError, match="died"):
        run_child(os.abort, timeout=600)
    assert time.monotonic() - start < 60
