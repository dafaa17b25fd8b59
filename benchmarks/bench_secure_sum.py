"""Cost of the secure sum: sample analyses with ALGO_SECURE_SUM=true against the plain mode, at 3 and 10 nodes.

Both modes run on the same simulator (same nodes and synthetic data, seed 7), alternating, REPEATS times each;
the figure is the ratio of the fastest secure run to the fastest plain run. Logistic regression is iterative
(7 Newton rounds, 60 numbers per node and round); descriptive statistics sends the largest vector (about
5 000 counts per node in a fixed layout) and takes two rounds in secure-sum mode against one in plain mode.
A second line per node count times the arithmetic alone (encode, mask for every peer, add, decode) for the
descriptive statistics' vector, in one process.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from typing import Any

import numpy as np

from benchmarks.bench_algorithms import _algorithm
from benchmarks.report import row
from flame_sdk.secure_sum import KeyPair, apply_masks, decode, encode, total

NODE_COUNTS = (3, 10)
ANALYSES = ("logistic_regression", "descriptive_statistics")
REPEATS = 2


def _timed_runs(nodes: int) -> dict[str, tuple[float, float]]:
    """Per analysis (fastest plain run, fastest secure run) in seconds, on one simulator."""
    from flame_sdk.sim.run.simulation import SimConfig, Simulation
    from flame_sdk.testing import run_local

    sys.stdout = open(os.devnull, "w")  # the node logs
    out: dict[str, tuple[float, float]] = {}
    with Simulation(SimConfig(nodes=nodes, seed=7, status_interval=0.2)) as sim:
        for name in ANALYSES:
            module = _algorithm(name)
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(REPEATS):
                for secure in (False, True):
                    env = {"ALGO_SECURE_SUM": "true"} if secure else {}
                    start = time.perf_counter()
                    run_local(simulation=sim, round_timeout=300, ready_timeout=300, timeout=900,
                              **module.star_arguments(env))
                    times[secure].append(time.perf_counter() - start)
            out[name] = (min(times[False]), min(times[True]))
    return out


def _child(nodes: int, queue: Any) -> None:
    queue.put(_timed_runs(nodes))


def _arithmetic(nodes: int) -> float:
    """Seconds for one round's arithmetic over all data nodes: encode, mask, add, decode."""
    module = _algorithm("descriptive_statistics")
    rng = np.random.default_rng(0)
    gamma = module.sketch_gamma(0.005)
    result = {code: {"n": rng.integers(0, 50, (4, 4)), "sum": rng.normal(100, 10, (4, 4)),
                     "sketch": rng.integers(0, 5, (4, 4, module.sketch_buckets(code, gamma)[1]))}
              for code in module.CODES}
    members = [f"node-{i}" for i in range(1, nodes)]
    keys = {m: KeyPair() for m in members}
    start = time.perf_counter()
    vectors = []
    for own in members:
        layout, vector = encode(result, len(members))
        seeds = {p: keys[own].pair_seed(keys[p].public_bytes, "bench", 1, own, p) for p in members if p != own}
        vectors.append(apply_masks(vector, own, seeds))
    decode(layout, total(vectors))
    return time.perf_counter() - start


def main() -> None:
    context = multiprocessing.get_context("spawn")
    for nodes in NODE_COUNTS:
        queue = context.Queue()
        process = context.Process(target=_child, args=(nodes, queue))
        process.start()
        try:
            figures = queue.get(timeout=1800)
        except Exception:  # noqa: BLE001 - reported, not fatal for the other benchmarks
            row(f"secure sum, {nodes} nodes", f"FAILED (exit code {process.exitcode})")
            continue
        finally:
            process.join(60)
        for name, (plain, secure) in figures.items():
            row(f"{name}, {nodes} nodes: secure / plain", f"{secure / plain:5.2f}x   (secure {secure:6.2f} s, "
                                                         f"plain {plain:6.2f} s, best of {REPEATS})")
        _arithmetic(nodes)  # warm-up: first calls into numpy and cryptography
        seconds = min(_arithmetic(nodes) for _ in range(3))
        row(f"arithmetic only, {nodes - 1} data nodes", f"{seconds * 1e3:7.1f} ms per round for all of them "
                                                         f"(descriptive statistics' vector)")


if __name__ == "__main__":
    main()
