"""Where a star run is: its progress values and the one log line per round that ``flame-sim run`` shows.

Progress (0..100, only increasing) moves with what has been done, never with a guess of what is left:

* 5 once the partners answered the ready check, 10 once an analyzer has its data;
* after round k of at most n (``max_rounds``): ``10 + 89 * k / n``; a simple analysis has n = 1;
* 100 when the node finished (the SDK sets it).

An iterative run that converges early jumps to 100 from where it was: give ``max_rounds`` the number of rounds
you expect to make the bar meaningful. The round lines (``round 3/20: ...``) say the same in words.
"""

from __future__ import annotations

import re

READY = 5
DATA = 10

_ROUND = re.compile(r"\bround (\d+)/(\d+): ")
_FINISHED = re.compile(r"\bfinished after (\d+) round\(s\) \((converged|not converged)")


def round_progress(round_number: int, max_rounds: int) -> int:
    """Progress after ``round_number`` of at most ``max_rounds`` rounds."""
    return DATA + (100 - DATA - 1) * round_number // max_rounds


def round_line(round_number: int, max_rounds: int, doing: str) -> str:
    return f"round {round_number}/{max_rounds}: {doing}"


def finished_line(rounds: int, converged: bool, max_rounds: int) -> str:
    state = "converged" if converged else f"not converged, stopped at max_rounds={max_rounds}"
    return f"finished after {rounds} round(s) ({state})"


def parse_round(text: str) -> tuple[int, int] | None:
    """(round, max rounds) of a round line, else None."""
    match = _ROUND.search(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def parse_finished(text: str) -> tuple[int, bool] | None:
    """(rounds, converged) of a finished line, else None."""
    match = _FINISHED.search(text)
    return (int(match.group(1)), match.group(2) == "converged") if match else None
