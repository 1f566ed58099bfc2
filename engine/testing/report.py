"""How `detect test` and `detect validate` print their results."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO

from engine.errors import RuleProblem
from engine.testing.runner import TestResult


def print_problems(problems: Sequence[RuleProblem], stream: IO[str]) -> None:
    for problem in problems:
        print(f"error: {problem}", file=stream)
    files = len({p.path for p in problems})
    print(f"{len(problems)} problem(s) in {files} file(s)", file=stream)


def problems_json(problems: Sequence[RuleProblem]) -> list[dict[str, object]]:
    return [
        {"file": str(p.path), "line": p.line, "key": p.key, "message": p.message} for p in problems
    ]


def print_results(
    results: Sequence[TestResult], stream: IO[str], failures_only: bool = False
) -> None:
    """One line per test (only the failing ones with `failures_only`), a diff under each
    failure, then a recap of the failures and the counts."""
    for result in results:
        if failures_only and result.passed:
            continue
        _print_result(result, stream)
    failed = [r for r in results if not r.passed]
    if failed and not failures_only and len(results) > 1:
        print(f"\nfailed ({len(failed)}):", file=stream)
        for result in failed:
            test = result.test
            first = result.failures[0].strip() if result.failures else ""
            print(
                f"  {test.rule.id} :: {test.name}  ({test.rule.path}:{test.line}) {first}",
                file=stream,
            )
    passed = len(results) - len(failed)
    print(f"{passed} passed, {len(failed)} failed", file=stream)


def _print_result(result: TestResult, stream: IO[str]) -> None:
    test = result.test
    status = "PASS" if result.passed else "FAIL"
    print(f"{status}  {test.rule.id} :: {test.name}", file=stream)
    if not result.passed:
        print(f"      at {test.rule.path}:{test.line}", file=stream)
        for line in result.failures:
            print(f"      {line}", file=stream)


def results_json(results: Sequence[TestResult]) -> str:
    passed = sum(r.passed for r in results)
    return json.dumps(
        {
            "passed": passed,
            "failed": len(results) - passed,
            "results": [r.to_dict() for r in results],
        },
        indent=2,
    )
