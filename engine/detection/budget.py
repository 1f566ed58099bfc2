"""Keeping a rule's failure inside the rule: its exceptions, however raised, and its time.

A rule is code the engine runs on attacker-chosen data. Three things must never leave it:

- **Exceptions that are not `Exception`s.** `sys.exit()` in a rule raises `SystemExit`,
  which an `except Exception` lets through: the whole stream stopped with the rule's exit
  status and no alert. `owned_by_rule` tells a rule's own `BaseException` (raised in its
  code) from the operator's (Ctrl-C, a stop signal: raised by a signal handler of the
  engine), so only the second stops the process.
- **Time.** A rule that loops, or a pattern that backtracks, holds every activity behind
  it. While rules with code run, a `SIGALRM` timer (`signal.setitimer`) is armed for
  their budget (`rule_budget`, one second by default, a rule's own `time_budget` when it
  sets one); when it rings inside a rule whose budget is spent, `RuleTimeout` is raised
  in the rule's code, and the evaluator reports it as the rule's failure.
- Where no timer can be armed (not the main thread, or no `setitimer` on the platform),
  rules run without one: a hang there is not turned into an alert.

`RuleTimeout` derives from `BaseException`, so a rule's `except Exception` does not
swallow it; a rule that swallows it anyway is interrupted again a budget later.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FrameType
from typing import Any, TypeVar

_ENGINE_DIR = str(Path(__file__).resolve().parent.parent)
_BUNDLED_DIR = str(Path(_ENGINE_DIR) / "_bundled")
_AVAILABLE = hasattr(signal, "setitimer") and hasattr(signal, "SIGALRM")
_perf = time.perf_counter
T = TypeVar("T")


@dataclass
class Settings:
    """The engine-wide defaults: `budget` seconds per rule per activity (a rule's own
    `time_budget` overrides it) and `quarantine_after` overruns before a rule is disabled
    for the rest of the process. Set with `configure`."""

    budget: float = 1.0
    quarantine_after: int = 3


settings = Settings()


def configure(budget: float | None = None, quarantine_after: int | None = None) -> None:
    """Change the defaults (before the rules are evaluated)."""
    if budget is not None:
        if not budget > 0:
            raise ValueError(f"a rule time budget must be positive, not {budget!r}")
        settings.budget = float(budget)
    if quarantine_after is not None:
        if quarantine_after < 1:
            raise ValueError(f"quarantine_after must be at least 1, not {quarantine_after!r}")
        settings.quarantine_after = int(quarantine_after)


class RuleTimeout(BaseException):
    """Raised in a rule's code when its time budget is spent."""


class _Watch:
    """The timer's state: the deadline of the rule running now (None: no rule is timed),
    the budget it was given, and the code objects of the engine's frames that call
    rules, where the alarm must not raise (it is tried again a millisecond later)."""

    deadline: float | None = None
    budget: float = 0.0
    depth: int = 0
    installed: bool = False
    callers: set[CodeType] = set()  # noqa: RUF012 - one process-wide watch


_watch = _Watch()


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    deadline = _watch.deadline
    if deadline is None:
        return  # rang after the rules it timed had finished
    remaining = deadline - _perf()
    if remaining > 0.0005:
        # A rule that started after the timer was armed: its own deadline is later.
        signal.setitimer(signal.ITIMER_REAL, remaining)
        return
    if frame is not None and frame.f_code in _watch.callers:
        # Between two rules (the last one finished in time): not a rule's failure.
        signal.setitimer(signal.ITIMER_REAL, 0.001)
        return
    # Again a budget later, should the rule swallow this one.
    signal.setitimer(signal.ITIMER_REAL, max(_watch.budget, 0.001))
    raise RuleTimeout(f"the rule ran past its time budget of {_watch.budget:g}s on one activity")


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    """Python's own Ctrl-C behaviour, raised from an engine frame so `owned_by_rule`
    does not take the operator's Ctrl-C for a rule's `raise KeyboardInterrupt`."""
    raise KeyboardInterrupt


def _install() -> bool:
    """Install the alarm handler (and the Ctrl-C marker) once, in the main thread; False
    where the timer cannot work here."""
    if not _AVAILABLE or threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_interrupt)
    if _watch.installed:
        return True
    current = signal.getsignal(signal.SIGALRM)
    if current not in (signal.SIG_DFL, signal.SIG_IGN, None, _on_alarm):
        return False  # someone else's alarm: leave it alone, run untimed
    signal.signal(signal.SIGALRM, _on_alarm)
    _watch.installed = True
    return True


def prepare() -> bool:
    """Make the timer ready (from the main thread, before evaluating); whether it is."""
    return _install()


def register_caller(code: CodeType) -> None:
    """An engine function that calls rules: the alarm does not raise in its frame."""
    _watch.callers.add(code)


def arm(budget: float) -> bool:
    """Start timing (the first rule's deadline is set by `start`); False when the timer
    is already armed (a nested call: the outer one times it) or cannot be armed here."""
    if _watch.depth or not (_watch.installed or _install()):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    _watch.depth = 1
    _watch.budget = budget
    _watch.deadline = _perf() + budget
    signal.setitimer(signal.ITIMER_REAL, budget)
    return True


def start(budget: float) -> None:
    """The rule that runs next has `budget` seconds from now (while armed)."""
    _watch.budget = budget
    _watch.deadline = _perf() + budget


def disarm() -> None:
    _watch.deadline = None
    _watch.depth = 0
    signal.setitimer(signal.ITIMER_REAL, 0)


def owned_by_rule(error: BaseException) -> bool:
    """Whether an exception a rule's call raised is the rule's failure (reported as a
    `rule_error`) rather than the process being stopped: every `Exception`, every
    `RuleTimeout`, and any other `BaseException` (`SystemExit`, `KeyboardInterrupt`,
    `GeneratorExit`, a class of the rule's own) raised outside the engine's code. One
    raised in the engine's code (a signal handler: Ctrl-C, a stop) is the operator's."""
    if isinstance(error, Exception | RuleTimeout):
        return True
    if isinstance(error, KeyboardInterrupt) and _ctrl_c_unmarked():
        return False  # cannot tell the operator's Ctrl-C from the rule's: it stops
    tb = error.__traceback__
    if tb is None:
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    return not filename.startswith(_ENGINE_DIR) or filename.startswith(_BUNDLED_DIR)


def _ctrl_c_unmarked() -> bool:
    """Whether Ctrl-C raises from Python's own C handler (no engine frame marks it)."""
    try:
        return signal.getsignal(signal.SIGINT) is signal.default_int_handler
    except ValueError:  # pragma: no cover - not readable from this thread
        return True


class RuleAborted(Exception):
    """A rule's `BaseException` (`SystemExit`, `RuleTimeout`...) carried as an
    `Exception`, for callers that catch only those; `RuleFailure.of` reports the
    original's type and message."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.original = original
        self.__traceback__ = original.__traceback__


def guarded(call: Callable[..., T], budget: float | None, *args: Any) -> T:
    """`call(*args)`, code of a rule: timed (when `budget` is not None and no outer call
    already times it), and with the rule's `BaseException`s raised as `RuleAborted`."""
    armed = budget is not None and arm(budget)
    try:
        return call(*args)
    except Exception:
        raise
    except BaseException as error:
        if owned_by_rule(error):
            raise RuleAborted(error) from error
        raise
    finally:
        if armed:
            disarm()


register_caller(guarded.__code__)
