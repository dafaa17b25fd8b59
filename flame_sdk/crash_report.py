"""An analysis that dies of an uncaught exception is reported failed, with the error, before the process exits."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from types import TracebackType

#: How long a crashing analysis keeps its API up so the node can see the failure (seconds).
REPORT_ON_CRASH_TIMEOUT = 30.0


def install_excepthook(mark_crashed: Callable[[str], bool], wait_until_reported: Callable[[float], bool],
                       alive: Callable[[], bool]) -> None:
    """Chain a ``sys.excepthook`` that marks the run failed and waits (bounded) until the node saw it.

    ``mark_crashed(summary)`` sets the status and logs; it returns False when the run had ended already.
    ``alive()`` tells whether the SDK can still report (its event loop is running).
    """
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if alive():
            summary = "".join(traceback.format_exception_only(exc_type, exc)).strip()
            if mark_crashed(summary):
                wait_until_reported(REPORT_ON_CRASH_TIMEOUT)
        previous(exc_type, exc, tb)

    sys.excepthook = hook
