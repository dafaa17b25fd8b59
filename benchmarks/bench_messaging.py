"""Message broker figures between two nodes of the simulator (real HTTP on loopback).

* round trip: send_message until the receiver's acknowledgement arrived (p50/p99);
* throughput: acknowledged messages per second, one sender, sequential and 8 concurrent senders;
* await latency: from the message landing in the receiver's inbox to await_messages returning.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.report import percentiles, row
from flame_sdk import FlameCoreSDK
from flame_sdk.sim.run.simulation import SimConfig, Simulation

ROUND_TRIPS = 300
THROUGHPUT_MESSAGES = 600
AWAITS = 200


def _await_latency(a: FlameCoreSDK, b: FlameCoreSDK, a_id: str, b_id: str, category: str, payload: dict) -> float:
    """Seconds from the message landing in b's inbox to b's blocked await_messages returning."""
    result: dict[str, float] = {}

    def receiver() -> None:
        msgs = b.await_messages([a_id], category, timeout=10)[a_id]
        result["returned"] = time.monotonic()
        result["arrived"] = msgs[0].received_at

    thread = threading.Thread(target=receiver)
    thread.start()
    time.sleep(0.002)  # let the receiver block first
    a.send_message([b_id], category, payload, timeout=10)
    thread.join(10)
    return result["returned"] - result["arrived"]


def main() -> None:
    tiny_source = [{"kind": "fhir", "name": "tiny", "resources": []}]
    with Simulation(SimConfig(nodes=2, seed=1, node_data=[tiny_source])) as sim:
        analysis = sim.create_analysis()
        a_id, b_id = analysis.node_ids
        a = FlameCoreSDK(env=analysis.env(a_id), silent=True)
        b = FlameCoreSDK(env=analysis.env(b_id), silent=True)
        try:
            payload = {"values": list(range(32))}
            for _ in range(20):  # warm up connections
                a.send_message([b_id], "warmup", payload, timeout=10)
            samples = []
            for _ in range(ROUND_TRIPS):
                start = time.perf_counter()
                acked, _ = a.send_message([b_id], "rt", payload, timeout=10)
                samples.append(time.perf_counter() - start)
                assert acked == [b_id]
            row("send_message round trip (ack received)", percentiles(samples))

            start = time.perf_counter()
            for _ in range(THROUGHPUT_MESSAGES):
                a.send_message([b_id], "tp", payload, timeout=10)
            elapsed = time.perf_counter() - start
            row("acked messages/s, 1 sender", f"{THROUGHPUT_MESSAGES / elapsed:8.0f} msg/s")

            with ThreadPoolExecutor(8) as pool:
                start = time.perf_counter()
                list(pool.map(lambda _: a.send_message([b_id], "tp8", payload, timeout=10),
                              range(THROUGHPUT_MESSAGES)))
                elapsed = time.perf_counter() - start
            row("acked messages/s, 8 concurrent senders", f"{THROUGHPUT_MESSAGES / elapsed:8.0f} msg/s")
            b.clear_messages("all")

            waits = [_await_latency(a, b, a_id, b_id, f"await-{i}", payload) for i in range(AWAITS)]
            row("await_messages latency after arrival", percentiles(waits))
        finally:
            a.close()
            b.close()


if __name__ == "__main__":
    main()
