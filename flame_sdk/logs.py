"""flame_log: console output and streaming to the PO with levels and halt/append; status and progress come
from the run state."""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from flame_sdk.protocol.po_api import LOG_LEVELS
from flame_sdk.run_state import RunState


@dataclass(frozen=True)
class LogRecord:
    """One log line as streamed to the PO service."""

    log: str
    log_type: str
    status: str
    progress: int


LogSink = Callable[[LogRecord], None]

#: A logger keeps this many of its latest records in ``history`` (every received message adds a debug record,
#: so an unbounded history grows with the run: about 27 MB per 100,000 messages).
HISTORY_LIMIT = 10_000

# Loggers of one process share its console (several SDK objects in tests and local runs): a line one logger
# leaves open (``halt_submission``) is closed before another writes, and its continuation is then printed
# as a whole line of its own.
_console_lock = threading.Lock()
_open_lines: dict[int, int] = {}  # id(stream) -> id(logger) whose line on it is open


def format_message(msg: str | bytes | Iterable[Any], sep: str = "", end: str = "") -> str:
    """Turn ``msg`` (str, bytes, or an iterable joined with ``sep``) into one log text ending with ``end``."""
    if isinstance(msg, bytes):
        text = msg.decode("utf-8", errors="replace")
    elif isinstance(msg, str):
        text = msg
    elif isinstance(msg, Iterable):
        text = sep.join(str(part) for part in msg)
    else:
        raise TypeError(f"flame_log accepts str, bytes or an iterable of parts, not {type(msg).__name__}")
    return text + end


class FlameLogger:
    """Prints logs and hands those at or above ``stream_level`` to a sink (the PO client).

    Every record carries the run's status and progress as ``state`` has them when it is built. Records
    produced before a sink is attached are queued and flushed on ``attach_sink``.
    """

    def __init__(self, silent: bool = False, stream_level: int = 20, label: str = "", out: TextIO | None = None,
                 *, state: RunState | None = None, history_limit: int | None = HISTORY_LIMIT) -> None:
        self.state = state if state is not None else RunState()
        self.silent = silent
        self.stream_level = stream_level
        self.label = label
        self._out = out
        self._lock = threading.RLock()
        self._sink: LogSink | None = None
        self._pending: list[LogRecord] = []
        self._held = ""
        #: The latest records, at most ``history_limit`` (None: all), whatever their level.
        self.history: deque[LogRecord] = deque(maxlen=history_limit)

    # -- output ---------------------------------------------------------------------------------
    def attach_sink(self, sink: LogSink) -> None:
        with self._lock:
            self._sink = sink
            pending, self._pending = self._pending, []
        for record in pending:
            sink(record)

    def log(
        self,
        msg: str | bytes | Iterable[Any],
        log_type: str = "info",
        sep: str = "",
        end: str = "",
        append: bool = False,
        halt_submission: bool = False,
    ) -> str:
        """Print and (if its level is high enough) stream one log; return the submitted text."""
        if log_type not in LOG_LEVELS:
            raise ValueError(f"unknown log_type {log_type!r}; use one of {', '.join(LOG_LEVELS)}")
        text = format_message(msg, sep, end)
        with self._lock:
            if LOG_LEVELS[log_type] >= self.stream_level:
                self._print(text, log_type, continued=append and bool(self._held), newline=not halt_submission)
            if halt_submission:
                self._held += text
                return text
            if append:
                text, self._held = self._held + text, ""
            record = LogRecord(text, log_type, self.state.status.value, self.state.progress)
            self.history.append(record)
            if LOG_LEVELS[log_type] < self.stream_level:
                return text
            if self._sink is None:
                self._pending.append(record)
                return text
            sink = self._sink
        sink(record)
        return text

    def _print(self, text: str, log_type: str, continued: bool, newline: bool) -> None:
        if self.silent:
            return
        out = self._out or sys.stdout
        with _console_lock:
            open_line = _open_lines.get(id(out))
            if continued and open_line == id(self):
                line = text
            else:
                if open_line is not None:
                    out.write("\n")  # close the line a logger left open, so lines of nodes never run together
                prefix = f"[{self.label}] " if self.label else ""
                level = "" if log_type == "info" else f"{log_type.upper()}: "
                line = prefix + level + (self._held if continued else "") + text
            out.write(line + ("\n" if newline else ""))
            out.flush()
            if newline:
                _open_lines.pop(id(out), None)
            else:
                _open_lines[id(out)] = id(self)
