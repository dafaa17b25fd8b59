"""Child processes for the benchmarks, with bounded waits: nobody ever waits on a dead child.

* ``ChildProcess``: state set up in a child process, and module-level functions run on it there (an SDK of
  another node: ``start_node_sdk``/``stop_node_sdk``, a bare HTTP receiver);
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

from flame_sdk import FlameCoreSDK
from flame_sdk.sim.run.simulation import SimConfig

_CONTEXT = multiprocessing.get_context("spawn")
POLL = 0.2


class ChildError(RuntimeError):
    """A child process failed, died or did not answer in time."""

    def summary(self) -> str:
        """What happened, in one line: the first line, and the exception the child raised (the traceback's last
        line) when there is one."""
        lines = [line.strip() for line in str(self).splitlines() if line.strip()]
        return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"


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


def _worker_main(conn: Connection, setup: Callable[..., tuple[Any, Any]], teardown: Callable[[Any], None] | None,
                 args: tuple[Any, ...]) -> None:
    try:
        state, info = setup(*args)
    except BaseException:  # noqa: BLE001 - reported to the parent
        conn.send(("error", traceback.format_exc()))
        return
    try:
        conn.send(("ok", info))
        while True:
            try:
                request = conn.recv()  # EOFError once the parent is gone
            except EOFError:
                return
            if request is None:
                conn.send(("ok", None))
                return
            fn, call_args = request
            try:
                conn.send(("ok", fn(state, *call_args)))
            except BaseException:  # noqa: BLE001 - reported to the parent
                conn.send(("error", traceback.format_exc()))
    finally:
        if teardown is not None:
            teardown(state)


def start_node_sdk(env: dict[str, str]) -> tuple[FlameCoreSDK, str]:
    """A ``ChildProcess`` setup: one node's SDK in the child (it acknowledges messages on its own); info: its id."""
    sdk = FlameCoreSDK(env=env, silent=True)
    return sdk, sdk.get_id()


def stop_node_sdk(sdk: FlameCoreSDK) -> None:
    """The teardown of ``start_node_sdk``."""
    sdk.close()


class ChildProcess:
    """``with ChildProcess(setup, *args) as child``: ``setup(*args)`` runs in a fresh (spawned) process and returns
    ``(state, info)``; ``child.info`` is ``info``, ``child.call(fn, *args)`` runs ``fn(state, *args)`` there and
    ``teardown(state)`` ends it. Functions must be module-level (they are pickled by name)."""

    def __init__(self, setup: Callable[..., tuple[Any, Any]], *args: Any,
                 teardown: Callable[[Any], None] | None = None, start_timeout: float = 300.0) -> None:
        self._setup, self._args, self._teardown = setup, args, teardown
        self.start_timeout = start_timeout
        self.info: Any = None
        self._conn: Connection | None = None
        self._process: Any = None

    def __enter__(self) -> ChildProcess:
        self._conn, child_end = _CONTEXT.Pipe()
        self._process = _CONTEXT.Process(target=_worker_main, args=(child_end, self._setup, self._teardown, self._args),
                                         daemon=True)
        self._process.start()
        child_end.close()
        try:
            self.info = _receive(self._conn, self._process, self.start_timeout, f"{self._setup.__name__} start")
        except BaseException:
            self.__exit__()
            raise
        return self

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 600.0) -> Any:
        """``fn(state, *args)`` in the child; its result."""
        assert self._conn is not None
        self._conn.send((fn, args))
        return _receive(self._conn, self._process, timeout, f"{fn.__name__} in the child")

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
                _receive(self._conn, self._process, 60, "child stop")
            except (ChildError, OSError):
                pass
            self._conn.close()
            self._conn = None
        if self._process is not None:
            _end(self._process)
            self._process = None


def _start_simulation(config: SimConfig) -> tuple[Any, dict[str, Any]]:
    from flame_sdk.sim.run.simulation import Simulation

    sim = Simulation(config).start()
    try:
        analysis = sim.create_analysis()
    except BaseException:
        sim.stop()
        raise
    info = {"node_ids": analysis.node_ids, "aggregator": analysis.aggregator_id,
            "envs": {n: analysis.env(n) for n in analysis.node_ids}}
    return (sim, analysis), info


def _stop_simulation(state: Any) -> None:
    state[0].stop()


def _in_simulation(state: Any, fn: Callable[..., Any], *args: Any) -> Any:
    sim, analysis = state
    return fn(sim, analysis, *args)


class SimulatorProcess(ChildProcess):
    """``with SimulatorProcess(SimConfig(...)) as sim: sim.envs[node_id]``; the simulator runs in a child process
    with one analysis deployed. ``call(fn, *args)`` runs ``fn(sim, analysis, *args)`` there."""

    def __init__(self, config: SimConfig, start_timeout: float = 300.0) -> None:
        super().__init__(_start_simulation, config, teardown=_stop_simulation, start_timeout=start_timeout)

    def __enter__(self) -> SimulatorProcess:
        super().__enter__()
        return self

    @property
    def envs(self) -> dict[str, dict[str, str]]:
        return dict(self.info["envs"])

    @property
    def node_ids(self) -> list[str]:
        return list(self.info["node_ids"])

    @property
    def aggregator(self) -> str:
        return str(self.info["aggregator"])

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 600.0) -> Any:
        return super().call(_in_simulation, fn, *args, timeout=timeout)


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
