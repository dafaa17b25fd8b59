"""``flame-sim run``: one process per node against an in-process simulator, with live status."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from flame_sdk.protocol.status import AnalysisStatus
from flame_sdk.sim.run import results_view
from flame_sdk.sim.run.simulation import SimAnalysis, SimConfig, Simulation

#: After one node failed, the others get this long to stop on their own before they are terminated.
FAILURE_GRACE = 15.0


def analysis_command(analysis: str) -> list[str]:
    """``python file.py`` for a file, ``python -m module`` for a module name."""
    if Path(analysis).is_file():
        return [sys.executable, "-u", str(Path(analysis).resolve())]
    if analysis.endswith(".py"):
        raise FileNotFoundError(f"analysis file {analysis} does not exist")
    return [sys.executable, "-u", "-m", analysis]


class NodeProcess:
    """One node's analysis process; its output is echoed with the node's name in front."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], out_lock: threading.Lock) -> None:
        self.name = name
        self.tail: deque[str] = deque(maxlen=30)
        self._lock = out_lock
        self.proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.tail.append(line)
            prefix = "" if line.startswith(f"[{self.name}]") else f"[{self.name}] "
            with self._lock:
                print(prefix + line, flush=True)

    def kill(self) -> None:
        """SIGKILL the process (``--kill``), as a node losing its pod abruptly."""
        if self.proc.poll() is None:
            with self._lock:
                print(f"flame-sim: killing {self.name} (SIGKILL)", flush=True)
            self.proc.kill()

    def finish(self, timeout: float) -> int:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reader.join(5)
        return self.proc.returncode

    def error_summary(self) -> str:
        lines = [line for line in self.tail if line.strip()]
        errors = [line for line in lines if "Error" in line or "error" in line.lower()]
        return (errors or lines or [f"exit code {self.proc.returncode}"])[-1]


def _status_table(analysis: SimAnalysis, names: dict[str, str]) -> str:
    rows = [f"{'node':<8} {'role':<10} {'status':<10} progress"]
    for node_id in analysis.node_ids:
        role = "aggregator" if node_id == analysis.aggregator_id else "analyzer"
        progress = analysis.progress(node_id)
        bar = "#" * (progress // 10) + "." * (10 - progress // 10)
        rows.append(f"{names[node_id]:<8} {role:<10} {analysis.status(node_id):<10} {bar} {progress:3d}%")
    return "\n".join(rows)


def run_analysis(analysis_ref: str, nodes: int = 3, seed: int = 0, results_dir: Path = Path("results"),
                 timeout: float = 600.0, refresh: float = 1.0, faults: float = 0.0, fault_seed: int = 0,
                 kills: Sequence[tuple[str, float]] = ()) -> int:
    """Run the analysis on ``nodes`` simulated nodes; return the process exit code (0 on success).

    ``faults``/``fault_seed``: seeded faults on the node gateways (``flame_sdk.sim.common.faults``); ``kills``:
    (node name, seconds) pairs, each node's process SIGKILLed that long after it started."""
    command = analysis_command(analysis_ref)
    out_lock = threading.Lock()
    with Simulation(SimConfig(nodes=nodes, seed=seed, faults=faults, fault_seed=fault_seed)) as sim:
        # The id depends on the seed and the analysis, so runs of different analyses never share a folder.
        analysis = sim.create_analysis(analysis_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{seed}:{analysis_ref}")))
        names = {n: sim.node(n).spec.name for n in analysis.node_ids}
        unknown = sorted({name for name, _ in kills} - set(names.values()))
        if unknown:
            raise ValueError(f"--kill names unknown node(s) {unknown}; nodes are {sorted(names.values())}")
        chaos = f", faults {faults:g} (fault seed {fault_seed})" if faults else ""
        print(f"flame-sim: analysis {analysis.analysis_id} on {nodes} nodes "
              f"(aggregator {names[analysis.aggregator_id]}), seed {seed}{chaos}", flush=True)
        processes = {
            node_id: NodeProcess(names[node_id], command,
                                 {**os.environ, "PYTHONUNBUFFERED": "1", **analysis.env(node_id)}, out_lock)
            for node_id in analysis.node_ids
        }
        by_name = {names[n]: p for n, p in processes.items()}
        timers = [threading.Timer(delay, by_name[name].kill) for name, delay in kills]
        for timer in timers:
            timer.daemon = True
            timer.start()
        try:
            failed = _supervise(analysis, processes, names, out_lock, timeout, refresh)
        finally:
            for timer in timers:
                timer.cancel()
        with out_lock:
            print(_status_table(analysis, names), flush=True)
        if failed:
            node_id, reason = failed
            print(f"flame-sim: FAILED: {names[node_id]} ({node_id}): {reason}", file=sys.stderr, flush=True)
            return 1
        saved = results_view.save(results_dir, analysis.analysis_id, analysis.final_results())
    if not saved:
        print("flame-sim: the analysis finished without submitting a final result", file=sys.stderr)
        return 1
    for path in saved:
        results_view.print_file(path)
    print(f"flame-sim: results written to {saved[0].parent}")
    return 0


def _supervise(analysis: SimAnalysis, processes: dict[str, NodeProcess], names: dict[str, str],
               out_lock: threading.Lock, timeout: float, refresh: float) -> tuple[str, str] | None:
    """Wait for every node; return (node id, reason) of the first failure, if any."""
    deadline = time.monotonic() + timeout
    failure: tuple[str, str] | None = None
    last_table, last_print = "", 0.0
    while any(p.proc.poll() is None for p in processes.values()):
        now = time.monotonic()
        if failure is None:
            failure = _first_failure(analysis, processes)
            if failure is not None:
                deadline = min(deadline, now + FAILURE_GRACE)
        if now > deadline:
            if failure is None:
                silent = [names[n] for n, p in processes.items() if p.proc.poll() is None]
                failure = (next(n for n, p in processes.items() if p.proc.poll() is None),
                           f"timed out after {timeout:.0f} s; still running: {silent}")
            break
        table = _status_table(analysis, names)
        if table != last_table and now - last_print >= refresh:
            with out_lock:
                print(table, flush=True)
            last_table, last_print = table, now
        time.sleep(0.1)
    for process in processes.values():
        process.finish(timeout=5)
    return failure or _first_failure(analysis, processes)


def _first_failure(analysis: SimAnalysis, processes: dict[str, NodeProcess]) -> tuple[str, str] | None:
    for node_id, process in processes.items():
        code = process.proc.poll()
        if code not in (None, 0):
            return node_id, process.error_summary()
    for node_id in analysis.node_ids:
        if analysis.status(node_id) == AnalysisStatus.FAILED:
            errors = [r["log"] for r in analysis.logs(node_id) if r["log_type"] in ("error", "crit", "emerg")]
            return node_id, errors[-1] if errors else "reported status failed"
    return None
