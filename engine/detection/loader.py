"""Finding, checking and compiling rule files, in every format registered with it.

Every problem in every file is collected before anything is reported, so `detect validate`
shows a whole rules directory's mistakes at once; a rule set with any problem does not
load at all, because a half-loaded pack silently misses attacks.

The loader knows formats only through `engine.detection.formats.RuleFormat`: a file a
format claims by its bytes goes to it unread; every other file is read as YAML and goes
to the first format that claims the document (the native format claims the rest).
`engine.rule_formats` names the formats the engine ships.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jmespath

from engine.detection.formats import RuleFormat
from engine.detection.functions import NamedLists, make_options
from engine.detection.native import NativeFormat
from engine.detection.rule import LOG_TYPE, Rule
from engine.errors import RuleLoadError, RuleProblem
from engine.yaml_lines import YamlError, line_at, load_yaml

RULE_SUFFIXES = (".yml", ".yaml")


@dataclass
class RuleSet:
    """The rules of one or more directories, and the lists and JMESPath options they share."""

    rules: list[Rule]
    lists: NamedLists
    options: jmespath.Options
    skipped: list[Rule] = field(default_factory=list)

    def get(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules + self.skipped if r.id == rule_id), None)


def discover(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """Rule files under `paths` (files or directories, `lists/` folders excluded), and the
    directories whose `lists/` folders hold their named lists (the nearest above each path
    that has one)."""
    files: list[Path] = []
    list_dirs: list[Path] = []
    for given in paths:
        given = Path(given)
        if given.is_dir():
            for candidate in sorted(given.rglob("*")):
                rel = candidate.relative_to(given).parts
                if candidate.suffix not in RULE_SUFFIXES or not candidate.is_file():
                    continue
                if "lists" in rel[:-1] or any(p.startswith(".") for p in rel):
                    continue
                files.append(candidate)
        elif given.is_file():
            files.append(given)
        start = given if given.is_dir() else given.parent
        for folder in (start.resolve(), *start.resolve().parents):
            if (folder / "lists").is_dir():
                if folder not in list_dirs:
                    list_dirs.append(folder)
                break
    unique = list(dict.fromkeys(f.resolve() for f in files))
    return unique, list_dirs


def check_rules(
    paths: Iterable[Path], formats: Sequence[RuleFormat] | None = None
) -> tuple[RuleSet, list[RuleProblem]]:
    """Load what can be loaded and report every problem (for `detect validate`).
    `formats`: the rule formats to read, in the order they are asked (native YAML alone
    when None; the native format is always asked last)."""
    formats = [f for f in formats or () if not isinstance(f, NativeFormat)] + [NativeFormat()]
    files, list_dirs = discover(paths)
    lists, problems = NamedLists.load(list_dirs)
    options = make_options(lists)
    rules: list[Rule] = []
    skipped: list[Rule] = []
    seen: dict[str, Path] = {}
    claimed: dict[str, list[tuple[Path, Any]]] = {f.name: [] for f in formats}

    def admit(rule: Rule, path: Path, doc: Any, id_key: str) -> None:
        if rule.id in seen:
            problems.append(
                RuleProblem(
                    path,
                    line_at(doc, [id_key]),
                    id_key,
                    f"duplicate rule id {rule.id!r} (also in {seen[rule.id]})",
                )
            )
            return
        seen[rule.id] = path
        active = rule.enabled and LOG_TYPE in rule.log_types
        (rules if active else skipped).append(rule)

    def compile_with(fmt: RuleFormat, documents: list[tuple[Path, Any]]) -> None:
        compiled, found = fmt.compile(documents, lists, options)
        problems.extend(found)
        for rule in compiled:
            admit(rule, rule.path, rule.document, fmt.id_key)

    for path in files:
        by_bytes = next((f for f in formats if f.claims_file(path)), None)
        if by_bytes is not None:
            claimed[by_bytes.name].append((path, None))
            continue
        try:
            doc = load_yaml(path)
        except YamlError as exc:
            problems.append(RuleProblem(path, exc.line, "", f"invalid YAML: {exc.message}"))
            continue
        owner = next(f for f in formats if f.claims_document(doc))
        if owner.whole_set:
            claimed[owner.name].append((path, doc))
        else:
            compile_with(owner, [(path, doc)])
    for fmt in formats:
        if claimed[fmt.name]:
            compile_with(fmt, claimed[fmt.name])
    return RuleSet(rules, lists, options, skipped), problems


def load_rules(paths: Iterable[Path], formats: Sequence[RuleFormat] | None = None) -> RuleSet:
    """The rule set of `paths`; raises `RuleLoadError` listing every problem."""
    ruleset, problems = check_rules(paths, formats)
    if problems:
        raise RuleLoadError(problems)
    return ruleset
