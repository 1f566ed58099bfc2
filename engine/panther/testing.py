"""Running a Panther rule's `Tests:` with panther_analysis_tool's verdicts.

The pass/fail rule is the one in `panther_core.testing.TestCaseEvaluator` and
`panther_analysis_tool.main._run_tests`:

- `ExpectedResult: true` passes when the rule returns True and no function raised (title,
  dedup, severity, alert_context, description, reference, runbook, destinations);
- `ExpectedResult: false` passes when the rule returns exactly False (a rule that raises
  fails, whatever the other functions do);
- `Mocks` replace names in the rule module (with a function returning `returnValue`) for
  this test only; a name the module does not have fails the test;
- `ExpectedDestinations` compares with what `destinations()` returned (`[]` meaning "no
  notification"; a name not listed counts as an unknown destination).

Unlike panther_analysis_tool, detect runs simple detections and `InlineFilters` without a
Panther backend, and in strict mode (`--panther-strict`) also checks `ExpectedTitle`,
`ExpectedDedup`, `ExpectedSeverity` and `ExpectedAlertContext` against the values the
alert would carry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from engine.activity import parse_timestamp
from engine.detection.operators import same
from engine.panther.event import PantherEvent, plain
from engine.panther.helpers import captured_output

if TYPE_CHECKING:
    from engine.panther.rule import PantherRule


class _Mock:
    """What `unittest.mock.MagicMock(return_value=v)` does for a rule: any call returns v."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.value

    def __repr__(self) -> str:
        return f"<mock returning {self.value!r}>"


_MISSING = object()


@contextlib.contextmanager
def mocked(rule: PantherRule, mocks: Any) -> Iterator[list[str]]:
    """Replace the mocked names in the rule module for the block, then restore them;
    yields the problems (a name the module lacks)."""
    problems: list[str] = []
    saved: list[tuple[str, Any]] = []
    module = rule.module
    try:
        for mock in mocks or []:
            name = mock["objectName"]
            if module is None:
                problems.append("Mocks: a simple detection has no module to mock names in")
                break
            if not hasattr(module, name):
                problems.append(
                    f"Mocks: the rule module has no {name!r} to replace (import it into the"
                    " module, or mock a name the module uses)"
                )
                break
            saved.append((name, module.__dict__.get(name, _MISSING)))
            setattr(module, name, _Mock(mock["returnValue"]))
        yield problems
    finally:
        for name, value in reversed(saved):
            if value is _MISSING:
                delattr(module, name)
            else:
                setattr(module, name, value)


def _created_at(log: Mapping[str, Any]):
    text = log.get("created_at")
    if isinstance(text, str):
        with contextlib.suppress(ValueError):
            return parse_timestamp(text)
    return None


def _raised(function: str, error: BaseException) -> str:
    return f"{function}() raised {type(error).__name__}: {error}"


def _expected_destinations(expected: list[str], actual: list[str] | None) -> bool:
    """panther_analysis_tool's comparison of destination ids: `[]` is its "SKIP"."""
    if actual is not None and any(name not in expected for name in actual):
        actual = None  # an unknown destination: panther_core drops the whole output
    expected_ids = sorted(expected) if expected else ["SKIP"]
    if actual is None:
        actual_ids: list[str] = []
    else:
        actual_ids = sorted(dict.fromkeys(actual)) if actual else ["SKIP"]
    return expected_ids == actual_ids


def run_panther_test(rule: PantherRule, spec: Mapping[str, Any]) -> list[str]:
    """The failures of one Panther test (an empty list: it passed)."""
    log = plain(spec["Log"])
    if not isinstance(log, dict):
        return ["Log must be an object (one event)"]
    expected = spec["ExpectedResult"]
    failures: list[str] = []
    with captured_output() as printed, mocked(rule, spec.get("Mocks")) as mock_problems:
        if mock_problems:
            return mock_problems
        event = PantherEvent(log, _created_at(log)) if rule.module is not None else None
        output: bool | None = None
        try:
            if not all(check(log) for check in rule.checks):
                output = False  # InlineFilters: the rule does not run
            elif rule.matcher is not None:
                output = rule.matcher(log)
            else:
                output = rule.call_rule(event)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - reported as the test's failure
            failures.append(_raised("rule", exc))
        if expected is not True:
            if output is not False and not failures:
                failures.append("ExpectedResult: false, but the rule returned True")
            return _with_output(failures, printed.getvalue())
        if output is False:
            failures.append("ExpectedResult: true, but the rule returned False")
        outputs = rule.outputs(event, log, live=False)
        for function, error in outputs.errors.items():
            failures.append(_raised(function, error))
        if "ExpectedDestinations" in spec:
            actual = outputs.destinations if "destinations" in rule.defined else None
            if "destinations" in outputs.errors:
                actual = None
            if not _expected_destinations(list(spec["ExpectedDestinations"]), actual):
                failures += _diff("ExpectedDestinations", spec["ExpectedDestinations"], actual)
        if rule.strict and output is True:
            failures += _strict_checks(spec, outputs)
    return _with_output(failures, printed.getvalue())


def _diff(label: str, expected: Any, actual: Any) -> list[str]:
    return [f"{label}:", f"  - expected: {expected!r}", f"  + actual:   {actual!r}"]


def _strict_checks(spec: Mapping[str, Any], outputs: Any) -> list[str]:
    failures: list[str] = []
    if "ExpectedTitle" in spec and spec["ExpectedTitle"] != outputs.title:
        failures += _diff("ExpectedTitle", spec["ExpectedTitle"], outputs.title)
    if "ExpectedDedup" in spec and spec["ExpectedDedup"] != outputs.dedup:
        failures += _diff("ExpectedDedup", spec["ExpectedDedup"], outputs.dedup)
    if "ExpectedSeverity" in spec:
        wanted = str(spec["ExpectedSeverity"]).lower()
        if wanted != outputs.severity:
            failures += _diff("ExpectedSeverity", spec["ExpectedSeverity"], outputs.severity)
    for key, value in (spec.get("ExpectedAlertContext") or {}).items():
        got = outputs.context.get(key, "<absent>")
        if not same(plain(value), got):
            failures += _diff(f"ExpectedAlertContext[{key}]", plain(value), got)
    return failures


def _with_output(failures: list[str], printed: str) -> list[str]:
    if failures and printed.strip():
        failures.append("the rule printed:")
        failures += [f"  {line}" for line in printed.rstrip().splitlines()]
    return failures
