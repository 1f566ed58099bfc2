"""The evaluator's fast paths give what the plain semantics give: fused `match` entries,
the `type` condition the index already answers, sequence steps sharing a `by` value, the
per-type plans, the `Event` built only for Python rules, and matches rendered on demand."""

from __future__ import annotations

import dataclasses
import itertools
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import jmespath
import pytest

from engine.activity import Event, parse_activity
from engine.detection import evaluator as evaluator_module
from engine.detection.evaluator import Evaluator
from engine.detection.functions import NamedLists, make_options
from engine.detection.operators import compile_check, same
from engine.detection.rule import Match, Rule, Sequence, Step

OPTIONS = make_options(NamedLists())
MISSING = object()

CONDITIONS: list[Any] = [
    None,
    "a",
    "",
    1,
    0,
    True,
    1.0,
    [],
    ["a", "b"],
    ["a", 1],
    [1, 2],
    [True],
    [1.0, "a"],
    [None],
    [["a"]],
    {"exists": True},
    {"exists": False},
    {"equals": "a"},
    {"equals": 1},
    {"equals": None},
    {"equals": ["a"]},
    {"equals": False},
    {"in": ["a", 1]},
    {"in": [False, 0]},
    {"in": ["a"], "exists": True},
    {"not_in": ["a", 1]},
]
VALUES: list[Any] = [
    MISSING,
    None,
    "a",
    "b",
    "",
    "1",
    0,
    1,
    2,
    1.0,
    math.nan,
    True,
    False,
    [],
    ["a"],
    {},
    {"a": 1},
]


def expected(condition: Any, value: Any) -> bool:
    """The documented meaning (docs/architecture.md), written out plainly."""
    if condition is None:
        return value is None
    if isinstance(condition, list):
        return value is not None and any(same(value, item) for item in condition)
    if not isinstance(condition, dict):
        return value is not None and same(value, condition)
    results = []
    for key, argument in condition.items():
        if key == "exists":
            results.append((value is not None) is argument)
        elif key == "equals":
            results.append(value is not None and same(value, argument))
        elif key == "in":
            results.append(value is not None and any(same(value, i) for i in argument))
        elif key == "not_in":
            results.append(not any(same(value, i) for i in argument))
    return all(results)


def documents(path: str, value: Any) -> list[dict[str, Any]]:
    """A document in which the dotted `path` resolves to `value` (or is missing), and ones
    with a step that is not an object."""
    steps = path.split(".")
    found: dict[str, Any] = {} if value is MISSING else {steps[-1]: value}
    for name in reversed(steps[:-1]):
        found = {name: found}
    return [found, {steps[0]: "text"}, {steps[0]: ["list"]}]


@pytest.mark.parametrize("path", ["v", "a.v", "a.b.v", "v || w"])
@pytest.mark.parametrize("condition", CONDITIONS, ids=repr)
def test_fused_entries_mean_what_the_operators_mean(path, condition):
    check = compile_check(path, condition, NamedLists(), OPTIONS)
    for value in VALUES:
        for document in documents(path.split(" ")[0], value):
            resolved = jmespath.search(path, document, options=OPTIONS)
            want = expected(condition, resolved)
            assert bool(check(document)) is want, (path, condition, document)


# -- the `type` condition ---------------------------------------------------------------

RULES = {
    "first.yml": """
        id: t.first
        name: type first
        severity: low
        match: {type: [a, b], v: x}
    """,
    "later.yml": """
        id: t.later
        name: type after a path that can fail
        severity: low
        match: {"lower(v)": x, type: a}
    """,
    "operators.yml": """
        id: t.operators
        name: type with more than a pin
        severity: low
        match: {type: {in: [a, b], not_equals: b}}
    """,
    "when.yml": """
        id: t.when
        name: type and when
        severity: low
        match: {type: {equals: b}}
        when: "v == 'x'"
    """,
}


def outcome(evaluator: Evaluator, record) -> tuple[list[str], list[tuple[str, str]]]:
    matches, errors = evaluator.evaluate(record)
    return [m.rule.id for m in matches], [(r.id, type(e).__name__) for r, e in errors]


@pytest.fixture
def pinned(rules_dir):
    for name, text in RULES.items():
        rules_dir.write(name, text)
    return rules_dir.load()


@pytest.mark.parametrize(("kind", "v"), list(itertools.product(["a", "b", "c"], ["x", "X", 1])))
def test_the_type_index_and_the_type_condition_agree(pinned, make_activity, kind, v):
    record = parse_activity(make_activity(kind, v=v))
    indexed = Evaluator(pinned)
    unindexed = Evaluator(
        dataclasses.replace(
            pinned, rules=[dataclasses.replace(r, types=None) for r in pinned.rules]
        )
    )
    matches, errors = outcome(indexed, record)
    direct = [r.id for r in pinned.rules if _evaluate(r, record) is not None]
    assert matches == direct
    # Unindexed, a rule may also fail on a type the index would have kept from it: the
    # condition before `type` runs first, as written.
    assert outcome(unindexed, record)[0] == matches
    want_error = [("t.later", "JMESPathTypeError")] if v == 1 else []
    assert errors == (want_error if kind == "a" else [])
    assert outcome(unindexed, record)[1] == want_error


def _evaluate(rule: Rule, record) -> Match | None:
    try:
        return rule.evaluate(record, None)
    except jmespath.exceptions.JMESPathTypeError:
        return None


def test_only_an_exact_type_condition_is_left_to_the_index(pinned):
    pins = {rule.id: rule.pin for rule in pinned.rules}
    assert pins["t.first"].types == {"a", "b"} and pins["t.first"].first
    assert pins["t.later"].types == {"a"} and not pins["t.later"].first
    assert pins["t.when"].types == {"b"} and len(pins["t.when"].checks) == 1  # the `when`
    assert pins["t.operators"] is None


# -- sequences -----------------------------------------------------------------------------


def test_steps_sharing_a_by_path_compute_it_once(make_activity):
    calls = []

    def by(data: dict[str, Any]) -> Any:
        calls.append(data["id"])
        return data.get("who")

    def step(path: str = "who") -> Step:
        return Step((), by, path)

    rule = Rule(
        id="t.sequence",
        name="sequence",
        severity="low",
        path=Path("rule.yml"),
        sequence=Sequence(timedelta(minutes=5), (step(), step(), step("other")), step()),
    )
    record = parse_activity(make_activity(who="ana"))
    match = rule.evaluate(record, None)
    assert match is not None
    assert match.steps == ((0, "ana"), (1, "ana"), (2, "ana"), (-1, "ana"))
    assert len(calls) == 3  # once for steps 0 and 1, once for 2, once for the reset
    assert rule.evaluate(parse_activity(make_activity()), None) is None


# -- the plans -----------------------------------------------------------------------------


def test_an_error_is_reported_and_the_other_rules_still_run(rules_dir, make_activity):
    rules_dir.write(
        "bad.yml",
        """
        id: t.bad
        name: fails on a number
        severity: low
        match: {type: a}
        when: "lower(v) == 'x'"
        """,
    )
    ruleset = rules_dir.load()
    evaluator = Evaluator(ruleset)
    record = parse_activity(make_activity("a", v=1))
    # Alone on its type: the one-rule plan.
    assert outcome(evaluator, record) == ([], [("t.bad", "JMESPathTypeError")])
    rules_dir.write(
        "good.yml",
        """
        id: t.good
        name: holds
        severity: low
        match: {type: a}
        """,
    )
    evaluator = Evaluator(rules_dir.load())
    assert outcome(evaluator, record) == (["t.good"], [("t.bad", "JMESPathTypeError")])
    assert outcome(evaluator, parse_activity(make_activity("a", v="X"))) == (
        ["t.bad", "t.good"],
        [],
    )


def test_the_event_is_built_only_for_python_rules(rules_dir, make_activity, monkeypatch):
    rules_dir.write("plain.yml", "id: t.plain\nname: plain\nseverity: low\nmatch: {type: a}\n")
    rules_dir.write(
        "python.yml", "id: t.python\nname: python\nseverity: low\nmatch: {type: b}\npython: p.py\n"
    )
    rules_dir.write("p.py", "def rule(event):\n    return event['v'] == event.created_at.year\n")
    evaluator = Evaluator(rules_dir.load())
    built = []
    real = evaluator_module.Event.of
    monkeypatch.setattr(
        evaluator_module.Event, "of", lambda *args: built.append(args) or real(*args)
    )
    assert outcome(evaluator, parse_activity(make_activity("a"))) == (["t.plain"], [])
    assert built == []
    assert outcome(evaluator, parse_activity(make_activity("b", v=2026))) == (["t.python"], [])
    assert len(built) == 1


# -- matches ------------------------------------------------------------------------------


def test_a_match_renders_on_demand_and_once(rules_dir, make_activity):
    rules_dir.write(
        "rule.yml",
        """
        id: t.render
        name: render
        severity: high
        match: {type: a}
        python: p.py
        dedup: {key: "{v}"}
        context: [v]
        """,
    )
    rules_dir.write(
        "p.py",
        """
        titles = []

        def rule(event):
            return True

        def title(event):
            titles.append(event["v"])
            return f"seen {event['v']}"
        """,
    )
    (rule,) = rules_dir.load().rules
    record = parse_activity(make_activity("a", v="x"))
    match = rule.evaluate(record, Event.of(record))
    assert match.dedup_key == "x"
    assert rule.module.titles == []  # the key alone does not run title()
    assert (match.title, match.severity, match.context) == ("seen x", "high", {"v": "x"})
    assert (match.title, match.dedup_key) == ("seen x", "x")
    assert rule.module.titles == ["x"]


def test_a_match_takes_its_outputs_as_keywords(make_activity):
    rule = Rule(id="t.eager", name="eager", severity="low", path=Path("rule.yml"))
    record = parse_activity(make_activity())
    match = Match(
        rule=rule,
        activity=record,
        title="t",
        dedup_key="d",
        severity="medium",
        context={"k": 1},
        destinations=None,
        runbook="r",
        description="x",
    )
    assert (match.title, match.dedup_key, match.severity, match.description) == (
        "t",
        "d",
        "medium",
        "x",
    )
    assert (match.reference, match.distinct_value, match.steps) == (None, None, ())


def test_a_feed_of_endless_types_compiles_and_remembers_a_bounded_amount(
    rules_dir, make_activity, monkeypatch
):
    monkeypatch.setattr("engine.detection.rule.MAX_RUNNERS", 50)
    monkeypatch.setattr(evaluator_module, "MAX_RUNNERS", 50)
    rules_dir.write(
        "any.yml",
        "id: t.any\nname: Any type from u1\nseverity: low\nmatch:\n  actor.user_id: u1\n",
    )
    ruleset = rules_dir.load()
    evaluator = Evaluator(ruleset)
    (rule,) = ruleset.rules
    compiled = []
    monkeypatch.setattr(
        rule, "_compile", lambda t, original=rule._compile: compiled.append(t) or original(t)
    )
    found = 0
    for n in range(300):
        actor = {"type": "user_actor", "user_id": "u1" if n % 2 else "u2"}
        matches, errors = evaluator.evaluate(
            parse_activity(make_activity(f"junk_{n}", actor=actor))
        )
        found += len(matches)
        assert errors == []
    assert found == 150
    assert compiled == [None]  # one closure serves every type no pin names
    assert len(rule._runners) <= 50
    assert len(evaluator._plans) <= 50
