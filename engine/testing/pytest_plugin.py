"""pytest plugin: every inline test of a rule file becomes a pytest item.

Registered through the `pytest11` entry point, so a rules repository needs no conftest:
`pytest rules/` runs the same tests as `detect test rules/`, with pytest's selection
(`-k`), reporting and CI integrations.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.detection.loader import RULE_SUFFIXES, RuleSet
from engine.errors import RuleProblem
from engine.rule_formats import check_rules
from engine.testing.runner import RuleTest, collect, run_test
from engine.yaml_lines import YamlError, load_yaml


def _looks_like_rule(path: Path) -> bool:
    """A YAML mapping with tests: cheap enough to ask of every YAML file."""
    if "lists" in path.parts[:-1]:
        return False
    try:
        document = load_yaml(path)
    except YamlError:
        return False
    if not isinstance(document, dict):
        return False
    # Native rules have `id` and `tests`; Panther-format rules `AnalysisType` and `Tests`.
    return ("id" in document and "tests" in document) or (
        "AnalysisType" in document and "Tests" in document
    )


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix in RULE_SUFFIXES and _looks_like_rule(file_path):
        return RuleFile.from_parent(parent, path=file_path)
    return None


class RuleTestFailure(AssertionError):
    """A rule test whose outcome differs from its expectation."""


class RuleLoadFailure(Exception):
    """The rule file itself is invalid."""


_LOADED: dict[Path, tuple[RuleSet, list[RuleProblem]]] = {}


def _rules_root(path: Path) -> Path:
    """The rules directory a file belongs to: the nearest folder above it with `lists/`,
    else its own folder. Loading the whole directory gives a test the rules that teach
    learned lists, and the duplicate-id check, exactly as `detect test` has them."""
    for folder in path.resolve().parents:
        if (folder / "lists").is_dir():
            return folder
    return path.resolve().parent


def _load_root(root: Path) -> tuple[RuleSet, list[RuleProblem]]:
    if root not in _LOADED:
        _LOADED[root] = check_rules([root])
    return _LOADED[root]


class RuleFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        ruleset, problems = _load_root(_rules_root(self.path))
        mine = self.path.resolve()
        own = [p for p in problems if p.path.resolve() == mine]
        if own:
            text = "\n".join(str(p) for p in own)
            yield RuleFileError.from_parent(self, name="load", problems=text)
            return
        for test in collect(ruleset):
            if test.rule.path.resolve() == mine:
                yield RuleTestItem.from_parent(self, name=test.node_id, test=test, ruleset=ruleset)


class RuleFileError(pytest.Item):
    def __init__(self, *, problems: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problems = problems

    def runtest(self) -> None:
        raise RuleLoadFailure(self.problems)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        return f"invalid rule file:\n{self.problems}"

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.path.name}: load"


class RuleTestItem(pytest.Item):
    def __init__(self, *, test: RuleTest, ruleset: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.test = test
        self.ruleset = ruleset

    def runtest(self) -> None:
        result = run_test(self.test, self.ruleset)
        if not result.passed:
            raise RuleTestFailure("\n".join(result.failures))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        if isinstance(excinfo.value, RuleTestFailure):
            return f"{self.test.rule.path}:{self.test.line}: {self.name}\n{excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.test.rule.path, self.test.line - 1, self.name
