"""SIGINT and SIGTERM as a clean stop, for `detect run` (engine/runs/live.py) and for a
worker on Redis (engine/runs/workers.py), which stop the same way: the first signal asks
the loop to stop before the next activity (it then saves and, on Redis, releases its
leases); a second one while that stop is under way raises `KeyboardInterrupt`, to stop
at once. Python runs signal handlers on the main thread only, so a loop run on another
thread (tests) installs nothing."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def install_stop_handlers(
    is_stopping: Callable[[], bool], request_stop: Callable[[], None], then: str
) -> dict[int, Any]:
    """Handle SIGINT and SIGTERM with `request_stop` (`then` says, in the log line, what
    the stop does after the activity in hand); the previous handlers, for
    `restore_handlers`."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous

    def handler(signum: int, _frame: Any) -> None:
        if is_stopping():
            raise KeyboardInterrupt  # a second signal: stop now
        log.info(
            "received %s: stopping before the next activity%s",
            signal.Signals(signum).name,
            then,
        )
        request_stop()

    for signum in STOP_SIGNALS:
        previous[signum] = signal.signal(signum, handler)
    return previous


def restore_handlers(previous: dict[int, Any]) -> None:
    """Put back the handlers `install_stop_handlers` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)
