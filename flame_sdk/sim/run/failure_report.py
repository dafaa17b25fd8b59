"""One clear failure report for a failed run: the cause once, the consequences one line each.

The nodes whose failure is their own come first, in the order they failed (nodes with the same reason share
one entry), with the analyst's traceback once: the frames of the analysis' own files, then how many frames
inside flame_sdk and libraries were left out (the whole traceback is in the node's log). A node that failed
because of another node (its reason names that node, e.g. status sync or a relayed error) gets one line.
"""

from __future__ import annotations

import re
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path

from flame_sdk.sim.run.run_record import NodeRecord

_FRAME = re.compile(r'^\s*File "([^"]+)", line \d+')
_PREFIX = re.compile(r"^(! )?(\[[^\]]+\] )?")
_LIBRARY_ROOTS = tuple({str(Path(sysconfig.get_paths()[key])) for key in ("stdlib", "platstdlib")})
_CHAIN_LINES = ("The above exception was the direct cause", "During handling of the above exception")
#: Packages whose frames are not the analyst's, wherever they are installed.
_LIBRARY_PARTS = ("site-packages", "dist-packages", "/flame_sdk/", "/flame/")


class TracebackFolder:
    """Folds each traceback in a node's streamed output into its last line (the whole one is in the log).

    Chained tracebacks ("The above exception was the direct cause ...") fold into one line each, with the lines
    that join them left out.
    """

    def __init__(self, log: str) -> None:
        self.log = log
        self._inside = False
        self._after = False  # just after a traceback's last line: chain lines may follow

    def fold(self, line: str) -> str | None:
        """The line to show for ``line``, or None while inside a traceback."""
        text = _PREFIX.sub("", line, count=1)
        if text.startswith("Traceback (most recent call last):"):
            self._inside, self._after = True, False
            return None
        if self._after and (not text.strip() or text.startswith(_CHAIN_LINES)):
            return None
        self._after = False
        if not self._inside:
            return line
        if not text.strip() or text[0].isspace():
            return None
        self._inside, self._after = False, True
        return f"{line}  (traceback in {self.log})"


def _is_library(path: str) -> bool:
    return path.startswith("<") or any(part in path for part in _LIBRARY_PARTS) or path.startswith(_LIBRARY_ROOTS)


def _tracebacks(lines: Sequence[str]) -> list[list[str]]:
    """The traceback blocks in a node's output (console prefixes removed), in order."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for raw in lines:
        line = _PREFIX.sub("", raw, count=1) if raw.startswith(("! ", "[")) else raw
        if line.startswith("Traceback (most recent call last):"):
            current = [line]
            blocks.append(current)
        elif current is not None:
            current.append(line)
            if line and not line[0].isspace():
                current = None  # the exception line ends the block
    return [block for block in blocks if len(block) > 1]


def analyst_traceback(lines: Sequence[str], log: str) -> list[str]:
    """The analyst's traceback, their frames first: the first block that has frames of their own files."""
    blocks = _tracebacks(lines)
    own = [b for b in blocks if any((m := _FRAME.match(line)) and not _is_library(m.group(1)) for line in b)]
    if not (own or blocks):
        return []
    block = (own or blocks)[0]
    frames: list[list[str]] = []
    for line in block[1:-1]:
        if _FRAME.match(line):
            frames.append([line])
        elif frames:
            frames[-1].append(line)
    mine = [f for f in frames if not _is_library(_FRAME.match(f[0]).group(1))]  # type: ignore[union-attr]
    hidden = len(frames) - len(mine)
    out = ["Traceback (the analysis' own frames):"] + [line for frame in mine for line in frame] + [block[-1]]
    if hidden:
        out.append(f"({hidden} frame(s) inside flame_sdk and libraries left out; the whole traceback is in {log})")
    return out


def is_consequence(node: NodeRecord, others: Sequence[NodeRecord]) -> bool:
    """The node's failure names another node of the run (status sync, a relayed error, a silent partner)."""
    reason = node.reason or ""
    return any(other.node_id in reason for other in others if other is not node)


def _failed(nodes: Sequence[NodeRecord], failed_order: Sequence[str]) -> list[NodeRecord]:
    failed = [n for n in nodes if n.reason is not None]
    return sorted(failed, key=lambda n: failed_order.index(n.node_id) if n.node_id in failed_order
                  else len(failed_order))


def find_causes(nodes: Sequence[NodeRecord], failed_order: Sequence[str]) -> list[NodeRecord]:
    """The failed nodes whose failure is their own, in the order they failed (the first failed node if none)."""
    failed = _failed(nodes, failed_order)
    return [n for n in failed if not is_consequence(n, nodes)] or failed[:1]


def failure_report(nodes: Sequence[NodeRecord], failed_order: Sequence[str], outputs: dict[str, list[str]],
                   rename: Callable[[str], str]) -> list[str]:
    """The report's lines. ``failed_order``: node ids in the order they failed; ``outputs``: each node's output
    lines by node id; ``rename`` puts node names next to node ids in free text."""
    failed = _failed(nodes, failed_order)
    causes = find_causes(nodes, failed_order)
    lines: list[str] = []
    shown_traceback = False
    grouped: dict[str, list[NodeRecord]] = {}
    for node in causes:
        grouped.setdefault(node.reason or "", []).append(node)
    for reason, group in grouped.items():
        who = ", ".join(f"{n.label} [{n.role}]" for n in group)
        text = rename(reason)
        own = f"{group[0].label} failed: "
        lines.append(f"{who} failed: {text[len(own):] if len(group) == 1 and text.startswith(own) else text}")
        if not shown_traceback:
            for node in group:
                traceback = analyst_traceback(outputs.get(node.node_id, []), node.log)
                if traceback:
                    lines += ["    " + line for line in traceback]
                    shown_traceback = True
                    break
    for node in failed:
        if node not in causes:
            lines.append(f"{node.label} [{node.role}] failed as a consequence: {rename(node.reason or '')}")
    for node in nodes:
        if node.reason is None and node.status != "executed":
            lines.append(f"{node.label} [{node.role}] ended {node.status}")
    return lines
