"""``flame-sim results``: the recorded runs, newest first; one run with its nodes, results and logs."""

from __future__ import annotations

import shutil
from pathlib import Path

from flame_sdk.sim.run.live_view import text_table
from flame_sdk.sim.run.result_files import render
from flame_sdk.sim.run.run_record import LOGS, RUN_FILE, RunRecord, run_folders


def listing(results_dir: Path) -> list[str]:
    """One line per run, newest first: run id, start, analysis, status, nodes, result files."""
    rows = [("run", "started", "analysis", "status", "nodes", "results")]
    for folder in run_folders(results_dir):
        record = RunRecord.read(folder)
        rows.append((record.run_id, record.started_at.replace("T", " "), Path(record.analysis).name, record.status,
                     str(len(record.nodes)), str(len(record.results))))
    return text_table(rows)


def find_run(results_dir: Path, run: str) -> Path:
    """The run folder for a run id, a unique prefix of one, or ``last``; ValueError naming the choices."""
    folders = run_folders(results_dir)
    if run == "last" and folders:
        return folders[0]
    matches = [f for f in folders if f.name == run] or [f for f in folders if f.name.startswith(run)]
    if len(matches) != 1:
        known = ", ".join(f.name for f in folders[:10]) or "none"
        raise ValueError(f"run {run!r} matches {len(matches)} recorded runs in {results_dir} (newest: {known})")
    return matches[0]


def describe(folder: Path) -> list[str]:
    """A run's record as text: what ran, how it ended, its nodes, results and logs."""
    record = RunRecord.read(folder)
    lines = [f"run {record.run_id}: {record.status}",
             f"  analysis  {record.analysis}  (analysis id {record.analysis_id})",
             f"  command   flame-sim {' '.join(record.arguments) or '(called from Python)'}",
             f"  seed      {record.seed}" + (f", data from {record.data}" if record.data else ""),
             f"  time      {record.started_at} .. {record.ended_at or '?'} ({record.duration_s} s)"]
    if record.rounds is not None:
        converged = "" if record.converged is None else (", converged" if record.converged else ", not converged")
        lines.append(f"  rounds    {record.rounds}{converged}")
    if record.failure:
        lines.append(f"  failure   {record.failure}")
    rows = [("node", "role", "status", "time", "process", "reason")]
    rows += [(n.label, n.role, n.status, f"{n.duration_s} s", n.process or "-", n.reason or "") for n in record.nodes]
    lines += ["", *text_table(rows), ""]
    lines.append("results   " + (", ".join(record.results) if record.results else "(none)"))
    lines.append(f"logs      {folder / LOGS}/")
    return lines


def show(results_dir: Path, run: str | None, file: str | None, out: str | None) -> int:
    """The ``flame-sim results`` command."""
    if run is None:
        if not run_folders(results_dir):
            print(f"no recorded runs in {results_dir}/ (looked for */{RUN_FILE}); run `flame-sim run ...` first")
            return 1
        print("\n".join(listing(results_dir)))
        return 0
    try:
        folder = find_run(results_dir, run)
    except ValueError as exc:
        print(exc)
        return 1
    record = RunRecord.read(folder)
    chosen = [name for name in record.results if file is None or name == file]
    if file is not None and not chosen:
        print(f"no result {file!r} in run {record.run_id}; its results: {record.results}")
        return 1
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        for name in chosen:
            print(shutil.copy2(folder / name, Path(out) / name))
        return 0
    if file is None:
        print("\n".join(describe(folder)))
    for name in chosen:
        print(f"== {name} ==")
        print(render((folder / name).read_bytes()))
    return 0
