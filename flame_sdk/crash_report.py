"""An analysis that dies of an uncaught exception is reported failed, with the error, before the process exits.

The hook only marks the run; the node then stays up until the platform saw the failure (``flame_sdk.after_main``).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from types import TracebackType


def install_excepthook(mark_crashed: Callable[[str], bool], alive: Callable[[], bool]) -> None:
    """Chain a ``sys.excepthook`` that marks the run failed with the exception's one-line summary.

    ``mark_crashed(summary)`` sets the status and logs; ``alive()`` tells whether the SDK can still report (its
    event loop is running).
    """
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if alive():
            mark_crashed("".join(traceback.format_exception_only(exc_type, exc)).strip())
        previous(exc_type, exc, tb)

    sys.excepthook = hook
