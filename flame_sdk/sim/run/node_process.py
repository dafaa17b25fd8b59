"""One node's analysis process: started with the node's environment in its own working folder, its output kept.

Every stdout and stderr line goes to ``logs/node-N.log`` (stderr lines marked ``!``), to a bounded tail per
stream, and to the ``on_line`` callback (the live view). ``ending()`` says how the process ended, in the words a
failure report needs (exit code or signal), ``last_errors()`` what it last wrote to stderr.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO

#: Lines kept per stream for failure reports (the full output is in the log file).
TAIL_LINES = 200

LineCallback = Callable[[str, str, bool], None]  # (node name, line, from stderr)


def analysis_command(analysis: str) -> list[str]:
    """``python file.py`` for a file, ``python -m module`` for a module name."""
    if Path(analysis).is_file():
        return [sys.executable, "-u", str(Path(analysis).resolve())]
    if analysis.endswith(".py"):
        raise FileNotFoundError(f"analysis file {analysis} does not exist")
    return [sys.executable, "-u", "-m", analysis]


def describe_returncode(code: int) -> str:
    """``exited with code 1`` / ``was killed by SIGKILL``."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


class NodeProcess:
    """The analysis process of one node."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], cwd: Path, log_path: Path,
                 on_line: LineCallback) -> None:
        self.name = name
        self.stdout_tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.stderr_tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.last_line = ""
        self.last_output_at = time.monotonic()
        self.started_at = time.monotonic()
        self.ended_at: float | None = None
        self._on_line = on_line
        self._log = log_path.open("w", encoding="utf-8")
        self._log_lock = threading.Lock()
        self.proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1, errors="replace")
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [threading.Thread(target=self._pump, args=(stream, is_err), daemon=True)
                         for stream, is_err in ((self.proc.stdout, False), (self.proc.stderr, True))]
        for reader in self._readers:
            reader.start()

    def _pump(self, stream: IO[str], is_stderr: bool) -> None:
        tail = self.stderr_tail if is_stderr else self.stdout_tail
        for raw in stream:
            line = raw.rstrip("\n")
            tail.append(line)
            if line.strip():
                self.last_line, self.last_output_at = line, time.monotonic()
            with self._log_lock:
                self._log.write(("! " if is_stderr else "") + line + "\n")
                self._log.flush()
            self._on_line(self.name, line, is_stderr)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def returncode(self) -> int | None:
        code = self.proc.poll()
        if code is not None and self.ended_at is None:
            self.ended_at = time.monotonic()
        return code

    def terminate(self) -> None:
        """SIGTERM, as Kubernetes sends when the PO deletes the deployment."""
        if self.running:
            self.proc.terminate()

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; wait for the output to be read."""
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(grace)
        self.returncode()
        for reader in self._readers:
            reader.join(5)
        with self._log_lock:
            self._log.close()

    def ending(self) -> str:
        """How the process ended (``exited with code 1``, ``was killed by SIGKILL``)."""
        code = self.returncode()
        return "is still running" if code is None else describe_returncode(code)

    def last_errors(self, count: int = 5) -> str:
        """The last non-empty stderr lines, joined with `` | ``."""
        return " | ".join([line.strip() for line in self.stderr_tail if line.strip()][-count:])
