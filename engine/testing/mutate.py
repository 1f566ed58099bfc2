"""Mutation testing of rules: run each rule's own tests against its mutants.

A mutant is compiled in-process from the rule's changed definition (only that rule, with
the rule set's lists and options), swapped into the rule set in place of the rule, and its
tests run through the same runner as `detect test`, stopping at the first test that fails
(the mutant is then "killed"). A mutant every test passes on "survives": its hint names
the test that is missing. Equivalent mutants (provably the same verdicts) and mutants that
do not compile are counted apart and left out of the score.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import sys
import time
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.detection.loader import RuleSet
from engine.detection.native import compile_rule
from engine.detection.rule import Rule
from engine.testing.mutants import Mutant, generate
from engine.testing.runner import RuleTest, run_test
from engine.yaml_lines import line_at


@dataclass
class MutantResult:
    mutant: Mutant
    status: str  # killed | survived | equivalent | invalid
    detail: str = ""  # the test that killed it, the reason it is equivalent or invalid
    line: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.mutant.kind,
            "where": self.mutant.location,
            "line": self.line,
            "change": self.mutant.change,
            "status": self.status,
            "detail": self.detail,
            "hint": self.mutant.hint,
        }


@dataclass
class RuleReport:
    rule: Rule
    results: list[MutantResult] = field(default_factory=list)
    failing_tests: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def scored(self) -> int:
        return self.count("killed") + self.count("survived")

    @property
    def score(self) -> float | None:
        return 100.0 * self.count("killed") / self.scored if self.scored else None

    @property
    def survivors(self) -> list[MutantResult]:
        return [r for r in self.results if r.status == "survived"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule.id,
            "file": str(self.rule.path),
            "tests": len(self.rule.tests),
            "failing_tests": self.failing_tests,
            "mutants": len(self.results),
            "killed": self.count("killed"),
            "survived": self.count("survived"),
            "equivalent": self.count("equivalent"),
            "invalid": self.count("invalid"),
            "score": None if self.score is None else round(self.score, 1),
            "results": [r.to_dict() for r in self.results],
        }


@dataclass
class PackReport:
    rules: list[RuleReport]
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.count(status) for r in self.rules)

    @property
    def scored(self) -> int:
        return self.count("killed") + self.count("survived")

    @property
    def score(self) -> float | None:
        return 100.0 * self.count("killed") / self.scored if self.scored else None

    @property
    def failing(self) -> list[RuleReport]:
        return [r for r in self.rules if r.failing_tests]

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": None if self.score is None else round(self.score, 1),
            "mutants": sum(len(r.results) for r in self.rules),
            "killed": self.count("killed"),
            "survived": self.count("survived"),
            "equivalent": self.count("equivalent"),
            "invalid": self.count("invalid"),
            "seconds": round(self.seconds, 3),
            "rules": [r.to_dict() for r in self.rules],
        }


def _python_module(mutant: Mutant) -> types.ModuleType:
    """The rule's module executed from the mutated syntax tree, under a private name."""
    path = mutant.module_path
    assert path is not None and mutant.module_ast is not None
    digest = hashlib.sha1(f"{path.resolve()}:{mutant.change}".encode()).hexdigest()[:12]
    name = f"detect_mutants.{path.stem}_{digest}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    code = compile(mutant.module_ast, str(path), "exec")
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        exec(code, module.__dict__)  # the rule's own code, one operator changed
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(path.parent))
        sys.modules.pop(name, None)
    return module


def build(mutant: Mutant, rule: Rule, ruleset: RuleSet) -> tuple[Rule | None, str]:
    """The mutant compiled as a rule, or None and why it does not compile."""
    if mutant.module_ast is not None:
        try:
            module = _python_module(mutant)
        except Exception as exc:  # noqa: BLE001 - a mutant that does not import is invalid
            return None, f"{type(exc).__name__}: {exc}"
        return dataclasses.replace(rule, module=module), ""
    assert mutant.document is not None
    doc = {k: v for k, v in mutant.document.items() if k != "python"}
    try:
        built, problems = compile_rule(rule.path, doc, ruleset.lists, ruleset.options)
    except Exception as exc:  # noqa: BLE001 - a shape the compiler does not take
        return None, f"{type(exc).__name__}: {exc}"
    if built is None:
        return None, "; ".join(p.message for p in problems)
    built.module = rule.module
    built.document = mutant.document
    built.tests = rule.tests
    return built, ""


def _with(ruleset: RuleSet, original: Rule, replacement: Rule) -> RuleSet:
    rules = [replacement if r is original else r for r in ruleset.rules]
    skipped = [replacement if r is original else r for r in ruleset.skipped]
    return RuleSet(rules, ruleset.lists, ruleset.options, skipped)


def _killer(rule: Rule, ruleset: RuleSet) -> str | None:
    """The first test of the rule's tests that fails, or None when all pass."""
    for index, spec in enumerate(rule.tests):
        test = RuleTest(rule, index, spec)
        try:
            result = run_test(test, ruleset)
        except Exception as exc:  # noqa: BLE001 - a crash is a failed test
            return f"{test.name} (crashed: {type(exc).__name__})"
        if not result.passed:
            return test.name
    return None


def mutate_rule(rule: Rule, ruleset: RuleSet) -> RuleReport:
    report = RuleReport(rule)
    baseline = [RuleTest(rule, i, spec) for i, spec in enumerate(rule.tests)]
    report.failing_tests = [t.name for t in baseline if not run_test(t, ruleset).passed]
    if report.failing_tests:
        return report  # mutants of a rule whose tests fail say nothing
    for mutant in generate(rule):
        line = line_at(rule.document, list(mutant.where)) or 0
        if mutant.python_line is not None:
            line = mutant.python_line
        if mutant.equivalent is not None:
            report.results.append(MutantResult(mutant, "equivalent", mutant.equivalent, line))
            continue
        built, why = build(mutant, rule, ruleset)
        if built is None:
            report.results.append(MutantResult(mutant, "invalid", why, line))
            continue
        killer = _killer(built, _with(ruleset, rule, built))
        status = "survived" if killer is None else "killed"
        report.results.append(MutantResult(mutant, status, killer or "", line))
    return report


def _mutable(rule: Rule) -> bool:
    doc = rule.document
    return (
        bool(rule.tests)
        and isinstance(doc, Mapping)
        and "id" in doc
        and getattr(rule, "run_test", None) is None
    )


def mutate_rules(ruleset: RuleSet, keyword: str | None = None) -> PackReport:
    """Mutation reports of every native rule with tests (those whose id has `keyword`)."""
    started = time.perf_counter()
    wanted = keyword.lower() if keyword else None
    chosen: Iterable[Rule] = [
        r
        for r in ruleset.rules + ruleset.skipped
        if _mutable(r) and (wanted is None or wanted in r.id.lower())
    ]
    reports = [mutate_rule(rule, ruleset) for rule in chosen]
    return PackReport(reports, time.perf_counter() - started)
