"""A Panther rule as an engine `Rule`: the module's functions with panther_core's meaning.

`PantherRule.evaluate` is what the evaluator calls for every activity, so the correlator,
dedup windows, anchored thresholds and replay treat Panther rules like native ones. The
function semantics follow `panther_core.rule.Detection` (the code Panther runs):

- `rule()` must return a bool; anything else, or an exception, is a rule error.
- `title()` falls back to `DisplayName`, then `RuleID`; `dedup()` to the output of
  `title()`, then `defaultDedupString:<RuleID>` (not to DisplayName: Panther does not).
  Both are cut to 1000 characters the way Panther cuts them.
- `severity()` returns a level in any case, or `DEFAULT` for the YAML value.
- `alert_context()` must return a JSON-serialisable mapping of at most 200 KB; on an error
  the context is `{"_error": "<repr>"}` and the alert still fires.
- `destinations()` returns names; `[]` suppresses the notification, None means default
  routing.
- Live (Panther's "batch mode"), an error in any function but `rule()` falls back to the
  default; under test every error is reported, as panther_analysis_tool does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from engine.activity import ActivityRecord, Event
from engine.detection.rule import Match, Rule
from engine.panther.event import PantherEvent, thaw

MAX_FIELD = 1000
TRUNCATED = "... (truncated)"
MAX_ALERT_CONTEXT = 200 * 1024
SEVERITY_LEVELS = ("INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL")
FUNCTIONS = (
    "title",
    "dedup",
    "severity",
    "alert_context",
    "description",
    "reference",
    "runbook",
    "destinations",
)


class FunctionReturnTypeError(TypeError):
    """A rule function returned the wrong type (panther_core raises the same)."""


def truncate(text: str) -> str:
    if len(text) > MAX_FIELD:
        return text[: MAX_FIELD - len(TRUNCATED)] + TRUNCATED
    return text


@dataclass
class Outputs:
    """What the functions produced for one event; `errors` maps function name to the
    exception it raised (test mode only: live, errors become defaults)."""

    title: str | None = None
    dedup: str = ""
    severity: str = "info"
    context: dict[str, Any] = field(default_factory=dict)
    destinations: list[str] | None = None
    description: str | None = None
    reference: str | None = None
    runbook: str | None = None
    errors: dict[str, BaseException] = field(default_factory=dict)


# A single-slot cache: the evaluator runs every rule on one activity before the next, so
# the Panther view of an activity is built once, not once per rule, and only when a
# Python rule runs on it (its p_ fields only when a rule reads one: see PantherEvent.live).
_LAST: list[Any] = [None, None]


def live_event(activity: ActivityRecord) -> PantherEvent:
    if _LAST[0] is activity:
        return _LAST[1]
    event = PantherEvent.live(activity.raw, activity.created_at)
    _LAST[0], _LAST[1] = activity, event
    return event


@dataclass
class PantherRule(Rule):
    """A Panther-format rule. `module` is the rule's Python module (None for a simple
    detection, whose logic is `matcher` and whose outputs are `simple_*`)."""

    tests_key: ClassVar[str] = "Tests"
    # Its code reads a Panther event, built as it runs, never the engine's `Event`.
    needs_event: ClassVar[bool] = False  # type: ignore[misc]

    rule_id: str = ""
    matcher: Callable[[Any], bool] | None = None
    simple_title: Callable[[Any], str] | None = None
    simple_dedup: Callable[[Any], str] | None = None
    simple_context: Callable[[Any], dict[str, Any]] | None = None
    simple_severity: Callable[[Any], str | None] | None = None
    defined: frozenset[str] = frozenset()
    skip_reason: str = ""
    strict: bool = False
    # The global helper modules this rule may import (name -> file), for `detect convert`.
    helper_files: dict[str, Path] = field(default_factory=dict)

    @property
    def default_dedup(self) -> str:
        return f"defaultDedupString:{self.rule_id}"

    # -- live -------------------------------------------------------------------------

    def call_rule(self, event: PantherEvent) -> bool:
        result = self.module.rule(event)  # type: ignore[union-attr]
        if not isinstance(result, bool):
            raise FunctionReturnTypeError(
                f"detection [{self.rule_id}] function [rule] returned"
                f" [{type(result).__name__}], expected [bool]"
            )
        return result

    def evaluate(self, activity: ActivityRecord, event: Event) -> Match | None:
        # This runs once per rule and activity: the checks, then the rule, inline.
        data = activity.raw
        for check in self.checks:
            if not check(data):
                return None
        matcher = self.matcher
        if matcher is not None:
            if not matcher(data):
                return None
            subject = None
        else:
            subject = _LAST[1] if _LAST[0] is activity else live_event(activity)
            result = self.module.rule(subject)  # type: ignore[union-attr]
            if result is not True:
                if result is False:
                    return None
                raise FunctionReturnTypeError(
                    f"detection [{self.rule_id}] function [rule] returned"
                    f" [{type(result).__name__}], expected [bool]"
                )
        out = self.outputs(subject, data, live=True)
        return Match(
            rule=self,
            activity=activity,
            title=out.title or self.name,
            dedup_key=out.dedup,
            severity=out.severity,
            context=out.context,
            destinations=out.destinations,
            runbook=out.runbook or self.runbook,
            description=out.description or None,
            reference=out.reference or None,
        )

    # -- the functions ----------------------------------------------------------------

    def _call(self, name: str, subject: Any, expected: type | None) -> Any:
        result = getattr(self.module, name)(subject)
        if expected is list:
            if result is None:
                return None
            if not isinstance(result, list) or not all(isinstance(x, str | bool) for x in result):
                raise FunctionReturnTypeError(
                    f"detection [{self.rule_id}] function [{name}] returned"
                    f" [{type(result).__name__}], expected a list"
                )
        elif expected is not None and not isinstance(result, expected):
            raise FunctionReturnTypeError(
                f"detection [{self.rule_id}] function [{name}] returned"
                f" [{type(result).__name__}], expected [{expected.__name__}]"
            )
        return result

    def outputs(self, subject: PantherEvent | None, data: Any, live: bool) -> Outputs:
        """Every function's output for one event: `subject` is what the module's functions
        get, `data` the raw activity the YAML-declared outputs (AlertTitle, GroupBy,
        AlertContext, DynamicSeverities) read. Live, errors fall back to Panther's
        defaults; otherwise they are collected in `errors`."""
        out = Outputs(severity=self.severity)
        errors = out.errors
        defined = self.defined
        title_output: str | None = None

        def attempt(name: str, compute: Callable[[], Any], fallback: Any) -> Any:
            try:
                return compute()
            except Exception as exc:  # noqa: BLE001 - Panther turns these into defaults
                if not live:
                    errors[name] = exc
                return fallback

        if "title" in defined:
            title_output = attempt(
                "title", lambda: truncate(self._call("title", subject, str)), self.rule_id
            )
            if not live and "title" in errors:
                title_output = None
        elif self.simple_title is not None:
            title_output = truncate(self.simple_title(data))
        out.title = title_output or self.name

        if "dedup" in defined:

            def dedup() -> str:
                value = self._call("dedup", subject, str)
                return truncate(value) if value else self.default_dedup

            out.dedup = attempt("dedup", dedup, self.default_dedup)
        elif self.simple_dedup is not None:
            out.dedup = truncate(self.simple_dedup(data)) or self.default_dedup
        else:
            out.dedup = title_output or self.default_dedup

        if "severity" in defined:

            def severity() -> str:
                level = self._call("severity", subject, str).upper()
                if level == "DEFAULT":
                    return self.severity
                if level not in SEVERITY_LEVELS:
                    raise AssertionError(
                        f"Expected severity to be any of the following: [{SEVERITY_LEVELS}],"
                        f" got [{level}] instead."
                    )
                return level.lower()

            out.severity = attempt("severity", severity, self.severity)
        elif self.simple_severity is not None:
            out.severity = self.simple_severity(data) or self.severity

        if "alert_context" in defined:
            try:
                out.context = self._context(subject)
            except Exception as exc:  # noqa: BLE001 - the alert still fires, with the error
                out.context = {"_error": repr(exc)}
                if not live:
                    errors["alert_context"] = exc
        elif self.simple_context is not None:
            out.context = self.simple_context(data)

        if "destinations" in defined:
            found = attempt("destinations", lambda: self._call("destinations", subject, list), None)
            out.destinations = None if found is None else [str(d) for d in found][:10]
        else:
            out.destinations = self.destinations

        for name in ("description", "reference", "runbook"):
            if name in defined:
                value = attempt(name, lambda n=name: truncate(self._call(n, subject, str)), "")
                setattr(out, name, value)
        return out

    # -- tests ------------------------------------------------------------------------

    def run_test(self, spec: Mapping[str, Any], ruleset: Any = None) -> list[str]:
        """Run one `Tests:` entry the way panther_analysis_tool does; the failures (none:
        passed). The engine's test runner calls this for Panther rules."""
        from engine.panther.testing import run_panther_test

        return run_panther_test(self, spec)

    def _context(self, subject: Any) -> dict[str, Any]:
        context = self._call("alert_context", subject, Mapping)
        text = json.dumps(context, default=thaw, allow_nan=False)
        if len(text) > MAX_ALERT_CONTEXT:
            return {
                "_error": f"alert_context size is [{len(text)}] characters, bigger than"
                f" maximum of [{MAX_ALERT_CONTEXT}] characters"
            }
        return json.loads(text)


def defined_functions(module: ModuleType | None) -> frozenset[str]:
    if module is None:
        return frozenset()
    return frozenset(name for name in FUNCTIONS if callable(getattr(module, name, None)))
