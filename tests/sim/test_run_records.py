"""Run records (``results/<run id>/``), result file names, ``flame-sim results``, the failure report and the
plain view, without running an analysis."""

from __future__ import annotations

import io
import pickle
import sysconfig
from datetime import datetime

import pytest

from flame_sdk.sim.run import results_view
from flame_sdk.sim.run.failure_report import TracebackFolder, analyst_traceback, failure_report
from flame_sdk.sim.run.live_view import NodeRow, PlainView, TerminalView, drag_note, summary_table
from flame_sdk.sim.run.result_files import content_extension, record_names
from flame_sdk.sim.run.run_record import NodeRecord, RunRecord, new_run_folder, run_folders

STDLIB = sysconfig.get_paths()["stdlib"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
A, B, C = ("aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002",
           "cccccccc-0000-4000-8000-000000000003")


def test_a_run_folder_is_never_reused(tmp_path):
    when = datetime(2025, 1, 31, 14, 25, 1)
    first = new_run_folder(tmp_path, "path/to/my_analysis.py", when)
    second = new_run_folder(tmp_path, "path/to/my_analysis.py", when)
    module = new_run_folder(tmp_path, "package.other", when)
    assert (first.name, second.name, module.name) == (
        "20250131-142501-my_analysis", "20250131-142501-my_analysis-2", "20250131-142501-other")
    assert (first / "logs").is_dir() and (second / "logs").is_dir()


def test_result_files_get_names_and_extensions_that_fit(tmp_path):
    assert content_extension(PNG) == ".png"
    assert content_extension(pickle.dumps({"a": 1})) == ".pkl"
    assert content_extension(b'{"a": [1, 2]}') == ".json"
    assert content_extension(b"a,b\n1,2\n") == ".csv"
    assert content_extension(b"Nodes: 3\n") == ".txt"
    assert content_extension(b"\x00\xff\x10") == ".bin"
    generated = [("result_c9b3_261125220738.bin", PNG), ("result_0a1f_261125220738.txt", b"report"),
                 ("total.csv", b"a,b\n1,2\n"), ("total.csv", b"a,b\n3,4\n")]
    assert [name for name, _ in record_names("halta", generated)] == [
        "halta_1.png", "halta_2.txt", "total.csv", "total_2.csv"]
    assert [name for name, _ in record_names("halta", generated[:1])] == ["halta.png"]


def _record(folder, status: str, started: str, failure: str | None = None) -> RunRecord:
    record = RunRecord(run_id=folder.name, analysis=f"/x/{folder.name}.py", arguments=["run", "x.py"], seed=1,
                       analysis_id="id", data=None, started_at=started, ended_at=started, duration_s=1.0,
                       status=status, failure=failure, results=["r.txt"],
                       nodes=[NodeRecord("node-0", A, "aggregator", status), NodeRecord("node-1", B, "analyzer", status)])
    record.write(folder)
    (folder / "r.txt").write_text("hello")
    return record


def test_results_lists_runs_newest_first_and_shows_one(tmp_path, capsys):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    (tmp_path / "not-a-run").mkdir()
    _record(tmp_path / "old", "failed", "2025-01-01T10:00:00", failure="node-1: boom")
    _record(tmp_path / "new", "executed", "2025-02-01T10:00:00")
    assert [p.name for p in run_folders(tmp_path)] == ["new", "old"]
    header, newest, oldest = results_view.listing(tmp_path)
    assert header.split() == ["run", "started", "analysis", "status", "nodes", "results"]
    assert newest.split() == ["new", "2025-02-01", "10:00:00", "new.py", "executed", "2", "1"]
    assert oldest.split()[4] == "failed"
    assert results_view.show(tmp_path, "o", None, None) == 0
    shown = capsys.readouterr().out
    assert "run old: failed" in shown and "failure   node-1: boom" in shown and f"node-1 ({B})" in shown
    assert "== r.txt ==\nhello" in shown and f"{tmp_path / 'old' / 'logs'}/" in shown
    assert results_view.show(tmp_path, "nope", None, None) == 1
    assert "matches 0 recorded runs" in capsys.readouterr().out
    assert RunRecord.read(tmp_path / "new").nodes[1].label == f"node-1 ({B})"


def test_the_failure_report_names_the_cause_once_and_consequences_in_a_line():
    nodes = [NodeRecord("node-0", A, "aggregator", "failed", reason=f"setting status to failed because partner "
                                                                      f"node(s) ['{B}'] are failed"),
             NodeRecord("node-1", B, "analyzer", "failed", reason=f"node {B} failed: KeyError: 'x'",
                        log="logs/node-1.log"),
             NodeRecord("node-2", C, "analyzer", "executed")]
    output = ["[node-1] Starting", "! Traceback (most recent call last):",
              f'!   File "{STDLIB}/runpy.py", line 1, in run', "!     exec(code)",
              '!   File "/home/me/analysis.py", line 12, in analysis_method', '!     return data["x"]',
              '!   File "/somewhere/flame_sdk/star/model.py", line 5, in _run', "!     self.analyze()",
              "! KeyError: 'x'", "[node-1] more"]

    def rename(text: str) -> str:
        return text.replace(f"node {B}", f"node-1 ({B})").replace(f"'{B}'", f"'node-1 ({B})'")

    lines = failure_report(nodes, [B, A], {B: output}, rename)
    assert lines[0] == f"node-1 ({B}) [analyzer] failed: KeyError: 'x'"
    assert lines[1:5] == ["    Traceback (the analysis' own frames):", '      File "/home/me/analysis.py", line 12, '
                          'in analysis_method', '        return data["x"]', "    KeyError: 'x'"]
    assert "2 frame(s) inside flame_sdk and libraries left out" in lines[5] and "logs/node-1.log" in lines[5]
    assert lines[6].startswith(f"node-0 ({A}) [aggregator] failed as a consequence: setting status to failed")
    assert len(lines) == 7
    assert analyst_traceback(["no traceback here"], "log") == []


def test_streamed_tracebacks_are_folded_into_their_last_line():
    folder = TracebackFolder("logs/node-1.log")
    stream = ["[node-1] working", "Traceback (most recent call last):", '  File "a.py", line 1, in f', "    x()",
              "KeyError: 'x'", "", "The above exception was the direct cause of the following exception:", "",
              "Traceback (most recent call last):", '  File "b.py", line 2, in g', "RuntimeError: wrapped",
              "[node-1] after"]
    shown = [line for line in (folder.fold(line) for line in stream) if line is not None]
    assert shown == ["[node-1] working", "KeyError: 'x'  (traceback in logs/node-1.log)",
                     "RuntimeError: wrapped  (traceback in logs/node-1.log)", "[node-1] after"]


def test_the_plain_view_appends_lines_and_prints_a_status_only_when_it_changes():
    out = io.StringIO()
    view = PlainView(out)
    row = NodeRow("node-1", B, "analyzer")
    view.node_line("node-1", "[node-1] hello")
    row.status = "executing"
    view.status_changed(row)
    view.refresh([row] * 50)  # redraws are a terminal's business: nothing appended
    row.status, row.elapsed = "executed", 4.25
    view.status_changed(row)
    view.note("done")
    assert out.getvalue().splitlines() == ["[node-1] hello", f"flame-sim: node-1 ({B}) executing",
                                           f"flame-sim: node-1 ({B}) executed after 4.2 s", "flame-sim: done"]
    quiet = io.StringIO()
    PlainView(quiet, quiet=True).node_line("node-1", "[node-1] hello")
    assert quiet.getvalue() == ""
    row.round, row.progress = "3/10", 37
    table = summary_table([row])
    assert table[0].split() == ["node", "role", "status", "progress", "round", "time"]
    assert table[1].split() == ["node-1", f"({B})", "analyzer", "executed", "37%", "3/10", "4.2", "s"]


@pytest.mark.parametrize("bad", ["", "x" * 3])
def test_find_run_refuses_ambiguous_or_unknown_runs(tmp_path, bad):
    for name in ("xa", "xb"):
        (tmp_path / name).mkdir()
        _record(tmp_path / name, "executed", "2025-01-01T10:00:00")
    with pytest.raises(ValueError, match="recorded runs"):
        results_view.find_run(tmp_path, bad or "x")


def test_the_terminal_view_redraws_one_row_per_node_and_prints_log_lines_verbatim():
    from rich.console import Console

    console = Console(record=True, force_terminal=True, width=120)
    view = TerminalView(console=console)
    rows = [NodeRow("node-0", A, "aggregator", "executing", 10, "2/5", 3.0, "[node-0] round 2/5: waiting"),
            NodeRow("node-1", B, "analyzer", "failed", 5, "", 2.0, "[node-1] [bold]not markup[/bold]")]
    view.node_line("node-1", "[node-1] [red]literal[/red]")
    view.refresh(rows)
    view.close()
    text = console.export_text()
    assert "[node-1] [red]literal[/red]" in text
    assert any(line.split()[:6] == ["node-0", "aggregator", "executing", "10%", "2/5", "3"] for line in
               text.splitlines())
    assert "round 2/5: waiting" in text and "[bold]not markup[/bold]" in text


def test_a_dragging_wait_names_who_waits_for_whom():
    note = drag_note(61, {"node-0 (a)": "[node-0] round 3/10: waiting for the results of 2 analyzer(s)",
                          "node-1 (b)": "[node-1] round 3/10: result sent; waiting for the aggregated result",
                          "node-2 (c)": "[node-2] fitting the model"})
    assert note.startswith("waiting for node-2 (c) for 61 s (node-0 (a), node-1 (b) wait; last line of node-2 (c)")
    assert drag_note(120, {"node-0 (a)": "waiting for x"}).startswith("every node has been waiting for 120 s")
    assert drag_note(60, {"node-0 (a)": "busy"}) == "no output from any node for 60 s; last lines: node-0 (a): 'busy'"
