"""SIGINT and SIGTERM as a clean stop (engine/runs/stopping.py), shared by `detect run`
and its workers on Redis: the first signal asks for the stop, a second one while it is
under way interrupts at once, and the previous handlers come back afterwards."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from engine.runs.stopping import install_stop_handlers, restore_handlers


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_first_signal_stops_cleanly_a_second_at_once(signum):
    stopping = threading.Event()
    before = signal.getsignal(signum)
    previous = install_stop_handlers(stopping.is_set, stopping.set, " (test)")
    try:
        os.kill(os.getpid(), signum)
        assert stopping.is_set()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signum)
    finally:
        restore_handlers(previous)
    assert signal.getsignal(signum) is before


def test_off_the_main_thread_nothing_is_installed():
    found = []
    thread = threading.Thread(
        target=lambda: found.append(install_stop_handlers(lambda: False, lambda: None, ""))
    )
    thread.start()
    thread.join()
    assert found == [{}]
