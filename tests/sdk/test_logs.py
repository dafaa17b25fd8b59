"""FlameLogger: message formatting, levels, halt/append, queued streaming, status and progress rules."""

from __future__ import annotations

import io

import pytest

from flame_sdk.logs import HISTORY_LIMIT, FlameLogger, format_message
from flame_sdk.protocol.status import AnalysisStatus
from flame_sdk.run_state import RunState
from flame_sdk.testing import FakeFlameSDK


def test_format_message_variants():
    assert format_message("a", end="!") == "a!"
    assert format_message(b"caf\xc3\xa9") == "café"
    assert format_message(["x", 1, 2.5], sep=",") == "x,1,2.5"
    with pytest.raises(TypeError, match="str, bytes or an iterable"):
        format_message(42)


def test_records_are_queued_until_a_sink_is_attached_and_filtered_by_level():
    out = io.StringIO()
    logger = FlameLogger(stream_level=25, label="n1", out=out)
    logger.log("quiet", "info")
    logger.log("loud", "warn")
    sent = []
    logger.attach_sink(sent.append)
    logger.log("louder", "crit")
    assert [(r.log, r.log_type) for r in sent] == [("loud", "warn"), ("louder", "crit")]
    assert "[n1] WARN: loud" in out.getvalue() and "quiet" not in out.getvalue()


def test_halt_then_append_submits_one_line_and_prints_one_line():
    out = io.StringIO()
    logger = FlameLogger(out=out)
    sent = []
    logger.attach_sink(sent.append)
    logger.log("Connecting...", halt_submission=True)
    logger.log("success", append=True)
    assert [r.log for r in sent] == ["Connecting...success"]
    assert out.getvalue() == "Connecting...success\n"


def test_silent_prints_nothing_but_still_streams():
    out = io.StringIO()
    logger = FlameLogger(silent=True, out=out)
    sent = []
    logger.attach_sink(sent.append)
    logger.log("x")
    assert out.getvalue() == "" and len(sent) == 1


def test_final_status_is_final_and_progress_is_monotone():
    state = RunState()
    assert state.set_status(AnalysisStatus.EXECUTING)
    assert state.set_status("failed")
    assert not state.set_status("executing") and state.status == AnalysisStatus.FAILED
    problems = [state.set_progress(value) for value in (10.9, 5, 101, "a")]
    assert state.progress == 10
    assert problems[0] is None and "only increases" in problems[1] and None not in problems[1:]


def test_records_carry_the_run_states_status_and_progress():
    state = RunState()
    logger = FlameLogger(silent=True, state=state)
    logger.log("before")
    state.set_status(AnalysisStatus.EXECUTING)
    state.set_progress(40)
    logger.log("after")
    assert [(r.status, r.progress) for r in logger.history] == [("starting", 0), ("executing", 40)]


def test_loggers_sharing_a_console_never_run_lines_together():
    out = io.StringIO()
    one, two = FlameLogger(label="node-1", out=out), FlameLogger(label="node-2", out=out)
    one.log("Connecting...", halt_submission=True)
    two.log("Starting")
    two.log("Waiting...", halt_submission=True)
    one.log("success", append=True)
    two.log("done", append=True)
    one.log("Again...", halt_submission=True)
    one.log("ok", append=True)
    assert out.getvalue().splitlines() == [
        "[node-1] Connecting...", "[node-2] Starting", "[node-2] Waiting...", "[node-1] Connecting...success",
        "[node-2] Waiting...done", "[node-1] Again...ok"]
    assert [r.log for r in one.history] == ["Connecting...success", "Again...ok"]


def test_history_keeps_the_latest_records_only_while_streaming_keeps_them_all():
    logger = FlameLogger(silent=True, stream_level=10, history_limit=3)
    sent = []
    logger.attach_sink(sent.append)
    for i in range(5):
        logger.log(f"line {i}", "debug")
    assert [r.log for r in logger.history] == ["line 2", "line 3", "line 4"]
    assert [r.log for r in sent] == [f"line {i}" for i in range(5)]


def test_the_default_history_is_bounded_and_the_fake_sdk_keeps_every_log():
    assert FlameLogger(silent=True).history.maxlen == HISTORY_LIMIT
    fake = FakeFlameSDK(silent=True)
    for i in range(HISTORY_LIMIT + 5):
        fake.flame_log(f"line {i}")
    assert len(fake.logs) >= HISTORY_LIMIT + 5 and fake.logs[-1].log == f"line {HISTORY_LIMIT + 4}"
