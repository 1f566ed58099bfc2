"""The rule formats the engine reads, registered in one place: Panther's and the native
YAML format. Everything that loads a rule pack (the commands, the rule tests, the pytest
plugin, the catalog, the benchmarks) loads it through here; the loader itself
(`engine.detection.loader`) knows only the `RuleFormat` protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from engine.detection.formats import RuleFormat
from engine.detection.loader import RuleSet
from engine.detection.loader import check_rules as _check_rules
from engine.detection.native import NativeFormat
from engine.errors import RuleLoadError, RuleProblem
from engine.panther import PantherOptions
from engine.panther.format import PantherFormat

# Asked in this order; the native format takes every YAML document no other one claims.
FORMATS: list[Callable[[PantherOptions], RuleFormat]] = [
    PantherFormat,
    lambda _options: NativeFormat(),
]


def shipped_formats(panther: PantherOptions | None = None) -> list[RuleFormat]:
    options = panther or PantherOptions()
    return [make(options) for make in FORMATS]


def check_rules(
    paths: Iterable[Path], panther: PantherOptions | None = None
) -> tuple[RuleSet, list[RuleProblem]]:
    """Load what can be loaded and report every problem (for `detect validate`);
    `panther` says where Panther's global helpers are and whether its test-expectation
    extension is on."""
    return _check_rules(paths, shipped_formats(panther))


def load_rules(paths: Iterable[Path], panther: PantherOptions | None = None) -> RuleSet:
    """The rule set of `paths`, in every shipped format; raises `RuleLoadError` listing
    every problem."""
    ruleset, problems = check_rules(paths, panther)
    if problems:
        raise RuleLoadError(problems)
    return ruleset
