"""``flame-sim run``: the analysis once per node, each in its own process, against an in-process simulator.

Each node process gets the environment a FLAME node gives an analysis container and its own empty working
folder (nodes share no files, as on the platform). The run ends as on a node: the simulated PO removes a node
once its ``/healthz`` reported a final status, and flame-sim then ends that process (SIGTERM, as Kubernetes
does). A process that exits or is killed before that fails its node at once, with the exit code or signal and
its last stderr lines (a real node would restart the container; see ``POService.pod_terminated``).

The run succeeds only if every node reached ``executed``. Whatever the outcome, the final results submitted so
far, the logs and ``run.json`` are written to a new run folder (``run_record``).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from flame_sdk.protocol.status import FINAL_STATUSES, AnalysisStatus
from flame_sdk.sim.data.node_folders import load_node_data
from flame_sdk.sim.run import result_files
from flame_sdk.sim.run.failure_report import (
    SYNCED,
    TracebackFolder,
    failure_report,
    failure_text,
    find_causes,
)
from flame_sdk.sim.run.live_view import NodeRow, RunView, drag_note, make_view, summary_table
from flame_sdk.sim.run.node_process import NodeProcess, analysis_command
from flame_sdk.sim.run.run_record import LOGS, NodeRecord, RunRecord, analysis_name, new_run_folder
from flame_sdk.sim.run.simulation import SimAnalysis, SimConfig, Simulation
from flame_sdk.sim.services.po_lifecycle import PoLimits
from flame_sdk.star import progress

#: After the first node failed, the others get this long to be removed by their PO before flame-sim stops them.
FAILURE_GRACE = 30.0
#: A removed node's process gets this long after SIGTERM before SIGKILL (Kubernetes: 30 s).
KILL_GRACE = 10.0
#: A process that exited is given this long for its PO to remove it (it may have just reported its final status)
#: before its node counts as gone without one (seconds).
GONE_GRACE = 1.0
#: A run without any node output for this long gets a line saying who waits for whom (seconds).
DRAG_NOTICE = 60.0
POLL = 0.2
_STATUS_ORDER = ("starting", "started", "executing", "stuck", "stopping", "executed", "stopped", "failed")
_NODE_ID = re.compile(r"(?<!\()(?:\bnode )?\b([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b")


@dataclass
class RunOptions:
    """How ``flame-sim run`` runs an analysis (the CLI's arguments)."""

    #: Nodes including the aggregator; None: 3, or one more than the ``data`` folder has node folders.
    nodes: int | None = None
    seed: int = 0
    results_dir: Path = Path("results")
    #: Seconds before the whole run is stopped.
    timeout: float = 600.0
    #: Folder with one subfolder of files per data node (``flame_sdk.sim.data.node_folders``).
    data: Path | None = None
    quiet: bool = False
    #: Redraw a table in place (None: when stdout is a terminal).
    terminal: bool | None = None
    #: Seconds the simulated PO waits for ``/healthz`` before it fails a node (the real PO: 10).
    health_timeout: float = PoLimits().health_timeout
    #: Probability of a seeded fault on each request through a node gateway (``flame_sdk.sim.common.faults``).
    faults: float = 0.0
    fault_seed: int = 0
    #: (node name, seconds): SIGKILL that node's process that long after it started.
    kills: Sequence[tuple[str, float]] = ()
    #: The command line, as recorded in ``run.json``.
    arguments: list[str] = field(default_factory=list)


def run_analysis(analysis_ref: str, options: RunOptions | None = None, **fields: object) -> int:
    """Run the analysis on simulated nodes; return the exit code (0 when every node reached ``executed``).

    ``fields`` set ``RunOptions`` fields directly: ``run_analysis("a.py", nodes=3, seed=7)``.
    """
    options = options or RunOptions(**fields)  # type: ignore[arg-type]
    return Run(analysis_ref, options, make_view(options.quiet, options.terminal)).execute()


def _resolve_nodes(options: RunOptions, node_data: list[list[dict[str, object]]] | None) -> int:
    if node_data is None:
        return options.nodes or 3
    if options.nodes is not None and options.nodes != len(node_data) + 1:
        raise ValueError(f"--data {options.data} has {len(node_data)} node folder(s), so the run needs "
                         f"{len(node_data) + 1} nodes (1 aggregator + {len(node_data)} data nodes), not "
                         f"--nodes {options.nodes}; leave out --nodes or add folders")
    return len(node_data) + 1


class Run:
    """One ``flame-sim run``: its simulation, node processes, view and record."""

    def __init__(self, analysis_ref: str, options: RunOptions, view: RunView) -> None:
        self.analysis_ref = analysis_ref
        self.options = options
        self.view = view
        self.command = analysis_command(analysis_ref)
        self.node_data = load_node_data(options.data) if options.data is not None else None
        self.nodes = _resolve_nodes(options, self.node_data)
        self.config = SimConfig(nodes=self.nodes, seed=options.seed, node_data=self.node_data,
                                po_limits=PoLimits(health_timeout=options.health_timeout, retry_interval=POLL),
                                faults=options.faults, fault_seed=options.fault_seed)
        unknown = sorted({name for name, _ in options.kills} - {f"node-{i}" for i in range(self.nodes)})
        if unknown:
            raise ValueError(f"--kill names unknown node(s) {unknown}; nodes are node-0 .. node-{self.nodes - 1}")
        self.processes: dict[str, NodeProcess] = {}
        self.rows: dict[str, NodeRow] = {}
        self.removed: dict[str, tuple[AnalysisStatus, float]] = {}
        self.gone: dict[str, str] = {}  # node id -> how its process ended before a final status
        self.stopped: dict[str, str] = {}  # node id -> why flame-sim stopped it
        self.failed_at: dict[str, float] = {}
        self.names: dict[str, str] = {}
        self.tracebacks: dict[str, TracebackFolder] = {}  # per node and stream
        self._lock = threading.Lock()

    # -- the run --------------------------------------------------------------------------------------
    def execute(self) -> int:
        started = datetime.now()
        folder = new_run_folder(self.options.results_dir, self.analysis_ref, started)
        with Simulation(self.config) as sim, tempfile.TemporaryDirectory(prefix="flame-sim-run-") as scratch:
            analysis = sim.create_analysis(analysis_id=str(uuid.uuid5(
                uuid.NAMESPACE_URL, f"{self.options.seed}:{self.analysis_ref}")))
            self.names = {n: sim.node(n).spec.name for n in analysis.node_ids}
            record = self._record(folder, analysis, started)
            record.write(folder)
            self._announce(analysis, folder)
            analysis.on_removed(self._on_removed)
            timers: list[threading.Timer] = []
            try:
                self._start_processes(analysis, folder, Path(scratch))
                timers = self._schedule_kills()
                self._supervise(analysis)
            except KeyboardInterrupt:
                self._stop_all("interrupted (Ctrl-C)")
                self._finish(analysis, record, folder, started)
                raise
            finally:
                for timer in timers:
                    timer.cancel()
            return self._finish(analysis, record, folder, started)

    def _record(self, folder: Path, analysis: SimAnalysis, started: datetime) -> RunRecord:
        nodes = [NodeRecord(name=self.names[n], node_id=n, role=self._role(analysis, n),
                            log=f"{LOGS}/{self.names[n]}.log") for n in analysis.node_ids]
        return RunRecord(run_id=folder.name, analysis=self.analysis_ref, arguments=self.options.arguments,
                         seed=self.options.seed, analysis_id=analysis.analysis_id,
                         data=str(self.options.data) if self.options.data else None,
                         started_at=started.isoformat(timespec="seconds"), nodes=nodes)

    @staticmethod
    def _role(analysis: SimAnalysis, node_id: str) -> str:
        return "aggregator" if node_id == analysis.aggregator_id else "analyzer"

    def label(self, node_id: str) -> str:
        return f"{self.names[node_id]} ({node_id})"

    def rename(self, text: str) -> str:
        """Put the node's name in front of every node id in ``text``."""
        return _NODE_ID.sub(lambda m: self.label(m.group(1)) if m.group(1) in self.names else m.group(0), text)

    def _announce(self, analysis: SimAnalysis, folder: Path) -> None:
        chaos = f", faults {self.options.faults:g} (fault seed {self.options.fault_seed})" if self.options.faults \
            else ""
        self.view.note(f"run {folder.name}: {self.analysis_ref} on {self.nodes} nodes, seed {self.options.seed}"
                       + (f", data from {self.options.data}" if self.options.data else "") + chaos)
        self.view.note(" | ".join(f"{self.label(n)} {self._role(analysis, n)}" for n in analysis.node_ids))

    def _start_processes(self, analysis: SimAnalysis, folder: Path, scratch: Path) -> None:
        path = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
        for node_id in analysis.node_ids:
            name = self.names[node_id]
            self.rows[node_id] = NodeRow(name, node_id, self._role(analysis, node_id))
            workdir = scratch / name
            workdir.mkdir()
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **analysis.env(node_id)}
            self.processes[node_id] = NodeProcess(name, self.command, env, workdir, folder / LOGS / f"{name}.log",
                                                  self._on_line)

    def _schedule_kills(self) -> list[threading.Timer]:
        """``--kill NODE@SECONDS``: SIGKILL those processes, as a node losing its pod abruptly."""
        by_name = {self.names[n]: n for n in self.processes}

        def kill(node_id: str) -> None:
            process = self.processes[node_id]
            if process.running:
                self.view.note(f"killing {self.label(node_id)} (SIGKILL, --kill)")
                process.proc.kill()

        timers = [threading.Timer(delay, kill, args=(by_name[name],)) for name, delay in self.options.kills]
        for timer in timers:
            timer.daemon = True
            timer.start()
        return timers

    def _on_line(self, name: str, line: str, is_stderr: bool) -> None:
        shown = self.tracebacks.setdefault(f"{name}{is_stderr}", TracebackFolder(f"{LOGS}/{name}.log")).fold(line)
        if shown is not None:
            prefix = "" if shown.startswith(f"[{name}]") else f"[{name}] "
            self.view.node_line(name, prefix + self.rename(shown))

    def _on_removed(self, node_id: str, status: AnalysisStatus) -> None:
        """The node's PO removed the deployment (called on the simulator loop): end its process."""
        with self._lock:
            self.removed[node_id] = (status, time.monotonic())
        process = self.processes.get(node_id)
        if process is not None:
            process.terminate()

    # -- supervision ----------------------------------------------------------------------------------
    def _supervise(self, analysis: SimAnalysis) -> None:
        start = time.monotonic()
        deadline = start + self.options.timeout
        failure_deadline: float | None = None
        drag_notices = 0
        while True:
            now = time.monotonic()
            self._notice_gone_processes(analysis)
            self._update_rows(analysis, now)
            if self.failed_at and failure_deadline is None:
                failure_deadline = now + FAILURE_GRACE
            self._kill_lingering(now)
            if all(n in self.removed for n in analysis.node_ids) and not any(
                    p.running for p in self.processes.values()):
                return
            if now > deadline:
                self._stop_all(f"did not finish within --timeout {self.options.timeout:g} s; stopped by flame-sim")
                return
            if failure_deadline is not None and now > failure_deadline:
                first = self._first_cause(analysis)
                self._stop_all(f"was still running {FAILURE_GRACE:.0f} s after {self.label(first)} failed; "
                               f"stopped by flame-sim")
                return
            quiet_for = now - max(p.last_output_at for p in self.processes.values())
            if quiet_for >= DRAG_NOTICE * (drag_notices + 1):
                drag_notices += 1
                self.view.note(self._drag_text(quiet_for))
            elif quiet_for < DRAG_NOTICE:
                drag_notices = 0
            self.view.refresh(list(self.rows.values()))
            time.sleep(POLL)

    def _first_cause(self, analysis: SimAnalysis) -> str:
        """The node that failed first on its own, else the first that failed: a node that adopted a partner's
        status may be seen failed before the partner it followed (statuses arrive in any order)."""
        order = self._failed_order()
        own = [n for n in order if not any(SYNCED in r["log"] for r in analysis.logs(n))
               and not any(SYNCED in line for line in self.processes[n].stdout_tail)]
        return (own or order)[0]

    def _notice_gone_processes(self, analysis: SimAnalysis) -> None:
        for node_id, process in self.processes.items():
            if process.returncode() is None or node_id in self.removed or node_id in self.gone \
                    or node_id in self.stopped or time.monotonic() - (process.ended_at or 0) < GONE_GRACE:
                continue
            errors = process.last_errors()
            self.gone[node_id] = f"its process {process.ending()} before it reported a final status" + (
                f" (last stderr lines: {errors})" if errors else "")
            analysis.process_gone(node_id, self.gone[node_id])
            self.failed_at.setdefault(node_id, time.monotonic())
            self.view.note(f"{self.label(node_id)}: {self.rename(self.gone[node_id])}")

    def _update_rows(self, analysis: SimAnalysis, now: float) -> None:
        for node_id, row in self.rows.items():
            process = self.processes[node_id]
            status = analysis.po_status(node_id).value
            if analysis.status(node_id) == AnalysisStatus.FAILED.value or status == AnalysisStatus.FAILED.value:
                self.failed_at.setdefault(node_id, now)
            if _STATUS_ORDER.index(status) > _STATUS_ORDER.index(row.status):
                row.status = status
                self.view.status_changed(row)
            row.progress = max(row.progress, analysis.progress(node_id))
            if row.status not in FINAL_STATUSES:
                row.elapsed = now - process.started_at
            row.last_line = self.rename(process.last_line)
            parsed = progress.parse_round(process.last_line)
            if parsed is not None:
                row.round = f"{parsed[0]}/{parsed[1]}"

    def _kill_lingering(self, now: float) -> None:
        with self._lock:
            removed = dict(self.removed)
        for node_id, (_, at) in removed.items():
            process = self.processes.get(node_id)
            if process is not None and process.running and now - at > KILL_GRACE:
                process.proc.kill()

    def _stop_all(self, reason: str) -> None:
        for node_id, process in self.processes.items():
            if process.running:
                self.stopped[node_id] = reason
                process.stop()

    def _drag_text(self, quiet_for: float) -> str:
        active = [n for n in self.processes if n not in self.removed and n not in self.gone]
        return drag_note(quiet_for, {self.label(n): self.rename(self.processes[n].last_line) for n in active})

    # -- the end --------------------------------------------------------------------------------------
    def _finish(self, analysis: SimAnalysis, record: RunRecord, folder: Path, started: datetime) -> int:
        for process in self.processes.values():
            process.stop()
        self._update_rows(analysis, time.monotonic())
        self.view.close()
        saved = self._save_results(analysis, record, folder)
        for node in record.nodes:
            self._complete_node(analysis, node)
            self.rows[node.node_id].status = node.status
        self._rounds(analysis, record)
        ended = datetime.now()
        record.ended_at = ended.isoformat(timespec="seconds")
        record.duration_s = round((ended - started).total_seconds(), 1)
        ok = all(n.status == AnalysisStatus.EXECUTED.value for n in record.nodes)
        if ok and not saved:
            record.failure = "every node executed, but no final result was submitted (call submit_final_result)"
        elif not ok:
            causes = find_causes(record.nodes, self._failed_order())
            record.failure = f"{causes[0].label}: {causes[0].reason}" if causes else "failed"
        record.status = "executed" if ok and saved else "failed"
        record.write(folder)
        self._print_end(analysis, record, folder, saved)
        return 0 if record.status == "executed" else 1

    def _save_results(self, analysis: SimAnalysis, record: RunRecord, folder: Path) -> list[Path]:
        saved = []
        files, record.repeated_uploads = result_files.repeated_uploads(analysis.final_results())
        for name, content in result_files.record_names(analysis_name(self.analysis_ref), files):
            path = folder / name
            path.write_bytes(content)
            saved.append(path)
        record.results = [p.name for p in saved]
        return saved

    def _complete_node(self, analysis: SimAnalysis, node: NodeRecord) -> None:
        node_id = node.node_id
        process, row = self.processes.get(node_id), self.rows.get(node_id)
        removed = self.removed.get(node_id)
        node.status = removed[0].value if removed else AnalysisStatus.FAILED.value
        if process is not None:
            code = process.returncode()
            if removed and code == -signal.SIGTERM:
                node.process = "ended by the PO's removal (SIGTERM)"
            else:
                node.process = None if code is None else process.ending()
        node.duration_s = round(row.elapsed, 1) if row else None
        if node.status == AnalysisStatus.EXECUTED.value:
            return
        if node_id in self.gone:
            node.reason = self.gone[node_id]
            if node.process == "exited with code 0":
                node.reason += "; on a real node Kubernetes would start the analysis again from the top"
        elif node_id in self.stopped and not removed:
            node.reason = self.stopped[node_id]
        else:
            node.reason = analysis.po_reason(node_id) or self._logged_reason(analysis, node_id)
        node.reason = self.rename(node.reason)

    def _logged_reason(self, analysis: SimAnalysis, node_id: str) -> str:
        logged = [(str(r["log_type"]), str(r["log"])) for r in analysis.logs(node_id)]
        return failure_text(logged, self._output(self.processes[node_id].log_path) if node_id in self.processes else [])

    def _rounds(self, analysis: SimAnalysis, record: RunRecord) -> None:
        process = self.processes.get(analysis.aggregator_id)
        lines = list(process.stdout_tail) if process else []
        for line in reversed(lines):
            finished = progress.parse_finished(line)
            if finished is not None:
                record.rounds, record.converged = finished
                return
        row = self.rows.get(analysis.aggregator_id)
        if row is not None and row.round:
            record.rounds = int(row.round.split("/")[0])

    def _print_end(self, analysis: SimAnalysis, record: RunRecord, folder: Path, saved: list[Path]) -> None:
        out = sys.stdout
        out.write(f"flame-sim: run {record.status} in {record.duration_s} s\n")
        out.write("\n".join(summary_table(list(self.rows.values()))) + "\n")
        for path in saved:
            out.write(f"== {path.name} ==\n{result_files.render(path.read_bytes())}\n")
        for name in record.repeated_uploads:
            out.write(f"flame-sim: final result {name} was uploaded again with the same bytes (a retry after a "
                      "lost answer; the hub keeps both copies), saved once\n")
        out.flush()
        if record.status != "executed":
            outputs = {n.node_id: self._output(folder / n.log) for n in record.nodes}
            lines = failure_report(record.nodes, self._failed_order(), outputs, self.rename) \
                or [self.rename(record.failure or "failed")]
            print(f"flame-sim: FAILED: {lines[0]}", file=sys.stderr)
            for line in lines[1:]:
                print(f"  {line}", file=sys.stderr)
            if saved:
                print(f"flame-sim: the final results submitted before the run failed are saved in {folder}",
                      file=sys.stderr)
        print(f"flame-sim: run record, results and logs in {folder}", flush=True)

    def _failed_order(self) -> list[str]:
        return sorted(self.failed_at, key=self.failed_at.__getitem__)

    @staticmethod
    def _output(path: Path) -> list[str]:
        try:
            return path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
