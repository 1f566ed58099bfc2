"""A rule's exception, as the `rule_error` alert reports it.

The alert needs the exception's type, message and the line of the rule that raised it,
not the exception itself: a summary is what crosses to the process that correlates when
another process evaluated the rules (see engine/runs/forked.py), and a traceback
cannot be pickled.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

from engine.detection.budget import RuleAborted

_ENGINE_DIR = str(Path(__file__).resolve().parent.parent)
_BUNDLED_DIR = str(Path(_ENGINE_DIR) / "_bundled")


@dataclass(frozen=True)
class RuleFailure:
    error_type: str
    message: str
    location: str | None  # "file:line" of the rule's code that raised, when known

    @classmethod
    def of(cls, error: BaseException) -> RuleFailure:
        if isinstance(error, RuleFailed):
            return error.failure
        if isinstance(error, RuleAborted):  # a rule's SystemExit...: report the cause
            error = error.original
        frame = _rule_frame(error)
        location = None if frame is None else f"{frame.filename}:{frame.lineno}"
        return cls(type(error).__name__, str(error), location)


class RuleFailed(Exception):
    """A rule's failure met in another process, raised again where its result is
    needed, so it is reported there as the original exception would have been."""

    def __init__(self, failure: RuleFailure) -> None:
        super().__init__(f"{failure.error_type}: {failure.message}")
        self.failure = failure


def _rule_frame(error: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame outside the engine: the line of the rule (or of a helper it
    called) that failed, not the engine's `Event.__getitem__` it failed in."""
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ else []
    outside = [
        f
        for f in frames
        if not f.filename.startswith(_ENGINE_DIR) or f.filename.startswith(_BUNDLED_DIR)
    ]
    chosen = outside or frames
    return chosen[-1] if chosen else None
