"""The inbox: messages indexed by sender and category, waiters woken only by what concerns them."""

from __future__ import annotations

import asyncio

from flame_sdk.clients.messages import Inbox, Message, ack_key, message_key


def _message(sender: str, category: str, number: int) -> Message:
    return Message({"meta": {"id": f"{sender}-{category}-{number}", "sender": sender, "category": category,
                             "status": "unread", "number": number}})


def test_matching_uses_the_index_and_follows_deletes_and_clears() -> None:
    inbox = Inbox()
    for number in (2, 1):
        inbox.add(_message("a", "x", number))
    inbox.add(_message("b", "x", 1))
    assert [m.id for m in inbox.matching("a", "x")] == ["a-x-1", "a-x-2"]  # in the sender's order
    assert inbox.matching("a", "y") == [] and len(inbox.matching("b", "x")) == 1
    assert not inbox.add(_message("a", "x", 1))  # a second delivery of the same id
    inbox.matching("a", "x")[0].set_read()
    assert [m.id for m in inbox.matching("a", "x")] == ["a-x-2"]
    assert inbox.delete(["a-x-2"]) == 1 and inbox.matching("a", "x") == []
    assert inbox.clear("all", None) == 2 and inbox.matching("b", "x") == [] and inbox.messages == []


def test_an_arrival_rechecks_only_the_waiters_it_concerns() -> None:
    async def scenario() -> tuple[int, int, bool, bool]:
        inbox = Inbox()
        inbox.expect_acks("m1")
        inbox.expect_acks("m2")
        checks = {"x": 0, "ack": 0}

        def from_a() -> bool:
            checks["x"] += 1
            return bool(inbox.matching("a", "x"))

        def acked() -> bool:
            checks["ack"] += 1
            return "b" in inbox.acked_by("m1")

        waiting_x = asyncio.ensure_future(inbox.wait_for(from_a, 10, [message_key("a", "x")]))
        waiting_ack = asyncio.ensure_future(inbox.wait_for(acked, 10, [ack_key("m1")]))
        await asyncio.sleep(0)
        for number in range(50):  # other senders and categories: nobody re-checks
            inbox.add(_message("c", "x", number))
            inbox.add(_message("a", "y", number))
        inbox.add_ack("m2", "b")
        before = dict(checks)
        inbox.add(_message("a", "x", 1))
        inbox.add_ack("m1", "b")
        got = await asyncio.gather(waiting_x, waiting_ack)
        return before["x"], before["ack"], got[0], got[1]

    x_checks, ack_checks, got_x, got_ack = asyncio.run(scenario())
    assert (x_checks, ack_checks) == (1, 1)  # each predicate ran once, when its wait began
    assert got_x and got_ack


def test_only_acknowledgements_of_messages_in_flight_are_kept() -> None:
    inbox = Inbox()
    inbox.add_ack("never-sent", "b")  # a partner acknowledging an id this node never sent
    inbox.expect_acks("m1")
    inbox.add_ack("m1", "b")
    assert inbox.acked_by("m1") == {"b"} and inbox.acked_by("never-sent") == set()
    inbox.forget_acks("m1")
    inbox.add_ack("m1", "c")  # a late duplicate after the send ended
    assert inbox.acked_by("m1") == set() and not inbox._acks


def test_wake_rechecks_everyone_and_a_timeout_returns_the_predicate() -> None:
    async def scenario() -> tuple[bool, bool]:
        inbox = Inbox()
        flag = {"ended": False}
        waiting = asyncio.ensure_future(inbox.wait_for(lambda: flag["ended"], 10, [message_key("a", "x")]))
        await asyncio.sleep(0)
        flag["ended"] = True
        inbox.wake()
        return await waiting, await inbox.wait_for(lambda: False, 0.01, [])

    assert asyncio.run(scenario()) == (True, False)
