"""``flame-sim run`` end to end: one process per node, a node's lifecycle as on a real node, run records,
the failure report, the plain (non-terminal) view, and ``flame-sim results``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flame_sdk.sim.run.result_files import repeated_uploads

pytestmark = pytest.mark.sim

ANALYSES = Path(__file__).parent / "analyses"


def flame_sim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flame_sdk.sim.run.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=240)


def run_folder(results: Path) -> Path:
    (folder,) = [p for p in results.iterdir() if (p / "run.json").is_file()]
    return folder


@pytest.mark.slow
def test_a_run_is_recorded_and_the_plain_view_appends_lines(tmp_path):
    run = flame_sim("run", str(ANALYSES / "sum_counts.py"), "--nodes", "3", "--seed", "5", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout.splitlines()
    assert "[node-1] FlameCoreSDK ready" in out
    # not a terminal: no table storms, statuses only move forward, each change is printed once
    assert sum(line.startswith("node ") and "status" in line for line in out) == 1
    for node in ("node-0", "node-1", "node-2"):
        changes = [line.split(") ", 1)[1] for line in out if re.match(rf"flame-sim: {node} \(", line)
                   and " aggregator |" not in line]
        # a node that finishes between two of the view's polls (0.2 s) is never seen executing
        assert [c.split()[0] for c in changes] in (["executing", "executed"], ["executed"]), changes
    assert " 2     42" in run.stdout  # the CSV printed once, as a table

    folder = run_folder(tmp_path / "results")
    assert re.fullmatch(r"\d{8}-\d{6}-sum_counts", folder.name)
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "executed" and record["seed"] == 5 and record["analysis"].endswith("sum_counts.py")
    assert record["arguments"][:2] == ["run", str(ANALYSES / "sum_counts.py")]
    assert [(n["name"], n["role"], n["status"]) for n in record["nodes"]] == [
        ("node-0", "aggregator", "executed"), ("node-1", "analyzer", "executed"), ("node-2", "analyzer", "executed")]
    assert all(n["duration_s"] > 0 and n["reason"] is None for n in record["nodes"])
    assert record["results"] == ["total.csv"] and (folder / "total.csv").read_text() == "nodes,total\n2,42\n"
    assert record["started_at"] <= record["ended_at"] and record["failure"] is None
    assert "FlameCoreSDK ready" in (folder / "logs" / "node-1.log").read_text()

    listing = flame_sim("results", cwd=tmp_path)
    assert listing.returncode == 0
    assert re.search(rf"{folder.name}\s+\S+ \S+\s+sum_counts.py\s+executed\s+3\s+1", listing.stdout), listing.stdout
    shown = flame_sim("results", "last", cwd=tmp_path)
    assert shown.returncode == 0 and "node-2 (" in shown.stdout and "== total.csv ==" in shown.stdout
    assert f"{folder.name}/logs/" in shown.stdout


@pytest.mark.slow
def test_analyzers_that_return_right_after_sending_pass(tmp_path):
    """The reference SDK's style: main() returns at once; the node stays up until the aggregator finished it."""
    run = flame_sim("run", str(ANALYSES / "returns_after_sending.py"), "--nodes", "3", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("main() returned before the analysis finished; the node stays up") == 2
    record = json.loads((run_folder(tmp_path / "results") / "run.json").read_text())
    assert [n["status"] for n in record["nodes"]] == ["executed"] * 3
    assert (run_folder(tmp_path / "results") / "total.csv").read_text() == "nodes,total\n2,42\n"


@pytest.mark.slow
def test_a_forgotten_analysis_finished_fails_the_run_saying_so_and_keeps_the_result(tmp_path):
    run = flame_sim("run", str(ANALYSES / "forgets_analysis_finished.py"), "--nodes", "3", cwd=tmp_path)
    assert run.returncode == 1
    assert "FAILED: " in run.stderr and "none called analysis_finished()" in run.stderr, run.stderr
    assert "Call flame.analysis_finished() once the analysis is done" in run.stderr
    folder = run_folder(tmp_path / "results")
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "failed" and "analysis_finished()" in record["failure"]
    assert (folder / "total.csv").read_text() == "nodes,total\n2,42\n"  # submitted before the run failed
    assert "saved in" in run.stderr


@pytest.mark.slow
def test_a_failing_node_fails_the_run_and_is_named(tmp_path):
    """The others adopt its status (status sync) and may be seen failed first; the report names the node that
    failed on its own, with its error, and the others as consequences."""
    run = flame_sim("run", str(ANALYSES / "one_node_fails.py"), "--nodes", "3", cwd=tmp_path)
    assert run.returncode == 1
    record = json.loads((run_folder(tmp_path / "results") / "run.json").read_text())
    failing = min((n for n in record["nodes"] if n["role"] == "analyzer"), key=lambda n: n["node_id"])
    error = "analysis failed with an uncaught exception: ZeroDivisionError: bad data on this node"
    assert f"FAILED: {failing['name']} ({failing['node_id']}) [analyzer] failed: {error}" in run.stderr, run.stderr
    assert record["failure"] == f"{failing['name']} ({failing['node_id']}): {error}"
    for node in record["nodes"]:
        assert node["status"] == "failed"
        if node is not failing:
            assert f"{node['name']} ({node['node_id']}) [{node['role']}] failed as a consequence" in run.stderr


@pytest.mark.slow
def test_a_killed_node_is_named_and_said_to_be_killed(tmp_path):
    run = flame_sim("run", str(ANALYSES / "killed_node.py"), "--nodes", "3", cwd=tmp_path)
    assert run.returncode == 1
    record = json.loads((run_folder(tmp_path / "results") / "run.json").read_text())
    killed = next(n for n in record["nodes"] if "SIGKILL" in (n["reason"] or ""))
    label = f"{killed['name']} ({killed['node_id']})"
    assert f"FAILED: {label} [analyzer] failed: its process was killed by SIGKILL before it reported a final " \
           f"status" in run.stderr, run.stderr
    assert killed["process"].startswith("was killed by SIGKILL")
    others = [n for n in record["nodes"] if n is not killed]
    for node in others:  # named, one line each, as consequences of the killed node
        assert f"{node['name']} ({node['node_id']}) [{node['role']}] failed as a consequence" in run.stderr
        assert node["status"] == "failed"


@pytest.mark.slow
def test_the_failure_report_shows_the_analysts_traceback_once(tmp_path):
    run = flame_sim("run", str(ANALYSES / "star_key_error.py"), "--nodes", "3", cwd=tmp_path)
    assert run.returncode == 1
    report = run.stderr
    assert report.count("Traceback") == 1, report
    assert re.search(r'star_key_error.py", line \d+, in analysis_method', report) and "KeyError: 'missing'" in report
    assert "inside flame_sdk and libraries left out" in report
    first, *rest = [line for line in report.splitlines() if " failed" in line and "[" in line]
    assert first.startswith("flame-sim: FAILED: node-") and "KeyError: 'missing'" in first
    assert len(rest) == 2 and all(re.match(r"  node-\d \([0-9a-f-]{36}\) \[", line) for line in rest), rest
    # the streamed logs fold each traceback into its last line
    assert "Traceback (most recent call last)" not in run.stdout
    assert "KeyError: 'missing'  (traceback in logs/node-" in run.stdout


@pytest.mark.slow
def test_run_serves_each_node_its_own_data_folder(tmp_path):
    data = tmp_path / "data"
    (data / "a_site").mkdir(parents=True)
    (data / "b_site" / "fhir").mkdir(parents=True)
    (data / "a_site" / "one.csv").write_text("x,y\n1,2\n3,4\n")
    (data / "b_site" / "b.csv").write_text("x\n1\n2\n3\n")
    patients = [{"resourceType": "Patient", "id": f"p{i}"} for i in range(4)]
    (data / "b_site" / "patients.json").write_text(json.dumps(
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": p} for p in patients]}))
    (data / "b_site" / "fhir" / "more.ndjson").write_text(
        "\n".join(json.dumps({"resourceType": "Patient", "id": f"q{i}"}) for i in range(2)))
    run = flame_sim("run", str(ANALYSES / "count_rows.py"), "--data", str(data), "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "[node-1]" not in run.stdout  # --quiet: node logs only in the run's logs folder
    folder = run_folder(tmp_path / "results")
    rows = (folder / "counts.csv").read_text().splitlines()[1:]
    # a_site -> node-1 (2 CSV rows, no FHIR); b_site -> node-2 (3 rows; 4 patients from the bundle, 2 from ndjson)
    assert sorted(tuple(r.split(",")[1:]) for r in rows) == [("2", "0"), ("3", "6")]
    assert json.loads((folder / "run.json").read_text())["data"] == str(data)


def test_a_data_folder_that_does_not_fit_the_node_count_is_refused(tmp_path):
    (tmp_path / "data" / "one").mkdir(parents=True)
    (tmp_path / "data" / "one" / "x.csv").write_text("a\n1\n")
    run = flame_sim("run", str(ANALYSES / "count_rows.py"), "--data", "data", "--nodes", "4", cwd=tmp_path)
    assert run.returncode == 2 and "has 1 node folder(s), so the run needs 2 nodes" in run.stderr


def test_missing_analysis_file_is_reported(tmp_path):
    run = flame_sim("run", "no_such_file.py", cwd=tmp_path)
    assert run.returncode != 0 and "no_such_file.py does not exist" in run.stderr


def test_results_without_runs_says_what_to_do(tmp_path):
    listing = flame_sim("results", cwd=tmp_path)
    assert listing.returncode == 1 and "run `flame-sim run ...` first" in listing.stdout


@pytest.mark.slow
def test_a_run_under_faults_gives_the_result_files_of_the_run_without(tmp_path):
    """Issue 11: ``--faults 0.1 --fault-seed 7`` changes nothing in the results folder (a final upload retried
    after a lost answer reaches the hub twice, as on a real node, and the run record keeps it once)."""
    odds_ratio = str(Path(__file__).parents[2] / "algorithms" / "odds_ratio.py")
    files = {}
    for label, extra in (("plain", ()), ("faults", ("--faults", "0.1", "--fault-seed", "7"))):
        run = flame_sim("run", odds_ratio, "--nodes", "3", "--seed", "7", "--quiet", *extra,
                        "--results", str(tmp_path / label), cwd=tmp_path)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        folder = run_folder(tmp_path / label)
        files[label] = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "run.json"}
    assert files["faults"] == files["plain"] and files["plain"]


def test_repeated_uploads_of_the_same_bytes_are_kept_once():
    kept, repeats = repeated_uploads([("a.csv", b"1"), ("a.csv", b"1"), ("a.csv", b"2"), ("b.txt", b"1")])
    assert kept == [("a.csv", b"1"), ("a.csv", b"2"), ("b.txt", b"1")] and repeats == ["a.csv"]
