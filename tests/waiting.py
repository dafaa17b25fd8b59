"""Waiting in tests on a busy machine: for a condition, with a generous bound that only a hang reaches."""

from __future__ import annotations

import time
from collections.abc import Callable

#: Seconds before a condition counts as never reached. Passing tests never wait this long; it only bounds a hang.
GENEROUS = 60.0


def wait_until(predicate: Callable[[], object], what: str = "condition", timeout: float = GENEROUS) -> None:
    """Return once ``predicate()`` is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout:g} s"
        time.sleep(0.05)
