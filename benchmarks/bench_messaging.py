"""Message broker figures between two nodes; the simulator runs in a child process, both SDKs in this one.

Targets (issue 14):
* send_message until the receiver's acknowledgement arrived, p50 <= 3 x a bare two-POST round trip
  (``baselines.two_post_round_trips``: message POST, acknowledgement POST back) on loopback;
* 8 concurrent senders (threads sharing one SDK object) >= 3 x the acknowledged messages/s of one sender.
Informative: p99, and the await_messages latency once a message landed in the inbox.
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.baselines import two_post_round_trips
from benchmarks.processes import SimulatorProcess
from benchmarks.report import percentiles, row, target
from flame_sdk import FlameCoreSDK
from flame_sdk.sim.run.simulation import SimConfig

ROUND_TRIPS = 300
THROUGHPUT_MESSAGES = 600
CONCURRENT_SENDERS = 8
AWAITS = 200
PAYLOAD = {"values": list(range(32))}


def _await_latency(a: FlameCoreSDK, b: FlameCoreSDK, a_id: str, b_id: str, category: str) -> float:
    """Seconds from the message landing in b's inbox to b's blocked await_messages returning."""
    result: dict[str, float] = {}

    def receiver() -> None:
        msgs = b.await_messages([a_id], category, timeout=10)[a_id]
        result["returned"] = time.monotonic()
        result["arrived"] = msgs[0].received_at if msgs else float("nan")

    thread = threading.Thread(target=receiver)
    thread.start()
    time.sleep(0.002)  # let the receiver block first
    a.send_message([b_id], category, PAYLOAD, timeout=10)
    thread.join(20)
    return result.get("returned", float("nan")) - result.get("arrived", float("nan"))


def _throughput(a: FlameCoreSDK, b_id: str, senders: int) -> float:
    """Acknowledged messages per second with ``senders`` threads sending on one SDK object."""
    def send(_: int) -> None:
        acked, _ = a.send_message([b_id], "throughput", PAYLOAD, timeout=30)
        assert acked == [b_id]

    with ThreadPoolExecutor(senders) as pool:
        start = time.perf_counter()
        list(pool.map(send, range(THROUGHPUT_MESSAGES)))
        return THROUGHPUT_MESSAGES / (time.perf_counter() - start)


def main() -> None:
    bare = two_post_round_trips(ROUND_TRIPS, PAYLOAD)
    row("bare two-POST round trip (loopback)", percentiles(bare))
    tiny_source = [{"kind": "fhir", "name": "tiny", "resources": []}]
    with SimulatorProcess(SimConfig(nodes=2, seed=1, node_data=[tiny_source])) as sim:
        a_id, b_id = sim.node_ids
        a = FlameCoreSDK(env=sim.envs[a_id], silent=True)
        b = FlameCoreSDK(env=sim.envs[b_id], silent=True)
        try:
            for _ in range(20):  # warm up connections
                a.send_message([b_id], "warmup", PAYLOAD, timeout=10)
            samples = []
            for _ in range(ROUND_TRIPS):
                start = time.perf_counter()
                acked, _ = a.send_message([b_id], "rt", PAYLOAD, timeout=10)
                samples.append(time.perf_counter() - start)
                assert acked == [b_id]
            row("send_message round trip (ack received)", percentiles(samples))
            bare_p50 = statistics.median(bare)
            target("send_message with ack, p50", statistics.median(samples) * 1e3, 3 * bare_p50 * 1e3, "ms",
                   at_most=True, basis=f"3 x bare two-POST round trip p50 {bare_p50 * 1e3:.2f} ms")

            one = _throughput(a, b_id, 1)
            many = _throughput(a, b_id, CONCURRENT_SENDERS)
            b.clear_messages("all")
            row("acked messages/s, 1 sender", f"{one:8.0f} msg/s")
            target(f"acked messages/s, {CONCURRENT_SENDERS} concurrent senders", many, 3 * one, "msg/s",
                   at_most=False, basis=f"3 x one sender's {one:.0f} msg/s")

            waits = [_await_latency(a, b, a_id, b_id, f"await-{i}") for i in range(AWAITS)]
            b.clear_messages("all")
            row("await_messages latency after arrival", percentiles(waits))
        finally:
            a.close()
            b.close()


if __name__ == "__main__":
    main()
