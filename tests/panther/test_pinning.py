"""Type pinning of Panther rules: which rule() functions the evaluator may skip outside
some activity types, proven on their code, and that skipping never changes a result."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from engine.activity import parse_activity
from engine.detection.evaluator import Evaluator
from engine.feedgen import generate
from engine.panther.rule import PantherRule
from engine.rule_formats import load_rules

from .conftest import FIXTURES, PantherDir, activity

PINNED = {
    "equals": ('return event.get("type") == "a"', {"a"}),
    "equals reversed": ('return "a" == event.get("type")', {"a"}),
    "subscript": ('return event["type"] == "a"', {"a"}),
    "get with a default": ('return event.get("type", "") == "a"', {"a"}),
    "in a tuple": ('return event.get("type") in ("a", "b")', {"a", "b"}),
    "in a list": ('return event.get("type") in ["a", "b"]', {"a", "b"}),
    "in a set": ('return event.get("type") in {"a", "b"}', {"a", "b"}),
    "and": ('return event.get("type") == "a" and event.get("x") == 1', {"a"}),
    "and, parenthesised": (
        'return (\n        event.get("type") == "a"\n        and event.get("x") == 1\n    )',
        {"a"},
    ),
    "if not equal": ('if event.get("type") != "a":\n        return False\n    return True', {"a"}),
    "if not in": (
        'if event.get("type") not in ("a", "b"):\n        return False\n    return True',
        {"a", "b"},
    ),
    "if not (equal)": (
        'if not event.get("type") == "a":\n        return False\n    return True',
        {"a"},
    ),
    "docstring first": ('"""Doc."""\n    return event.get("type") == "a"', {"a"}),
    "dispatch on a local": (
        't = event.get("type")\n    if t == "a":\n        return event.get("x") == 1\n'
        '    if t in ("b", "c"):\n        return True\n    return False',
        {"a", "b", "c"},
    ),
    "dispatch with elif": (
        't = event["type"]\n    if t == "a":\n        x = 2\n    elif "b" == t:\n'
        "        return True\n    return False",
        {"a", "b"},
    ),
}

NOT_PINNED = {
    "or": 'return event.get("type") == "a" or event.get("x") == 1',
    "other key": 'return event.get("kind") == "a"',
    "any case key": 'return event.get("TYPE") == "a"',
    "deep_get": 'return event.deep_get("type") == "a"',
    "not a string": 'return event.get("type") == 1',
    "a non-literal default": 'return event.get("type", default()) == "a"',
    "chained": 'return "a" == event.get("type") == "a"',
    "second statement": 'x = 1\n    return event.get("type") == "a"',
    "if returning True": 'if event.get("type") != "a":\n        return True\n    return False',
    "if with else": (
        'if event.get("type") != "a":\n        return False\n    else:\n        return True'
    ),
    "negated equals returned": 'return event.get("type") != "a"',
    "in a mutable list constant": 'return event.get("type") in LIST',
    "in a mutable set constant": 'return event.get("type") in SET',
    "in a call": 'return event.get("type") in frozenset(("a",))',
    "another object": 'return other.get("type") == "a"',
    "dispatch without a final return False": (
        't = event.get("type")\n    if t == "a":\n        return True\n    return True'
    ),
    "dispatch with an else": (
        't = event.get("type")\n    if t == "a":\n        return True\n    else:\n'
        "        return True\n    return False"
    ),
    "dispatch with a test on something else": (
        't = event.get("type")\n    if t == "a":\n        return True\n'
        '    if event.get("x") == 1:\n        return True\n    return False'
    ),
    "dispatch with another statement": (
        't = event.get("type")\n    x = 1\n    if t == "a":\n        return True\n    return False'
    ),
    "dispatch on a negated test": (
        't = event.get("type")\n    if t != "a":\n        return True\n    return False'
    ),
    "dispatch on a global name": (
        'global t\n    t = event.get("type")\n    if t == "a":\n        return True\n'
        "    return False"
    ),
    "dispatch on a copy of the event": (
        'event = event.get("type")\n    if event == "a":\n        return True\n    return False'
    ),
}

PRELUDE = 'LIST = ["a"]\nSET = {"a"}\nother = {}\n\n\ndef default():\n    return ""\n\n\n'


def module_of(body: str, prelude: str = PRELUDE, signature: str = "rule(event)") -> str:
    return f"{prelude}def {signature}:\n    {body}\n"


def types_of(pack: PantherDir, module: str) -> frozenset[str] | None:
    pack.rule("Test.Rule", module)
    (rule,) = pack.load().rules
    return rule.types


@pytest.mark.parametrize("name", PINNED)
def test_a_leading_type_check_pins_the_rule(panther_dir: PantherDir, name: str) -> None:
    body, expected = PINNED[name]
    assert types_of(panther_dir, module_of(body)) == frozenset(expected)


@pytest.mark.parametrize("name", NOT_PINNED)
def test_anything_else_runs_on_every_activity(panther_dir: PantherDir, name: str) -> None:
    assert types_of(panther_dir, module_of(NOT_PINNED[name])) is None


def test_a_module_constant_pins_when_immutable_and_bound_once(panther_dir: PantherDir) -> None:
    body = 'return event.get("type") in KINDS and bool(event.get("x"))'
    for value in ('("a", "b")', 'frozenset({"a", "b"})'):
        module = module_of(body, prelude=f"KINDS = {value}\n\n\n")
        assert types_of(panther_dir, module) == {"a", "b"}, value


@pytest.mark.parametrize(
    "prelude",
    [
        'KINDS = ("a",)\nKINDS = ("b",)\n\n\n',  # bound twice
        'KINDS = ("a",)\n\n\ndef widen():\n    global KINDS\n    KINDS = KINDS + ("b",)\n\n\n',
        'KINDS = ("a",)\n\n\ndef widen():\n    globals()["KINDS"] = ("b",)\n\n\n',
        'import sys\n\nKINDS = ("a",)\n\n\ndef widen():\n'
        '    setattr(sys.modules[__name__], "KINDS", ())\n\n\n',
        'KINDS = ("a",)\nfor KINDS in [("b",)]:\n    pass\n\n\n',
        'KINDS = ("a", 1)\n\n\n',  # not only strings
        "from os import sep as KINDS\n\n\n",
        'if True:\n    KINDS = ("a",)\n\n\n',  # not at top level
    ],
)
def test_a_module_constant_that_may_change_does_not_pin(
    panther_dir: PantherDir, prelude: str
) -> None:
    module = module_of('return event.get("type") in KINDS', prelude=prelude)
    assert types_of(panther_dir, module) is None


@pytest.mark.parametrize(
    "module",
    [
        # A decorator may replace the function.
        "import functools\n\n\n@functools.lru_cache\n"
        'def rule(event):\n    return event.get("type") == "a"\n',
        # rule is rebound after the def: the function that runs is another one.
        'def rule(event):\n    return event.get("type") == "a"\n\n\nrule = lambda event: True\n',
        # A default parameter, or more than one.
        'def rule(event, kinds=("a",)):\n    return event.get("type") in kinds\n',
        'def rule(event, *rest):\n    return event.get("type") == "a"\n',
    ],
)
def test_functions_that_are_not_plain_do_not_pin(panther_dir: PantherDir, module: str) -> None:
    assert types_of(panther_dir, module) is None


def test_the_parameter_may_have_any_name(panther_dir: PantherDir) -> None:
    module = module_of('return e.get("type") == "a"', signature="rule(e)")
    assert types_of(panther_dir, module) == {"a"}
    module = module_of('return event.get("type") == "a"', signature="rule(e)")
    assert types_of(panther_dir, module) is None


def test_a_file_changed_after_the_import_does_not_pin(panther_dir: PantherDir) -> None:
    from engine.panther.pinning import pinned_types

    panther_dir.rule("Test.Rule", module_of('return event.get("type") == "a"'))
    (rule,) = panther_dir.load().rules
    path = panther_dir.path / "rules" / "test_rule.py"
    assert pinned_types(rule.module, path) == {"a"}
    path.write_text(module_of('return event.get("type") == "b"'), encoding="utf-8")
    assert pinned_types(rule.module, path) is None


def test_inline_filters_and_pinning_intersect(panther_dir: PantherDir) -> None:
    extra = """
        InlineFilters:
          - Key: type
            Condition: IsIn
            Values: [a, b]
    """
    panther_dir.rule("Test.Rule", module_of('return event.get("type") in ("b", "c")'), extra=extra)
    (rule,) = panther_dir.load().rules
    assert rule.types == {"b"}


def test_pinned_rules_return_false_on_every_other_type(panther_dir: PantherDir) -> None:
    """The claim itself, on every pinned form: rule() is False outside its types."""
    from engine.panther.rule import live_event

    for index, (body, _) in enumerate(PINNED.values()):
        panther_dir.rule(f"Test.Rule{index}", module_of(body))
    ruleset = panther_dir.load()
    kinds = ["a", "b", "c", "A", "a ", "org_sso_toggled"]
    for rule in ruleset.rules:
        assert rule.types is not None
        for kind in kinds:
            event = live_event(parse_activity(activity(type=kind, x=1)))
            result = rule.module.rule(event)
            if kind not in rule.types:
                assert result is False, (rule.id, kind)


def test_the_type_index_never_changes_a_result() -> None:
    """Every fixture rule, on a generated feed, with and without the index: the same
    matches, titles, dedup strings and errors, activity by activity."""
    ruleset = load_rules([FIXTURES / "rules"])
    python = [r for r in ruleset.rules if isinstance(r, PantherRule) and r.module is not None]
    assert python and all(r.types is not None for r in python)
    indexed = Evaluator(dataclasses.replace(ruleset, rules=python))
    unindexed = Evaluator(
        dataclasses.replace(ruleset, rules=[dataclasses.replace(r, types=None) for r in python])
    )

    def summary(found):
        matches, errors = found
        return (
            [(m.rule.id, m.title, m.dedup_key, m.severity, m.context) for m in matches],
            [(r.id, repr(e)) for r, e in errors],
        )

    hits = 0
    for raw in generate(3000, seed=5):
        record = parse_activity(raw)
        a, b = summary(indexed.evaluate(record)), summary(unindexed.evaluate(record))
        assert a == b
        hits += len(a[0])
    assert hits > 0


def test_the_fixture_rules_are_pinned() -> None:
    ruleset = load_rules([FIXTURES / "rules"])
    pinned = {r.id: r.types for r in ruleset.rules}
    assert pinned["Anthropic.SignIn.Failures"] == {"sso_login_failed", "magic_link_login_failed"}
    assert pinned["Anthropic.SSO.Disabled"] == {"org_sso_toggled"}
    assert pinned["Anthropic.APIKey.Created"] == {"platform_api_key_created"}


def test_the_module_text_in_these_tests_is_valid_python() -> None:
    for body, _ in PINNED.values():
        compile(textwrap.dedent(module_of(body)), "<pinned>", "exec")
    for body in NOT_PINNED.values():
        compile(textwrap.dedent(module_of(body)), "<not pinned>", "exec")


def test_convert_carries_the_pinned_types_into_match(cli_in_repo, tmp_path) -> None:
    code, _, err = cli_in_repo("convert", "fixtures/panther", "--out", str(tmp_path / "out"))
    assert code == 1, err  # one fixture rule (DynamicSeverities) has no native form
    text = (tmp_path / "out" / "rules" / "anthropic_sign_in_failures.yml").read_text()
    assert "match:\n  type:\n  - magic_link_login_failed\n  - sso_login_failed\n" in text
    code, out, err = cli_in_repo("test", str(tmp_path / "out"))
    assert code == 0, out + err
