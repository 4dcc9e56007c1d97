"""A SIGTERM that arrives while a daemon starts (connecting, migrating, importing) is a stop, not a death.

The daemons install their real handlers only once their loop runs, seconds after the process
began; an orchestrator that scales down (or a test that stops everything) may signal in between,
and Python's default action would end the process by the signal (exit -15) instead of cleanly.
``latch()`` is the first thing a daemon command does: it keeps the request, and the loop, once its
own handlers are in place, asks ``requested()`` and stops at once. SIGINT keeps its default
(KeyboardInterrupt) so that Ctrl-C still interrupts a start-up that hangs.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_requested = threading.Event()


def _keep(_signum: int, _frame: FrameType | None) -> None:
    _requested.set()


def latch() -> None:
    """Keep a SIGTERM from now on (main thread only; elsewhere signals cannot be handled)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _keep)


def requested() -> bool:
    """Whether a SIGTERM came before the daemon's own handlers were in place."""
    return _requested.is_set()
