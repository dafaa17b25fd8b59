"""``flame-sim`` end to end: one process per node, results folder, failing node named, results command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sim

ANALYSES = Path(__file__).parent / "analyses"


def flame_sim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flame_sdk.sim.run.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=240)


@pytest.mark.slow
def test_run_writes_results_and_prints_the_table(tmp_path):
    run = flame_sim("run", str(ANALYSES / "sum_counts.py"), "--nodes", "3", "--seed", "5", "--results",
                    str(tmp_path / "results"), cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "[node-1] FlameCoreSDK ready" in run.stdout
    assert "aggregator executed" in run.stdout and "##########" in run.stdout
    files = list((tmp_path / "results").glob("*/total.csv"))
    assert len(files) == 1 and files[0].read_text() == "nodes,total\n2,42\n"
    assert " 2     42" in run.stdout  # the CSV printed as a table

    listing = flame_sim("results", "--results", str(tmp_path / "results"), cwd=tmp_path)
    assert listing.returncode == 0 and "total.csv" in listing.stdout
    shown = flame_sim("results", files[0].parent.name[:8], "--results", str(tmp_path / "results"), cwd=tmp_path)
    assert shown.returncode == 0 and "total" in shown.stdout and "42" in shown.stdout


@pytest.mark.slow
def test_a_failing_node_fails_the_run_and_is_named(tmp_path):
    run = flame_sim("run", str(ANALYSES / "one_node_fails.py"), "--nodes", "3", "--results", str(tmp_path),
                    "--timeout", "120", cwd=tmp_path)
    assert run.returncode == 1
    assert "FAILED: node-" in run.stderr and "ZeroDivisionError: bad data on this node" in run.stderr


def test_missing_analysis_file_is_reported(tmp_path):
    run = flame_sim("run", "no_such_file.py", cwd=tmp_path)
    assert run.returncode != 0 and "no_such_file.py does not exist" in run.stderr
