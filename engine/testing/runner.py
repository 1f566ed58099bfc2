"""Running the inline `tests:` of rule files.

A single-event test evaluates the rule's conditions on one activity. A multi-event test
replays its activities, in event-time order, through the real pipeline (evaluator,
correlator, an in-memory store) with only that rule loaded, and counts the alerts it
opens: the same code path production runs, so a passing test means a working rule.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.activity import ActivityRecord, Event, describe_validation_error, parse_activity
from engine.alerts import Alert
from engine.correlation.correlator import AlertChange
from engine.detection.loader import RuleSet
from engine.detection.operators import same
from engine.detection.rule import Rule
from engine.runs import build
from engine.sources.files import Rejected, read_source
from engine.state.store import MemoryStore
from engine.yaml_lines import line_at


class TestInputError(ValueError):
    """A test whose events cannot be read or are not valid activities."""


@dataclass
class RuleTest:
    rule: Rule
    index: int
    spec: Mapping[str, Any]

    @property
    def name(self) -> str:
        spec = self.spec
        return str(spec.get("name", spec.get("Name", f"test {self.index + 1}")))

    @property
    def line(self) -> int:
        key = getattr(self.rule, "tests_key", "tests")  # Panther rules: "Tests"
        return line_at(self.rule.document, [key, self.index])

    @property
    def node_id(self) -> str:
        return f"{self.rule.id}::{self.name}"


@dataclass
class TestResult:
    test: RuleTest
    passed: bool
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.test.rule.id,
            "test": self.test.name,
            "file": str(self.test.rule.path),
            "line": self.test.line,
            "passed": self.passed,
            "failures": self.failures,
            "seconds": round(self.seconds, 6),
        }


def collect(ruleset: RuleSet, keyword: str | None = None) -> list[RuleTest]:
    """Every test of every rule (disabled ones too: their logic still has to be right);
    `keyword` keeps tests whose rule id or name contains it (case-insensitive)."""
    wanted = keyword.lower() if keyword else None
    tests = []
    for rule in ruleset.rules + ruleset.skipped:
        for index, spec in enumerate(rule.tests):
            test = RuleTest(rule, index, spec)
            if wanted is None or wanted in test.node_id.lower():
                tests.append(test)
    return tests


def resolve_test_file(rule: Rule, relative: str) -> Path:
    """A test file path: beside the rule, or in the nearest folder above that holds it."""
    candidate = Path(relative)
    if candidate.is_absolute():
        return candidate
    folder = rule.path.parent
    for base in (folder, *folder.parents):
        if (base / candidate).exists():
            return base / candidate
    raise TestInputError(f"{relative} not found beside {rule.path.name} or in a folder above it")


def _activity(value: Any, where: str) -> ActivityRecord:
    try:
        return parse_activity(value)
    except (ValidationError, TypeError) as exc:
        reason = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise TestInputError(f"{where} is not a valid activity: {reason}") from exc


def _events(test: RuleTest) -> list[ActivityRecord]:
    spec = test.spec
    if "event" in spec:
        return [_activity(_plain(spec["event"]), "event")]
    if "events" in spec:
        return [_activity(_plain(e), f"events[{i}]") for i, e in enumerate(spec["events"])]
    relative = spec.get("event_file") or spec.get("events_file")
    path = resolve_test_file(test.rule, relative)
    activities = []
    for record in read_source(str(path)):
        if isinstance(record, Rejected):
            raise TestInputError(f"{relative} line {record.line}: {record.reason}")
        activities.append(record)
    return activities


def _plain(value: Any) -> Any:
    """YAML nodes (dicts and lists that remember lines) as plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _diff(label: str, expected: Any, actual: Any) -> list[str]:
    return [f"{label}:", f"  - expected: {expected!r}", f"  + actual:   {actual!r}"]


def _check_outputs(spec: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    failures: list[str] = []
    for key in ("title", "dedup", "severity"):
        if key in spec and spec[key] != actual[key]:
            failures += _diff(key, spec[key], actual[key])
    expected_context = spec.get("context") or {}
    for key, value in expected_context.items():
        got = actual["context"].get(key, "<absent>")
        if not same(_plain(value), got):
            failures += _diff(f"context[{key}]", _plain(value), got)
    return failures


def _single(test: RuleTest, ruleset: RuleSet) -> list[str]:
    (activity,) = _events(test)
    rule = test.rule
    ruleset.lists.attach(MemoryStore())  # nothing learned by an earlier test leaks in
    try:
        match = rule.evaluate(activity, Event.of(activity, ruleset.options))
        if match is not None:
            match.rendered  # noqa: B018 - render now, so the rule's errors are reported here
    except Exception as exc:  # noqa: BLE001 - reported as the test's failure
        return [f"the rule raised {type(exc).__name__}: {exc}"]
    expected = bool(test.spec["expect"])
    if (match is not None) != expected:
        return _diff("expect (rule holds)", expected, match is not None)
    if match is None:
        return []
    actual = {
        "title": match.title,
        "dedup": match.dedup_key,
        "severity": match.severity,
        "context": match.context,
    }
    return _check_outputs(test.spec, actual)


def _stateful(test: RuleTest, ruleset: RuleSet) -> list[str]:
    activities = sorted(_events(test), key=lambda a: a.created_at)
    opened: list[Alert] = []
    errors: list[Alert] = []

    def sink(change: AlertChange) -> None:
        if change.change == "opened" and change.alert.rule_id == test.rule.id:
            (errors if change.alert.kind == "rule_error" else opened).append(change.alert)

    # The rule under test, plus the rules that teach named lists what the feed shows (a
    # rule reading a learned list depends on them), counting only the tested rule's alerts.
    teachers = [r for r in ruleset.rules if r.learn and r is not test.rule]
    alone = RuleSet([test.rule, *teachers], ruleset.lists, ruleset.options)
    build.pipeline(alone, None, [sink]).run(activities)
    failures: list[str] = []
    for alert in errors:
        failures.append(f"the rule raised an error: {alert.title}")
    expected = int(test.spec["alerts"])
    if len(opened) != expected:
        failures += _diff("alerts", expected, len(opened))
        for alert in opened:
            failures.append(
                f"  alert: {alert.title!r} (dedup {alert.dedup_key!r}, "
                f"{alert.event_count} events from {alert.first_event_at})"
            )
    if opened:
        first = opened[0]
        actual = {
            "title": first.title,
            "dedup": first.dedup_key,
            "severity": first.severity,
            "context": first.context,
        }
        failures += _check_outputs(test.spec, actual)
    return failures


def run_test(test: RuleTest, ruleset: RuleSet) -> TestResult:
    started = time.perf_counter()
    custom = getattr(test.rule, "run_test", None)  # Panther rules run their own tests
    try:
        if custom is not None:
            failures = custom(test.spec, ruleset)
        elif "event" in test.spec or "event_file" in test.spec:
            failures = _single(test, ruleset)
        else:
            failures = _stateful(test, ruleset)
    except TestInputError as exc:
        failures = [str(exc)]
    return TestResult(test, not failures, failures, time.perf_counter() - started)


def run_tests(tests: Iterable[RuleTest], ruleset: RuleSet) -> list[TestResult]:
    return [run_test(test, ruleset) for test in tests]
