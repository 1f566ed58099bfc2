"""How `detect test --mutate` prints its report."""

from __future__ import annotations

import json
from typing import IO

from engine.testing.mutate import PackReport


def _score(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:5.1f}%"


def print_report(report: PackReport, stream: IO[str], min_score: float | None = None) -> None:
    for rule in report.rules:
        if rule.failing_tests:
            print(f"FAIL    {rule.rule.id}: its own tests fail, no mutants run", file=stream)
            for name in rule.failing_tests:
                print(f"        failing: {name}", file=stream)
            continue
        extra = []
        if rule.count("equivalent"):
            extra.append(f"{rule.count('equivalent')} equivalent")
        if rule.count("invalid"):
            extra.append(f"{rule.count('invalid')} invalid")
        note = f" ({', '.join(extra)})" if extra else ""
        print(
            f"{_score(rule.score)}  {rule.rule.id}: {rule.count('killed')}/{rule.scored} "
            f"killed{note}",
            file=stream,
        )
        for result in rule.survivors:
            mutant = result.mutant
            print(f"        survived: {mutant.change}", file=stream)
            print(f"          at {rule.rule.path}:{result.line}", file=stream)
            print(f"          hint: {mutant.hint}", file=stream)
    parts = [
        f"{report.count('killed')}/{report.scored} mutants killed",
        f"{report.count('survived')} survived",
        f"{report.count('equivalent')} equivalent (not scored)",
    ]
    if report.count("invalid"):
        parts.append(f"{report.count('invalid')} invalid (not scored)")
    print(
        f"pack mutation score {_score(report.score).strip()}: {', '.join(parts)}; "
        f"{len(report.rules)} rules in {report.seconds:.2f}s",
        file=stream,
    )
    if report.failing:
        print(f"{len(report.failing)} rule(s) have failing tests", file=stream)
    if min_score is not None and report.score is not None and report.score < min_score:
        print(f"below the minimum score {min_score:g}%", file=stream)


def report_json(report: PackReport) -> str:
    return json.dumps(report.to_dict(), indent=2)


def passes(report: PackReport, min_score: float | None) -> bool:
    """Exit status: no failing rule tests, and the pack score at least `min_score`."""
    if report.failing:
        return False
    if min_score is None or report.score is None:
        return True
    return report.score >= min_score
