"""The native rule format: a YAML document checked against `rules.schema.json` and
compiled into one `Rule` (its `match`/`when` closures, templates, threshold, new value or
sequence), with every problem collected with its line."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jmespath

from engine.detection.functions import NamedLists
from engine.detection.jmespath_closures import compile_expression
from engine.detection.operators import (
    MatchError,
    MatchErrors,
    compile_match,
    compile_path,
    exact_values,
    pinned_values,
)
from engine.detection.python_rules import PythonRuleError, import_rule_module
from engine.detection.rule import (
    LOG_TYPE,
    DataCheck,
    Learn,
    NewValue,
    Rule,
    Sequence,
    Step,
    Threshold,
    TypePin,
)
from engine.detection.templates import compile_template
from engine.durations import parse_duration
from engine.errors import RuleProblem
from engine.yaml_lines import line_at

DEFAULT_FORGET = "90d"


def _truthy(value: Any) -> bool:
    """JMESPath's truth: false, null, empty string, list and object are false; 0 is true."""
    if value is None or value is False:
        return False
    return not (isinstance(value, str | list | dict | tuple) and len(value) == 0)


# `null` is left out: a bare `null` reads an absent field, null, so it means `null` anyway.
_LITERAL_WORDS = ("true", "false")


def bare_literals(text: str) -> list[str]:
    """The words `true` and `false` a JMESPath expression compares as fields: JMESPath
    reads a bare `false` as the field named false (its literals are `` `false` ``)."""
    found: list[str] = []

    def walk(node: Any, compared: bool) -> None:
        if not isinstance(node, dict):
            return
        if (
            compared
            and node.get("type") == "field"
            and node.get("value") in _LITERAL_WORDS
            and f'"{node["value"]}"' not in text
        ):
            found.append(node["value"])
        for child in node.get("children", []):
            walk(child, node.get("type") == "comparator")

    walk(jmespath.compile(text).parsed, False)
    return list(dict.fromkeys(found))


class NativeCompiler:
    """Compiles one checked document; collects problems with their lines."""

    def __init__(self, path: Path, doc: Mapping[str, Any], lists: NamedLists, options) -> None:
        self.path = path
        self.doc = doc
        self.lists = lists
        self.options = options
        self.problems: list[RuleProblem] = []
        self.step_types: frozenset[str] | None = None

    def problem(self, where: list[Any], message: str) -> None:
        key = ".".join(str(p) for p in where)
        self.problems.append(RuleProblem(self.path, line_at(self.doc, where), key, message))

    def duration(self, where: list[Any], text: str):
        try:
            return parse_duration(text)
        except ValueError as exc:
            self.problem(where, str(exc))
            return None

    def path_getter(self, where: list[Any], text: str):
        try:
            return compile_path(text, self.options)
        except MatchError as exc:
            self.problem(where, str(exc))
            return None

    def template(self, where: list[Any], text: str):
        try:
            return compile_template(text, self.options)
        except MatchError as exc:
            self.problem(where, str(exc))
            return None

    def conditions(
        self, where: list[Any], block: Mapping[str, Any]
    ) -> tuple[list[DataCheck], frozenset[str] | None, TypePin | None]:
        """The compiled `match` and `when` of a rule or a sequence step, the activity types
        the `match` pins (None when it could hold on any type), and its `TypePin` when its
        `type` entry admits exactly some types."""
        checks: list[DataCheck] = []
        types = None
        match = block.get("match", {})
        if "match" in block:
            try:
                checks.append(compile_match(match, self.lists, self.options))
            except MatchErrors as exc:
                for path, message in exc.errors:
                    self.problem([*where, "match", path], message)
            if "type" in match:
                types = pinned_values(match["type"])
        when: list[DataCheck] = []
        if "when" in block:
            try:
                expression = compile_expression(block["when"], self.options)
                when.append(lambda d: _truthy(expression(d)))
                for word in bare_literals(block["when"]):
                    self.problem(
                        [*where, "when"],
                        f"`{word}` here is a field named {word!r}, not the value: JMESPath"
                        f' writes literals in backquotes, `` `{word}` `` (or "{word}" for a'
                        " field really named so)",
                    )
            except jmespath.exceptions.JMESPathError as exc:
                hint = ""
                if "NUMBER" in str(exc):
                    hint = " (a number in a JMESPath comparison is a literal: `5`)"
                self.problem([*where, "when"], f"invalid JMESPath: {exc}{hint}")
        checks.extend(when)
        pin = None
        exact = exact_values(match["type"]) if "type" in match else None
        if exact is not None and not self.problems:
            rest = {path: condition for path, condition in match.items() if path != "type"}
            unpinned = [compile_match(rest, self.lists, self.options)] if rest else []
            pin = TypePin(exact, (*unpinned, *when), first=next(iter(match)) == "type")
        return checks, types, pin

    def new_value(self, spec: Mapping[str, Any]) -> NewValue | None:
        of = self.path_getter(["new_value", "of"], spec["of"])
        per = self.path_getter(["new_value", "per"], spec["per"]) if "per" in spec else None
        forget = self.duration(["new_value", "forget"], spec.get("forget", DEFAULT_FORGET))
        if of is None or forget is None or ("per" in spec and per is None):
            return None
        learn_from = spec.get("learn_from", "matches")
        return NewValue(
            of=of,
            of_path=spec["of"],
            per=per,
            per_path=spec.get("per"),
            forget=forget,
            learn_from="all" if isinstance(learn_from, list) else learn_from,
            alert_on_first=spec.get("alert_on_first", False),
            learn_types=frozenset(learn_from) if isinstance(learn_from, list) else None,
        )

    def sequence(self, spec: Mapping[str, Any]) -> Sequence | None:
        within = self.duration(["sequence", "within"], spec["within"])
        steps = []
        step_types: set[str] = set()
        pinned = True
        for index, step in enumerate(spec["steps"]):
            where = ["sequence", "steps", index]
            checks, types, pin = self.conditions(where, step)
            by = self.path_getter([*where, "by"], step["by"])
            if by is not None:
                steps.append(Step(tuple(checks), by, step["by"], pin))
            if types is None:
                pinned = False
            else:
                step_types |= types
        reset = None
        if "reset" in spec:
            where = ["sequence", "reset"]
            checks, types, pin = self.conditions(where, spec["reset"])
            by = self.path_getter([*where, "by"], spec["reset"]["by"])
            if by is None:
                return None
            reset = Step(tuple(checks), by, spec["reset"]["by"], pin)
            if types is None:
                pinned = False
            else:
                step_types |= types
        self.step_types = frozenset(step_types) if pinned else None
        if within is None or len(steps) != len(spec["steps"]):
            return None
        return Sequence(within, tuple(steps), reset)

    def compile(self) -> Rule:
        doc = self.doc
        rule = Rule(
            id=doc["id"],
            name=doc["name"],
            severity=doc["severity"],
            path=self.path,
            description=doc.get("description", ""),
            runbook=doc.get("runbook", ""),
            reference=doc.get("reference", ""),
            tags=list(doc.get("tags", [])),
            mitre=list(doc.get("mitre", [])),
            log_types=list(doc.get("log_types", [LOG_TYPE])),
            enabled=doc.get("enabled", True),
            destinations=list(doc["destinations"]) if "destinations" in doc else None,
            tests=doc.get("tests", []),
            document=doc,
        )
        checks, types, pin = self.conditions([], doc)
        rule.checks.extend(checks)
        rule.types = types
        rule.pin = pin
        if "python" in doc:
            try:
                rule.module = import_rule_module(self.path.parent / doc["python"])
            except PythonRuleError as exc:
                self.problem(["python"], str(exc))
        if "time_budget" in doc:
            rule.time_budget = float(doc["time_budget"])
        if "title" in doc:
            rule.title_template = self.template(["title"], doc["title"])
        dedup = doc.get("dedup", {})
        if "key" in dedup:
            rule.dedup_template = self.template(["dedup", "key"], dedup["key"])
        if "window" in dedup:
            rule.dedup_window = self.duration(["dedup", "window"], dedup["window"])
        if "threshold" in doc:
            spec = doc["threshold"]
            window = self.duration(["threshold", "window"], spec["window"])
            distinct = spec.get("distinct")
            getter = self.path_getter(["threshold", "distinct"], distinct) if distinct else None
            if window is not None:
                rule.threshold = Threshold(spec["count"], window, getter, distinct)
        if "new_value" in doc:
            rule.new_value = self.new_value(doc["new_value"])
        if "sequence" in doc:
            rule.sequence = self.sequence(doc["sequence"])
            if rule.types is None and "match" not in doc:
                rule.types = self.step_types
        for index, spec in enumerate(doc.get("learn", [])):
            where = ["learn", index]
            if spec["list"] not in self.lists.lists:
                self.problem(
                    [*where, "list"],
                    f"no named list {spec['list']!r}: a learned "
                    f"list extends lists/{spec['list']}.yml, which may be empty",
                )
                continue
            add = "add" in spec
            getter = self.path_getter(
                [*where, "add" if add else "remove"], spec["add" if add else "remove"]
            )
            if getter is not None:
                rule.learn.append(Learn(spec["list"], getter, add))
        rule.alert = doc.get("alert", True)
        stateful = [k for k in ("threshold", "new_value", "sequence") if k in doc]
        if len(stateful) > 1:
            self.problem(
                [stateful[1]],
                f"a rule takes one of threshold, new_value and sequence,"
                f" not {' and '.join(stateful)}",
            )
        for index, path in enumerate(doc.get("context", [])):
            getter = self.path_getter(["context", index], path)
            if getter is not None:
                rule.context_paths[path] = getter
        return rule


def compile_rule(
    path: Path, doc: Mapping[str, Any], lists: NamedLists, options: jmespath.Options
) -> tuple[Rule | None, list[RuleProblem]]:
    """One schema-checked native document as a `Rule`, or the problems that stop it."""
    compiler = NativeCompiler(path, doc, lists, options)
    rule = compiler.compile()
    return (None if compiler.problems else rule), compiler.problems


class NativeFormat:
    """`engine.detection.formats.RuleFormat` for native rule files: every YAML document
    no other format claims."""

    name = "native"
    id_key = "id"
    whole_set = False

    def claims_file(self, path: Path) -> bool:
        return False

    def claims_document(self, document: Any) -> bool:
        return True

    def compile(
        self,
        documents: Iterable[tuple[Path, Any]],
        lists: NamedLists,
        options: jmespath.Options,
    ) -> tuple[list[Rule], list[RuleProblem]]:
        # Imported here: jsonschema is slow to import, and Panther-only sets never need it.
        from engine.detection.schema import check_document

        rules: list[Rule] = []
        problems: list[RuleProblem] = []
        for path, doc in documents:
            schema_problems = check_document(doc, path)
            if schema_problems:
                problems.extend(schema_problems)
                continue
            rule, found = compile_rule(path, doc, lists, options)
            problems.extend(found)
            if rule is not None:
                rules.append(rule)
        return rules, problems
