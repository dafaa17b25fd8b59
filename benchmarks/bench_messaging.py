"""Message broker figures between two nodes, each in its own process as on the platform: the sending node's SDK
in this process, the receiving node's SDK and the simulator in child processes.

Targets (issue 14):
* send_message until the receiver's acknowledgement arrived, p50 <= 3 x a bare two-POST round trip
  (``baselines.BareTwoPost``: message POST, acknowledgement POST back, between two processes) on loopback, in
  blocks interleaved with the SDK's;
* 8 concurrent senders (threads sharing one SDK object) >= 3 x the acknowledged messages/s of one sender.
Informative: p99; the same round trips through ``AsyncFlameCoreSDK`` (a third node, timed on its own loop as
the bare exchange is: what the sync facade's two thread hand-offs per call add; interleaved with bare blocks of
their own after the target's, so they do not sit between the target's blocks); the await_messages latency once
a message landed in the inbox; the bare two-POST exchange's gain from 8 concurrent senders over one
(``baselines.BareTwoPost.throughputs``: on 2 cores ~1.8-2.6x) with the SDK's gain as a fraction of it (the SDK
can gain more: messages sent while one to the same receivers is in flight travel together, see
``flame_sdk.clients.lanes``), and the same gain through ``AsyncFlameCoreSDK`` (8 coroutines): what the sync
facade's thread hand-offs cost under concurrency.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable

from benchmarks.baselines import BareTwoPost
from benchmarks.processes import ChildProcess, SimulatorProcess, start_node_sdk, stop_node_sdk
from benchmarks.report import percentiles, row, target
from flame_sdk import AsyncFlameCoreSDK, FlameCoreSDK
from flame_sdk.runtime import EventLoopThread
from flame_sdk.sim.run.simulation import SimConfig

ROUND_TRIPS = 300
#: The round trips are measured in this many blocks, bare and SDK alternately.
BLOCKS = 6
THROUGHPUT_MESSAGES = 600
#: Throughput is measured this many times for 1 and for 8 senders, alternately; the medians count.
THROUGHPUT_ROUNDS = 3
CONCURRENT_SENDERS = 8
AWAITS = 200
PAYLOAD: dict[str, object] = {"values": list(range(32))}


def _send_from_node(sdk: FlameCoreSDK, to: str, category: str) -> None:
    sdk.send_message([to], category, PAYLOAD, timeout=10)


def _clear_node(sdk: FlameCoreSDK) -> None:
    sdk.clear_messages("all")


def _await_latency(a: FlameCoreSDK, b: ChildProcess, a_id: str, b_id: str, category: str) -> float:
    """Seconds from a message of b landing in a's inbox to a's blocked await_messages returning."""
    result: dict[str, float] = {}

    def receiver() -> None:
        msgs = a.await_messages([b_id], category, timeout=10)[b_id]
        result["returned"] = time.monotonic()
        result["arrived"] = msgs[0].received_at if msgs else float("nan")

    thread = threading.Thread(target=receiver)
    thread.start()
    time.sleep(0.002)  # let the receiver block first
    b.call(_send_from_node, a_id, category, timeout=30)
    thread.join(20)
    return result.get("returned", float("nan")) - result.get("arrived", float("nan"))


def _throughput(a: FlameCoreSDK, b_id: str, senders: int, messages: int = THROUGHPUT_MESSAGES) -> float:
    """Acknowledged messages per second with ``senders`` threads sending on one SDK object, each a loop over its
    share of the messages (no per-message hand-off to a pool: only the SDK's work is timed)."""
    failures: list[BaseException] = []

    def sender(count: int) -> None:
        try:
            for _ in range(count):
                acked, _missing = a.send_message([b_id], "throughput", PAYLOAD, timeout=30)
                assert acked == [b_id]
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            failures.append(exc)

    shares = [messages // senders + (i < messages % senders) for i in range(senders)]
    threads = [threading.Thread(target=sender, args=(share,)) for share in shares]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    elapsed = time.perf_counter() - start
    if failures or any(thread.is_alive() for thread in threads):
        raise RuntimeError(f"throughput run failed: {failures[:1] or 'a sender did not finish in 120 s'}")
    return messages / elapsed


def _throughputs(a: FlameCoreSDK, b: ChildProcess, b_id: str, senders: int) -> tuple[float, float]:
    """Median acknowledged messages/s of one sender and of ``senders`` threads, measured alternately after a
    warm-up at that concurrency (the connection pools grow to one connection per concurrent request)."""
    _throughput(a, b_id, senders, messages=100)
    ones, manys = [], []
    for _ in range(THROUGHPUT_ROUNDS):
        ones.append(_throughput(a, b_id, 1))
        manys.append(_throughput(a, b_id, senders))
        b.call(_clear_node)
    return statistics.median(ones), statistics.median(manys)


class _AsyncNode:
    """A third node's ``AsyncFlameCoreSDK`` on a loop thread of its own; its sends are timed on that loop, as the
    bare exchange's are (no thread hand-off per message)."""

    def __init__(self, env: dict[str, str]) -> None:
        self._loop = EventLoopThread("async-node")
        try:
            self._sdk = self._loop.run(AsyncFlameCoreSDK.create(silent=True, env=env), 120)
        except BaseException:
            self._loop.stop()
            raise

    def __enter__(self) -> _AsyncNode:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._loop.run(self._sdk.close(), 60)
        finally:
            self._loop.stop()

    async def _send(self, to: str, category: str) -> None:
        acked, _missing = await self._sdk.send_message([to], category, PAYLOAD, timeout=30)
        assert acked == [to]

    async def _in_a_row(self, to: str, count: int) -> list[float]:
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            await self._send(to, "async-rt")
            samples.append(time.perf_counter() - start)
        return samples

    def round_trips(self, to: str, count: int) -> list[float]:
        """Seconds of each of ``count`` acknowledged sends in a row."""
        return self._loop.run(self._in_a_row(to, count), 120)

    async def _rate(self, to: str, concurrent: int, messages: int = THROUGHPUT_MESSAGES) -> float:
        left = iter(range(messages))

        async def sender() -> None:
            for _ in left:
                await self._send(to, "async-throughput")

        start = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrent)))
        return messages / (time.perf_counter() - start)

    async def _rates(self, to: str, senders: int) -> tuple[float, float]:
        await self._rate(to, senders, 100)  # warm up connections, as for the threads
        return await self._rate(to, 1), await self._rate(to, senders)

    def throughputs(self, to: str, senders: int) -> tuple[float, float]:
        """Acknowledged messages/s of one coroutine sending, then of ``senders``."""
        return self._loop.run(self._rates(to, senders), 300)


def _round_trips(a: FlameCoreSDK, b_id: str, count: int) -> list[float]:
    """Seconds of each of ``count`` acknowledged sends in a row."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        acked, _ = a.send_message([b_id], "rt", PAYLOAD, timeout=10)
        samples.append(time.perf_counter() - start)
        assert acked == [b_id]
    return samples


def main() -> None:
    with BareTwoPost(PAYLOAD) as bare_exchange:
        bare_one, bare_many = bare_exchange.throughputs(THROUGHPUT_MESSAGES, CONCURRENT_SENDERS, THROUGHPUT_ROUNDS)
        bare_gain = bare_many / bare_one
        row(f"bare two-POST round trips/s, 1 / {CONCURRENT_SENDERS} concurrent",
            f"{bare_one:8.0f} / {bare_many:.0f} /s = {bare_gain:.2f} x (the ceiling concurrency reaches here)")
        tiny_source = [{"kind": "fhir", "name": "tiny", "resources": []}]
        with SimulatorProcess(SimConfig(nodes=3, seed=1, node_data=[tiny_source, tiny_source])) as sim:
            a_id, b_id, c_id = sim.node_ids
            a = FlameCoreSDK(env=sim.envs[a_id], silent=True)
            try:
                with ChildProcess(start_node_sdk, sim.envs[b_id], teardown=stop_node_sdk) as b, \
                        _AsyncNode(sim.envs[c_id]) as c:
                    _round_trips(a, b_id, 20)  # warm up connections
                    c.round_trips(b_id, 20)
                    samples, bare = _interleaved(bare_exchange, lambda count: _round_trips(a, b_id, count))
                    row("bare two-POST round trip (interleaved)", percentiles(bare))
                    row("send_message round trip (ack received)", percentiles(samples))
                    bare_p50 = statistics.median(bare)
                    target("send_message with ack, p50", statistics.median(samples) * 1e3, 3 * bare_p50 * 1e3, "ms",
                           at_most=True, basis=f"3 x bare two-POST round trip p50 {bare_p50 * 1e3:.2f} ms")
                    async_samples, async_bare = _interleaved(bare_exchange, lambda count: c.round_trips(b_id, count))
                    async_p50, async_limit = statistics.median(async_samples), 3 * statistics.median(async_bare)
                    row("AsyncFlameCoreSDK send_message round trip", percentiles(async_samples))
                    row("  its p50 against its own interleaved limit",
                        f"{async_p50 * 1e3:.2f} ms / {async_limit * 1e3:.2f} ms = {async_p50 / async_limit:.2f} "
                        f"(informative: no thread hand-off per call)")
                    _throughput_rows(a, b, b_id, c, bare_gain)
                    waits = [_await_latency(a, b, a_id, b_id, f"await-{i}") for i in range(AWAITS)]
                    a.clear_messages("all")
                    row("await_messages latency after arrival", percentiles(waits))
            finally:
                a.close()


def _interleaved(bare_exchange: BareTwoPost, timed: Callable[[int], list[float]]) -> tuple[list[float], list[float]]:
    """``timed`` round trips and bare ones, ``ROUND_TRIPS`` each, in ``BLOCKS`` blocks alternately (both meet the
    same machine state)."""
    samples, bare = [], []
    for _ in range(BLOCKS):
        bare += bare_exchange.round_trips(ROUND_TRIPS // BLOCKS)
        samples += timed(ROUND_TRIPS // BLOCKS)
    return samples, bare


def _throughput_rows(a: FlameCoreSDK, b: ChildProcess, b_id: str, c: _AsyncNode, bare_gain: float) -> None:
    one, many = _throughputs(a, b, b_id, CONCURRENT_SENDERS)
    row(f"acked messages/s, 1 sender (median of {THROUGHPUT_ROUNDS})", f"{one:8.0f} msg/s")
    target(f"acked messages/s, {CONCURRENT_SENDERS} concurrent senders (median)", many, 3 * one, "msg/s",
           at_most=False, basis=f"3 x one sender's {one:.0f} msg/s")
    row(f"gain of {CONCURRENT_SENDERS} senders vs the bare exchange's",
        f"{many / one:.2f} x / {bare_gain:.2f} x = {many / one / bare_gain:.2f} of the bare gain")
    async_one, async_many = c.throughputs(b_id, CONCURRENT_SENDERS)
    b.call(_clear_node)
    row(f"AsyncFlameCoreSDK acked messages/s, 1 / {CONCURRENT_SENDERS} coroutines",
        f"{async_one:8.0f} / {async_many:.0f} msg/s = {async_many / async_one:.2f} x (threads on the sync "
        f"facade: {many / one:.2f} x)")


if __name__ == "__main__":
    main()
