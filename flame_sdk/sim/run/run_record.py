"""Run records: every ``flame-sim run`` gets its own folder ``<results>/<run id>/``, never overwritten.

    <run id>/run.json          what ran, how, and how it ended (``RunRecord``)
    <run id>/logs/node-N.log   each node's full console output (stderr lines start with ``! ``)
    <run id>/<result files>    the final results (``result_files.record_names``)

The run id is the start time and the analysis name (``20250131-142501-my_analysis``); a second run in the same
second gets ``-2``. ``run.json`` is written when the run starts (status ``running``) and again when it ends.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"
LOGS = "logs"
RUNNING = "running"


def analysis_name(analysis_ref: str) -> str:
    """``my_analysis`` for ``path/my_analysis.py`` or ``package.my_analysis``."""
    return Path(analysis_ref).stem if analysis_ref.endswith(".py") else analysis_ref.rsplit(".", 1)[-1]


def new_run_folder(results_dir: Path, analysis_ref: str, started: datetime) -> Path:
    """Create and return a run folder that did not exist before (with its ``logs`` folder)."""
    base = f"{started:%Y%m%d-%H%M%S}-{analysis_name(analysis_ref)}"
    number = 1
    while True:
        folder = results_dir / (base if number == 1 else f"{base}-{number}")
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            number += 1
            continue
        (folder / LOGS).mkdir()
        return folder


@dataclass
class NodeRecord:
    """One node of a run."""

    name: str
    node_id: str
    role: str
    status: str = RUNNING
    #: How the process ended (``exited with code 0``, ``was killed by SIGKILL``).
    process: str | None = None
    duration_s: float | None = None
    #: Why the node failed, in one line (None when it did not).
    reason: str | None = None
    log: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.node_id})"


@dataclass
class RunRecord:
    """Everything ``run.json`` says about a run."""

    run_id: str
    analysis: str
    arguments: list[str]
    seed: int
    analysis_id: str
    data: str | None
    started_at: str
    nodes: list[NodeRecord] = field(default_factory=list)
    ended_at: str | None = None
    duration_s: float | None = None
    status: str = RUNNING
    rounds: int | None = None
    converged: bool | None = None
    failure: str | None = None
    results: list[str] = field(default_factory=list)
    #: Final results uploaded again with the same name and bytes (a retry after a lost answer), kept once.
    repeated_uploads: list[str] = field(default_factory=list)

    def write(self, folder: Path) -> None:
        (folder / RUN_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> RunRecord:
        raw: dict[str, Any] = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        nodes = [NodeRecord(**node) for node in raw.pop("nodes", [])]
        return cls(nodes=nodes, **raw)


def run_folders(results_dir: Path) -> list[Path]:
    """Folders of ``results_dir`` that hold a run record, newest first."""
    if not results_dir.is_dir():
        return []
    folders = [p for p in results_dir.iterdir() if (p / RUN_FILE).is_file()]
    return sorted(folders, key=lambda p: (RunRecord.read(p).started_at, p.name), reverse=True)
