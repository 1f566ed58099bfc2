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


def print_results(results: Sequence[TestResult], stream: IO[str]) -> None:
    for result in results:
        test = result.test
        status = "PASS" if result.passed else "FAIL"
        print(f"{status}  {test.rule.id} :: {test.name}", file=stream)
        if not result.passed:
            print(f"      at {test.rule.path}:{test.line}", file=stream)
            for line in result.failures:
                print(f"      {line}", file=stream)
    passed = sum(r.passed for r in results)
    print(f"{passed} passed, {len(results) - passed} failed", file=stream)


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
