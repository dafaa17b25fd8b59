"""Child processes for the benchmarks, with bounded waits: nobody ever waits on a dead child.

* ``SimulatorProcess``: a ``Simulation`` with one analysis in a child process, so the SDK side's time and
  memory are its own (the services get their own interpreter and core, as on a node). The parent gets each
  node's analysis environment, and can run module-level functions ``fn(sim, analysis, *args)`` in the child.
* ``run_child``: one function in a fresh process; its return value, or an error after a deadline or when the
  child died.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from flame_sdk.sim.run.simulation import SimConfig

_CONTEXT = multiprocessing.get_context("spawn")
POLL = 0.2


class ChildError(RuntimeError):
    """A child process failed, died or did not answer in time."""


def _receive(conn: Connection, process: Any, timeout: float, what: str) -> Any:
    """The next message from a child; ChildError when it died or the deadline passed first."""
    deadline = time.monotonic() + timeout
    while not conn.poll(POLL):
        if not process.is_alive():
            if conn.poll(0):  # it answered just before it ended
                break
            raise ChildError(f"{what}: the child process died (exit code {process.exitcode})")
        if time.monotonic() > deadline:
            raise ChildError(f"{what}: no answer within {timeout:.0f} s")
    try:
        kind, value = conn.recv()
    except EOFError:
        process.join(5)
        raise ChildError(f"{what}: the child process died without an answer (exit code {process.exitcode})") \
            from None
    if kind == "error":
        raise ChildError(f"{what} failed in the child:\n{value}")
    return value


def _end(process: Any) -> None:
    process.join(10)
    if process.is_alive():
        process.terminate()
        process.join(10)
    if process.is_alive():
        process.kill()
        process.join(10)


def _simulator_main(conn: Connection, config: SimConfig) -> None:
    from flame_sdk.sim.run.simulation import Simulation

    try:
        sim = Simulation(config).start()
    except BaseException:  # noqa: BLE001 - reported to the parent
        conn.send(("error", traceback.format_exc()))
        return
    try:
        analysis = sim.create_analysis()
        conn.send(("ok", {"node_ids": analysis.node_ids, "aggregator": analysis.aggregator_id,
                          "envs": {n: analysis.env(n) for n in analysis.node_ids}}))
        while True:
            try:
                request = conn.recv()  # EOFError once the parent is gone
            except EOFError:
                return
            if request is None:
                conn.send(("ok", None))
                return
            fn, args = request
            try:
                conn.send(("ok", fn(sim, analysis, *args)))
            except BaseException:  # noqa: BLE001 - reported to the parent
                conn.send(("error", traceback.format_exc()))
    finally:
        sim.stop()


class SimulatorProcess:
    """``with SimulatorProcess(SimConfig(...)) as sim: sim.envs[node_id]``; the simulator runs in a child."""

    def __init__(self, config: SimConfig, start_timeout: float = 300.0) -> None:
        self.config = config
        self.start_timeout = start_timeout
        self.envs: dict[str, dict[str, str]] = {}
        self.node_ids: list[str] = []
        self.aggregator = ""
        self._conn: Connection | None = None
        self._process: Any = None

    def __enter__(self) -> SimulatorProcess:
        self._conn, child_end = _CONTEXT.Pipe()
        self._process = _CONTEXT.Process(target=_simulator_main, args=(child_end, self.config), daemon=True)
        self._process.start()
        child_end.close()
        try:
            started = _receive(self._conn, self._process, self.start_timeout, "simulator start")
        except BaseException:
            self.__exit__()
            raise
        self.envs, self.node_ids, self.aggregator = started["envs"], started["node_ids"], started["aggregator"]
        return self

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 600.0) -> Any:
        """Run ``fn(sim, analysis, *args)`` in the child (a module-level function) and return its result."""
        assert self._conn is not None
        self._conn.send((fn, args))
        return _receive(self._conn, self._process, timeout, f"{fn.__name__} in the simulator")

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
                _receive(self._conn, self._process, 60, "simulator stop")
            except (ChildError, OSError):
                pass
            self._conn.close()
            self._conn = None
        if self._process is not None:
            _end(self._process)
            self._process = None


def _child_main(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException:  # noqa: BLE001 - reported to the parent
        conn.send(("error", traceback.format_exc()))


def run_child(fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
    """``fn(*args)`` in a fresh (spawned) process; its result, or ChildError when it failed, died or hung."""
    conn, child_end = _CONTEXT.Pipe()
    process = _CONTEXT.Process(target=_child_main, args=(child_end, fn, args), daemon=False)
    process.start()
    child_end.close()
    try:
        return _receive(conn, process, timeout, fn.__name__)
    finally:
        conn.close()
        _end(process)


def status_kib(field: str, pid: int | None = None) -> int:
    """A field of /proc/<pid>/status in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid or os.getpid()}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def reset_peak_rss() -> None:
    """Reset this process' peak RSS (VmHWM) to its current RSS."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
