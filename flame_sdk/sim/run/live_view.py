"""What ``flame-sim run`` shows while a run goes on.

On a terminal: one row per node (name, role, status, progress, round k of n, elapsed time, last log line),
redrawn in place (rich), with the nodes' log lines scrolling above it. Elsewhere (a pipe, a CI log): plain lines
appended as they come, a status line only when a node's status changes, never a repeated table. ``quiet``
leaves out the nodes' log lines (they are still in ``logs/node-N.log``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table


@dataclass
class NodeRow:
    """One node as the view shows it."""

    name: str
    node_id: str
    role: str
    status: str = "started"
    progress: int = 0
    round: str = ""
    elapsed: float = 0.0
    last_line: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.node_id})"


class RunView(Protocol):
    """Where the runner sends what happens; implementations must accept calls from any thread."""

    def node_line(self, name: str, line: str) -> None:
        """A line of a node's console output (already prefixed with the node's name)."""

    def status_changed(self, row: NodeRow) -> None:
        """A node's status changed (it never goes back)."""

    def note(self, text: str) -> None:
        """A line from flame-sim itself."""

    def refresh(self, rows: list[NodeRow]) -> None:
        """The rows as they are now (called a few times a second)."""

    def close(self) -> None:
        """The run ended: stop redrawing."""


def drag_note(seconds: float, last_lines: dict[str, str]) -> str:
    """What to say when no node printed anything for ``seconds``: who waits (its last line says "waiting for")
    for whom (the others), given each running node's last line by node label."""
    waiting = [label for label, line in last_lines.items() if "waiting for" in line.lower()]
    busy = [label for label in last_lines if label not in waiting]
    if waiting and busy:
        return (f"waiting for {', '.join(busy)} for {seconds:.0f} s ({', '.join(waiting)} wait; last line of "
                f"{busy[0]}: {last_lines[busy[0]][:120]!r})")
    if waiting:
        return f"every node has been waiting for {seconds:.0f} s and none is computing: is a message or result missing?"
    return f"no output from any node for {seconds:.0f} s; last lines: " + "; ".join(
        f"{label}: {line[:80]!r}" for label, line in last_lines.items())


def text_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows (the first is the header) as left-aligned plain-text columns."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def summary_table(rows: list[NodeRow]) -> list[str]:
    """The final table as plain text, printed once at the end of a run."""
    return text_table([("node", "role", "status", "progress", "round", "time")] + [
        (r.label, r.role, r.status, f"{r.progress}%", r.round or "-", f"{r.elapsed:.1f} s") for r in rows])


class PlainView:
    """Append-only lines for pipes and logs."""

    def __init__(self, out: TextIO | None = None, quiet: bool = False) -> None:
        self._out = out
        self.quiet = quiet
        self._lock = threading.Lock()

    def _print(self, text: str) -> None:
        with self._lock:
            out = self._out or sys.stdout
            out.write(text + "\n")
            out.flush()

    def node_line(self, name: str, line: str) -> None:
        if not self.quiet:
            self._print(line)

    def status_changed(self, row: NodeRow) -> None:
        self._print(f"flame-sim: {row.label} {row.status}" + (f" after {row.elapsed:.1f} s"
                                                             if row.status in ("executed", "failed") else ""))

    def note(self, text: str) -> None:
        self._print(f"flame-sim: {text}")

    def refresh(self, rows: list[NodeRow]) -> None:
        pass

    def close(self) -> None:
        pass


class TerminalView:
    """A table redrawn in place under the scrolling log lines (rich)."""

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.quiet = quiet
        self._console = console or Console()
        self._live: Live = Live(console=self._console, refresh_per_second=4, transient=True)
        self._live.start()

    def _table(self, rows: list[NodeRow]) -> Table:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, expand=True)
        table.add_column("node", no_wrap=True)
        for column in ("role", "status", "progress", "round"):
            table.add_column(column)
        table.add_column("time", justify="right")
        table.add_column("last line", ratio=1, no_wrap=True, overflow="ellipsis")
        colours = {"executed": "green", "failed": "red", "executing": "cyan"}
        for r in rows:  # Text cells: log lines are not rich markup
            last = r.last_line[len(r.name) + 3:] if r.last_line.startswith(f"[{r.name}] ") else r.last_line
            table.add_row(Text(r.name), Text(r.role), Text(r.status, style=colours.get(r.status, "")),
                          Text(f"{r.progress}%"), Text(r.round or "-"), Text(f"{r.elapsed:.0f} s"), Text(last))
        return table

    def node_line(self, name: str, line: str) -> None:
        if not self.quiet:
            self._console.print(line, markup=False, highlight=False, soft_wrap=True)

    def status_changed(self, row: NodeRow) -> None:
        pass  # the table shows it

    def note(self, text: str) -> None:
        self._console.print(f"flame-sim: {text}", markup=False, highlight=False, soft_wrap=True)

    def refresh(self, rows: list[NodeRow]) -> None:
        self._live.update(self._table(rows))

    def close(self) -> None:
        self._live.stop()


def make_view(quiet: bool, terminal: bool | None = None) -> RunView:
    """A ``TerminalView`` when stdout is a terminal (or ``terminal`` says so), else a ``PlainView``."""
    if terminal if terminal is not None else sys.stdout.isatty():
        return TerminalView(quiet)
    return PlainView(quiet=quiet)
