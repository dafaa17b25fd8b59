"""Message broker behaviour between three SDK objects over the simulator (real HTTP)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from flame_sdk import FlameCoreSDK
from flame_sdk.errors import MessageTooLargeError, UnknownNodeError
from flame_sdk.protocol.envelope import MAX_IDS_PER_ACKNOWLEDGEMENT, MAX_MESSAGE_BYTES
from tests.waiting import GENEROUS, wait_until


def _roles(analysis, sdks):
    return sdks[analysis.aggregator_id], [sdks[n] for n in analysis.data_node_ids]


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_identity_and_roles(analysis, sdks):
    agg, analyzers = _roles(analysis, sdks)
    assert agg.get_role() == "aggregator" and agg.get_aggregator_id() is None
    for sdk in analyzers:
        assert sdk.get_role() == "default"
        assert sdk.get_aggregator_id() == analysis.aggregator_id
    for node_id, sdk in sdks.items():
        assert sdk.get_id() == node_id
        assert sdk.get_analysis_id() == analysis.analysis_id
        assert sdk.get_project_id() == analysis.project_id
        assert sorted(sdk.get_participant_ids()) == sorted(n for n in analysis.node_ids if n != node_id)
        assert all(set(p) == {"nodeId", "nodeType"} for p in sdk.get_participants())


def test_ready_check_all_partners(analysis, sdks):
    agg, _ = _roles(analysis, sdks)
    assert agg.ready_check(timeout=10, attempt_interval=2) == dict.fromkeys(analysis.data_node_ids, True)


def test_ready_check_finds_a_partner_that_subscribed_after_the_first_check(sim):
    """The broker drops a ready_check for an analysis its node has not subscribed to yet; the resend comes
    seconds later, not after attempt_interval (here far beyond the timeout, so only an early resend passes)."""
    analysis = sim.create_analysis()
    late = analysis.data_node_ids[0]
    reached = threading.Event()
    inbox = sim.hub.local_inboxes[late]

    async def spy(envelope):
        if envelope["analysis_id"] == analysis.analysis_id:
            reached.set()
        await inbox(envelope)

    sim.hub.local_inboxes[late] = spy
    agg = FlameCoreSDK(env=analysis.env(analysis.aggregator_id), silent=True)
    partner = None
    try:
        result: dict[str, dict[str, bool]] = {}
        checking = threading.Thread(target=lambda: result.update(
            ready=agg.ready_check([late], attempt_interval=3600, timeout=GENEROUS)))
        checking.start()
        assert reached.wait(GENEROUS), "the first ready_check never reached the partner's broker"
        partner = FlameCoreSDK(env=analysis.env(late), silent=True)  # subscribes only now
        checking.join(GENEROUS + 30)
        assert result == {"ready": {late: True}}
    finally:
        sim.hub.local_inboxes[late] = inbox
        for sdk in (agg, partner):
            if sdk is not None:
                sdk.close()


def test_exchange_with_acknowledgements_both_ways(analysis, sdks):
    agg, analyzers = _roles(analysis, sdks)
    acked, missing = agg.send_message(analysis.data_node_ids, "round", {"weights": [1.0, 2.0]}, timeout=10)
    assert sorted(acked) == sorted(analysis.data_node_ids) and missing == []
    for sdk in analyzers:
        got = sdk.await_messages([analysis.aggregator_id], "round", timeout=10)[analysis.aggregator_id]
        assert [m.body["weights"] for m in got] == [[1.0, 2.0]]
        assert got[0].status == "read" and got[0].sender == analysis.aggregator_id
        assert sdk.send_message([analysis.aggregator_id], "reply", {"n": sdk.get_id()}, timeout=10) == (
            [analysis.aggregator_id], [])
    replies = agg.await_messages(analysis.data_node_ids, "reply", timeout=10)
    assert {sender: msgs[-1].body["n"] for sender, msgs in replies.items()} == {n: n for n in analysis.data_node_ids}


def test_send_and_wait_for_responses(analysis, sdks):
    agg, analyzers = _roles(analysis, sdks)

    def answer(sdk):
        sdk.await_messages([analysis.aggregator_id], "ping", timeout=10)
        sdk.send_message([analysis.aggregator_id], "ping", {"pong": sdk.get_id()}, timeout=10)

    threads = [threading.Thread(target=answer, args=(sdk,)) for sdk in analyzers]
    for t in threads:
        t.start()
    responses = agg.send_message_and_wait_for_responses(analysis.data_node_ids, "ping", {"ping": 1}, timeout=15)
    for t in threads:
        t.join(10)
    assert {n: msgs[-1].body["pong"] for n, msgs in responses.items()} == {n: n for n in analysis.data_node_ids}


def test_await_timeout_names_silent_sender(analysis, sdks):
    agg, analyzers = _roles(analysis, sdks)
    talker, silent = analysis.data_node_ids
    sdks[talker].send_message([analysis.aggregator_id], "update", {"v": 1}, timeout=10)
    start = time.monotonic()
    result = agg.await_messages(analysis.data_node_ids, "update", timeout=1)
    assert time.monotonic() - start < 30  # bounded by its timeout, not a hang (no timing measurement)
    assert result[silent] is None and result[talker][0].body["v"] == 1
    warnings = [r.log for r in agg._core._logger.history if r.log_type == "warn"]
    assert any(silent in w and "update" in w for w in warnings), warnings


def test_unacknowledged_send_reports_missing_receiver(analysis, sdks):
    agg, analyzers = _roles(analysis, sdks)
    dead = analysis.data_node_ids[1]
    sdks[dead].close()  # its API is gone, so it cannot acknowledge
    # the send lasts its whole timeout (the dead node never answers): long enough that the live node's
    # acknowledgement arrives within it on a busy machine, short enough not to drag the suite
    acked, missing = agg.send_message(analysis.data_node_ids, "late", {}, max_attempts=2, timeout=20,
                                      attempt_timeout=10)
    assert acked == [analysis.data_node_ids[0]] and missing == [dead]


def test_get_delete_and_clear(analysis, sdks):
    agg, _ = _roles(analysis, sdks)
    sender = sdks[analysis.data_node_ids[0]]
    for i in range(3):
        sender.send_message([analysis.aggregator_id], f"c{i}", {"i": i}, timeout=10)
    assert agg.await_messages([sender.get_id()], "c0", timeout=10)[sender.get_id()]
    unread = [m for m in agg.get_messages() if m.category.startswith("c")]
    read = [m for m in agg.get_messages("read") if m.category.startswith("c")]
    assert sorted(m.category for m in unread) == ["c1", "c2"] and [m.category for m in read] == ["c0"]
    assert agg.delete_messages([unread[0].id]) == 1
    assert agg.delete_messages(["no-such-id"]) == 0
    assert agg.clear_messages("read", min_age=3600) == 0  # too young
    assert agg.clear_messages("read") >= 1
    assert not agg.get_messages("read")
    assert agg.clear_messages("all") >= 1 and agg.get_messages() == []
    with pytest.raises(ValueError, match="status"):
        agg.clear_messages("bogus")


def test_duplicate_delivery_is_dropped_but_reacknowledged(analysis, sdks):
    agg, analyzers = _roles(analysis, sdks)
    receiver = analyzers[0]
    body = {"x": 1, "meta": {"type": "outgoing", "category": "dup", "id": "dup-1", "akn_id": None,
                             "status": "unread", "sender": analysis.aggregator_id,
                             "created_at": "2026-01-01 00:00:00.000000", "arrived_at": None, "number": 1}}
    url = analysis.deployments[receiver.get_id()].analysis_api_url + "/webhook"
    for _ in range(3):
        assert _post(url, json.dumps(body).encode())[0] == 200
    received = receiver.await_messages([analysis.aggregator_id], "dup", timeout=5)[analysis.aggregator_id]
    assert [m.id for m in received] == ["dup-1"]
    assert [m.id for m in receiver.get_messages("read") if m.category == "dup"] == ["dup-1"]


class _Held:
    """Records the acknowledgements (or, with ``messages``, the messages) a node's simulated broker is asked to
    send; holds the first one in the broker until ``release`` is set (or the block ends)."""

    def __init__(self, sim, node_id: str, messages: bool = False) -> None:
        self.broker = sim.node(node_id).broker
        self.read_message = self.broker._read_message
        self.messages = messages
        self.sent: list[dict] = []
        self.first_held, self.release = threading.Event(), threading.Event()

    async def _read(self, request):
        body, refusal = await self.read_message(request)
        message = (body or {}).get("message") or {}
        if (message.get("meta", {}).get("akn_id") is None) is self.messages:
            self.sent.append(message)
            if len(self.sent) == 1:
                self.first_held.set()
                await asyncio.get_running_loop().run_in_executor(None, self.release.wait, GENEROUS)
        return body, refusal

    def __enter__(self) -> _Held:
        self.broker._read_message = self._read
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.broker._read_message = self.read_message


def _five_sends(held: _Held, send: Callable[[int], None], queued: Callable[[], bool], what: str) -> None:
    """Send 0 in a thread; once the broker holds what ``held`` holds, sends 1-4 in threads; once ``queued()``,
    release the held request and wait for all five sends."""
    first = threading.Thread(target=send, args=(0,))
    first.start()
    assert held.first_held.wait(GENEROUS), "the broker never got the request to hold"
    others = [threading.Thread(target=send, args=(n,)) for n in range(1, 5)]
    for thread in others:
        thread.start()
    wait_until(queued, what)
    held.release.set()
    for thread in [first, *others]:
        thread.join(GENEROUS)


def _acknowledged_ids(ack: dict) -> list[str]:
    return [ack["meta"]["id"], *ack.get("also_acknowledges", [])]


def test_acknowledgements_that_queue_behind_one_in_flight_go_out_as_one_message(sim, analysis, sdks):
    """While a receiver's acknowledgement to a node is in flight, those of further messages from that node wait
    and then go out together: one broker message acknowledges them all, and every send completes."""
    agg, analyzers = _roles(analysis, sdks)
    receiver = analyzers[0]
    receiver._core._parts.broker.acks.stall = GENEROUS  # the held acknowledgement holds the others up
    results: list[tuple[list[str], list[str]]] = []

    def send(n: int) -> None:
        results.append(agg.send_message([receiver.get_id()], "batched", {"n": n}, timeout=GENEROUS))

    with _Held(sim, receiver.get_id()) as acks:
        _five_sends(acks, send, lambda: len(receiver.get_messages()) == 5, "all five messages in the receiver's inbox")
    assert sorted(results) == [([receiver.get_id()], [])] * 5
    assert len(acks.sent) == 2
    first_id = acks.sent[0]["meta"]["id"]
    assert sorted(_acknowledged_ids(acks.sent[1])) == sorted(m.id for m in receiver.get_messages() if m.id != first_id)


@pytest.mark.parametrize("handed_on", [False, True], ids=["after the held one", "handed on while it hangs"])
def test_more_queued_acknowledgements_than_one_message_carries_go_out_in_several(sim, analysis, sdks, handed_on):
    """1,500 acknowledgements queued behind a held one go out as 1,001 ids (meta.id and 1,000 more), then 499,
    whether the held request ended or a stall handed the queue on."""
    agg, analyzers = _roles(analysis, sdks)
    receiver, sender = analyzers[0], analysis.aggregator_id
    client = receiver._core._parts.broker
    client.acks.stall = GENEROUS
    url = analysis.deployments[receiver.get_id()].analysis_api_url + "/webhook"

    def deliver(n: int) -> None:
        meta = {"type": "outgoing", "category": "split", "id": f"split-{n}", "akn_id": None, "status": "unread",
                "sender": sender, "created_at": "2026-01-01 00:00:00.000000", "arrived_at": None, "number": n}
        assert _post(url, json.dumps({"meta": meta}).encode())[0] == 200

    async def hand_on() -> None:
        client.acks._hand_on(sender, client.acks._lanes[sender])

    queued = MAX_IDS_PER_ACKNOWLEDGEMENT + 500
    with _Held(sim, receiver.get_id()) as acks:
        deliver(0)
        assert acks.first_held.wait(GENEROUS), "the receiver never acknowledged the first message"
        for n in range(1, queued + 1):
            deliver(n)
        if handed_on:
            receiver._loop.run(hand_on(), GENEROUS)
        else:
            acks.release.set()
        wait_until(lambda: len(acks.sent) == 3, "the queued acknowledgements sent")
    assert [len(_acknowledged_ids(ack)) for ack in acks.sent] == [1, MAX_IDS_PER_ACKNOWLEDGEMENT + 1, 499]
    assert sorted(i for ack in acks.sent for i in _acknowledged_ids(ack)) == sorted(
        f"split-{n}" for n in range(queued + 1))


def test_a_stalled_acknowledgement_does_not_hold_up_the_next(sim, analysis, sdks):
    """An acknowledgement request that hangs holds those queued behind it up for ``stall`` seconds only."""
    agg, analyzers = _roles(analysis, sdks)
    receiver = analyzers[0]
    receiver._core._parts.broker.acks.stall = 0.2
    with _Held(sim, receiver.get_id()) as acks:
        first = threading.Thread(target=agg.send_message, args=([receiver.get_id()], "stalled", {"n": 0}),
                                 kwargs={"timeout": GENEROUS})
        first.start()
        assert acks.first_held.wait(GENEROUS), "the receiver never acknowledged the first message"
        assert agg.send_message([receiver.get_id()], "stalled", {"n": 1}, timeout=GENEROUS) == (
            [receiver.get_id()], [])
    first.join(GENEROUS)


def test_messages_sent_while_one_is_in_flight_go_out_as_one_broker_message(sim, analysis, sdks):
    """While a message to some receivers is in flight, further messages to the same receivers wait and then go
    out in one broker message; the receiver gets each as sent, in order, and acknowledges them all."""
    agg, analyzers = _roles(analysis, sdks)
    receivers = [a.get_id() for a in analyzers]
    agg._core._parts.broker.sends.stall = GENEROUS  # the held message holds the others up
    results: list[tuple[list[str], list[str]]] = []

    def send(n: int) -> None:
        results.append(agg.send_message(receivers, "bundled", {"n": n, "text": "é" * n}, timeout=GENEROUS))

    lanes = agg._core._parts.broker.sends._lanes
    with _Held(sim, agg.get_id(), messages=True) as sent:
        _five_sends(sent, send, lambda: len(lanes[tuple(receivers)]) == 4, "four messages queued behind the held one")
    assert sorted(results) == [(receivers, [])] * 5
    assert [1 + len(m["meta"].get("also_carries", [])) for m in sent.sent] == [1, 4]
    for analyzer in analyzers:
        got = analyzer.await_messages([agg.get_id()], "bundled", timeout=GENEROUS)[agg.get_id()]
        assert [m.body["n"] for m in got] == [0, 1, 2, 3, 4] and [m.body["text"] for m in got] == [
            "é" * n for n in range(5)]
        assert all("also_carries" not in m.meta and m.sender == agg.get_id() for m in got)


def test_a_stalled_message_does_not_hold_up_the_next(sim, analysis, sdks):
    """A message request that hangs holds those queued behind it for the same receivers up for ``stall`` seconds
    only."""
    agg, analyzers = _roles(analysis, sdks)
    receiver = analyzers[0].get_id()
    agg._core._parts.broker.sends.stall = 0.2
    with _Held(sim, agg.get_id(), messages=True) as sent:
        first = threading.Thread(target=agg.send_message, args=([receiver], "stalled", {"n": 0}),
                                 kwargs={"timeout": GENEROUS})
        first.start()
        assert sent.first_held.wait(GENEROUS), "the first message never reached the broker"
        assert agg.send_message([receiver], "stalled", {"n": 1}, timeout=GENEROUS) == ([receiver], [])
    first.join(GENEROUS)


_META = '"meta": {"id": "a", "sender": "b", "category": "c", "akn_id": null'


def _bundle(*inner: str) -> bytes:
    return ('{' + _META + ', "also_carries": [' + ", ".join(inner) + ']}}').encode()


@pytest.mark.parametrize("body, reason", [
    (('{' + _META[:-4] + '"d", "also_carries": []}}').encode(), "an acknowledgement carries no messages"),
    (('{' + _META + ', "also_carries": {}}}').encode(), "must be a list of at most 99 messages"),
    (_bundle(*['{' + _META + '}}'] * 100), "must be a list of at most 99 messages"),
    (_bundle('[]'), "also_carries[0] must be a JSON object"),
    (_bundle('{"meta": {"id": "x", "sender": "b", "category": "c"}}'), "also_carries[0].meta.akn_id"),
    (_bundle('{' + _META + '}}', '{' + _META.replace('"b"', '"other"') + '}}'), "from the same sender"),
    (_bundle('{' + _META[:-4] + '"d"}}'), "from the same sender"),
    (_bundle(_bundle('{' + _META + '}}').decode()), "must carry no further messages"),
])
def test_malformed_bundle_gets_400(analysis, sdks, body, reason):
    node = analysis.data_node_ids[0]
    status, answer = _post(analysis.deployments[node].analysis_api_url + "/webhook", body)
    assert status == 400 and reason in answer["error"], answer
    assert sdks[node].get_messages() == []


@pytest.mark.parametrize("body, reason", [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"meta": {"id": "a", "sender": "b"}}', "category"),
    (b'{"meta": {"id": "a", "sender": "b", "category": "c"}}', "akn_id"),
    (b'{"meta": {"id": "a", "sender": "b", "category": "c", "akn_id": "d"}, "also_acknowledges": "e"}',
     "also_acknowledges"),
    (b'{"meta": {"id": "a", "sender": "b", "category": "c", "akn_id": "d"}, "also_acknowledges": [""]}',
     "also_acknowledges"),
])
def test_malformed_webhook_body_gets_400(analysis, sdks, body, reason):
    node = analysis.data_node_ids[0]
    status, answer = _post(analysis.deployments[node].analysis_api_url + "/webhook", body)
    assert status == 400 and reason in answer["error"]
    assert sdks[node].get_messages() == []


def test_oversized_and_invalid_messages_rejected_before_sending(analysis, sdks):
    agg, _ = _roles(analysis, sdks)
    with pytest.raises(MessageTooLargeError, match="save_intermediate_data"):
        agg.send_message(analysis.data_node_ids, "big", {"blob": "x" * MAX_MESSAGE_BYTES})
    with pytest.raises(ValueError, match="'meta' is reserved"):
        agg.send_message(analysis.data_node_ids, "meta", {"meta": 1})
    with pytest.raises(UnknownNodeError, match="not partners"):
        agg.send_message(["nobody"], "x", {})
    with pytest.raises(TypeError, match="JSON-serializable"):
        agg.send_message(analysis.data_node_ids, "obj", {"o": object()})
    with pytest.raises(UnknownNodeError):
        agg.await_messages(["nobody"], "x", timeout=1)
