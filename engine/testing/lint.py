"""What `detect validate` checks in the rules' tests beyond the schema: a test file that
does not exist (an error: the test could only fail later, in `detect test`), and tests
that cannot fail (warnings)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.detection.loader import RuleSet
from engine.errors import RuleProblem
from engine.testing.runner import TestInputError, collect, resolve_test_file
from engine.yaml_lines import line_at

FILE_KEYS = ("event_file", "events_file")


def _empty(path: Path) -> bool:
    """A test file without a single activity in it (blank, `[]`)."""
    try:
        text = path.read_bytes()
    except OSError:
        return False
    return path.suffix != ".gz" and text.strip() in (b"", b"[]")


def lint_tests(ruleset: RuleSet) -> tuple[list[RuleProblem], list[RuleProblem]]:
    """(errors, warnings) of the native rules' tests."""
    errors: list[RuleProblem] = []
    warnings: list[RuleProblem] = []
    for test in collect(ruleset):
        rule = test.rule
        if getattr(rule, "run_test", None) is not None or not isinstance(test.spec, Mapping):
            continue  # Panther tests: their own format
        spec: Mapping[str, Any] = test.spec
        where = ["tests", test.index]

        def problem(key: str, message: str, where=where, rule=rule) -> RuleProblem:
            path = [*where, key] if key else where
            line = line_at(rule.document, path)
            return RuleProblem(rule.path, line, ".".join(map(str, path)), message)

        for key in FILE_KEYS:
            if key in spec:
                try:
                    found = resolve_test_file(rule, str(spec[key]))
                except TestInputError as exc:
                    errors.append(problem(key, f"test {test.name!r}: {exc}"))
                    continue
                if spec.get("alerts") == 0 and _empty(found):
                    warnings.append(
                        problem(key, f"test {test.name!r} cannot fail: `alerts: 0` over no events")
                    )
        if "expect" not in spec and "alerts" not in spec:
            warnings.append(
                problem("", f"test {test.name!r} asserts nothing (no `expect` nor `alerts`)")
            )
        elif "events" in spec and not spec["events"] and spec.get("alerts") == 0:
            warnings.append(
                problem(
                    "alerts",
                    f"test {test.name!r} cannot fail: `alerts: 0` over no events",
                )
            )
    return errors, warnings
