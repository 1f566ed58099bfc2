"""`detect convert`: the native rules it writes give the same results as the Panther rules
they came from, on the fixture pack's test events and on a grid of values per condition."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.activity import Event, parse_activity
from engine.detection.loader import RuleSet
from engine.panther import PantherOptions
from engine.panther.convert import convert_paths
from engine.panther.event import plain
from engine.rule_formats import load_rules
from engine.testing.runner import collect, run_tests

from .conftest import FIXTURES, PantherDir


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[RuleSet, RuleSet, Any, Path]:
    out = tmp_path_factory.mktemp("converted")
    report = convert_paths([FIXTURES], out, PantherOptions())
    return load_rules([FIXTURES]), load_rules([out]), report, out


def outcome(rule, ruleset: RuleSet, raw: dict[str, Any]):
    activity = parse_activity(json.loads(json.dumps(raw)))
    match = rule.evaluate(activity, Event.of(activity, ruleset.options))
    if match is None:
        return None
    return (match.title, match.dedup_key, match.severity, match.destinations)


def test_the_report(converted) -> None:
    _, _, report, out = converted
    assert report.converted == 5 and report.refused == 1 and not report.problems
    assert any(
        "Anthropic.AdminRole.Granted" in line and "DynamicSeverities" in line
        for line in report.lines
    )
    assert (out / "global_helpers" / "anthropic_activity_helpers.py").is_file()
    assert (out / "rules" / "anthropic_sso_disabled_panther.py").read_text() == (
        FIXTURES / "rules" / "anthropic_sso_disabled.py"
    ).read_text()


def test_converted_rules_validate_and_their_tests_pass(converted) -> None:
    _, native, _, _ = converted
    results = run_tests(collect(native), native)
    assert results and all(r.passed for r in results), [r.failures for r in results]
    assert [r.id for r in native.skipped] == ["AWS.Console.RootLogin"]


def test_same_results_on_every_fixture_test_event(converted) -> None:
    panther, native, _, _ = converted
    compared = 0
    for rule in panther.rules + panther.skipped:
        twin = native.get(rule.id)
        if twin is None:
            continue
        for spec in rule.tests:
            raw = plain(spec["Log"])
            try:
                parse_activity(raw)
            except Exception:  # noqa: BLE001 - only activities can be compared
                continue
            assert outcome(rule, panther, raw) == outcome(twin, native, raw), spec["Name"]
            compared += 1
    assert compared >= 16


def test_converted_simple_detection_reads_naturally(converted) -> None:
    _, _, _, out = converted
    text = (out / "rules" / "anthropic_org_settings_opened.yml").read_text()
    assert "match:\n  type: claude_organization_settings_updated\n" in text
    assert "dedup:\n  key: '{organization_id}:{actor.email_address}'\n  window: 120m" in text


def test_threshold_conversion_is_noted(converted) -> None:
    _, _, _, out = converted
    text = (out / "rules" / "anthropic_sign_in_failures.yml").read_text()
    assert "threshold:\n  count: 5\n  window: 10m" in text
    assert "# Note: Threshold: Panther counts matches" in text


def test_existing_files_need_force(tmp_path) -> None:
    out = tmp_path / "out"
    first = convert_paths([FIXTURES], out, PantherOptions())
    again = convert_paths([FIXTURES], out, PantherOptions())
    forced = convert_paths([FIXTURES], out, PantherOptions(), force=True)
    assert first.converted == 5 and again.converted == 0 and forced.converted == 5
    assert any("use --force" in line for line in again.lines)


def test_convert_command(cli, tmp_path) -> None:
    code, out, err = cli("convert", str(FIXTURES), "--out", str(tmp_path / "o"))
    assert code == 1  # one rule could not be converted
    assert "not converted: Anthropic.AdminRole.Granted" in out
    assert "5 rule(s) converted, 1 not converted" in err


# -- every condition, natively, on a grid of values ---------------------------------------

GRID: list[Any] = [
    None, "", "a", "A", "b", "hello", "HeLLo", "sso_login", "ana@example.COM", "x.com",
    0, 1, 1.0, 5, 5.5, 6, -1, True, False,
    [], ["a", "b"], [1], [True], ["hello"], {}, {"t": "b"},
    [{"t": "b"}], [{"t": "a"}, {"t": "b"}], [{"t": "b"}, {"t": "b"}], [{"t": "b"}, "b"],
    "10.1.2.3", " 10.0.0.1", "8.8.8.8", "203.0.113.5", "192.168.1.1", "::1", "2001:db8::1",
    "2606:4700::1", "not an ip", "10.0.0.0/8",
]  # fmt: skip

EXPRESSIONS: list[dict[str, Any]] = [
    {"Condition": c, "Value": v}
    for c, v in [
        ("Equals", "a"), ("Equals", 1), ("Equals", True), ("Equals", 5.5),
        ("DoesNotEqual", "a"), ("DoesNotEqual", False),
        ("IEquals", "a"), ("IDoesNotEqual", "HELLO"),
        ("Contains", "ell"), ("Contains", "a"), ("Contains", 1), ("Contains", True),
        ("DoesNotContain", "a"), ("IContains", "ELL"), ("IDoesNotContain", "ell"),
        ("StartsWith", "sso_"), ("DoesNotStartWith", "h"), ("IStartsWith", "HE"),
        ("IDoesNotStartWith", "he"), ("EndsWith", ".com"), ("DoesNotEndWith", "o"),
        ("IEndsWith", "@EXAMPLE.com"), ("IDoesNotEndWith", ".COM"),
        ("IsGreaterThan", 5), ("IsGreaterThanOrEquals", 5), ("IsLessThan", 1),
        ("IsLessThanOrEquals", 1.0), ("IsIPAddressInCIDR", "10.0.0.0/8"),
        ("IsIPAddressNotInCIDR", "10.0.0.0/8"),
    ]
] + [
    {"Condition": c, "Values": v}
    for c, v in [
        ("IsIn", ["a", 1]), ("IsIn", [True]), ("IsNotIn", ["a", "b"]),
        ("IsIPAddressInCIDR", ["10.0.0.0/8", "::1/128"]),
    ]
] + [
    {"Condition": c}
    for c in [
        "Exists", "DoesNotExist", "IsNull", "IsNotNull", "IsNullOrEmpty", "IsNotNullOrEmpty",
        "IsIPAddress", "IsIPv4Address", "IsIPv6Address", "IsIPAddressPrivate",
        "IsIPAddressPublic",
    ]
]  # fmt: skip


def _keyed(expression: dict[str, Any], index: int) -> dict[str, Any]:
    key = [{"KeyPath": "v"}, {"Key": "v"}, {"DeepKey": ["v"]}][index % 3]
    return {**key, **expression}


def _grid_expressions() -> list[list[dict[str, Any]]]:
    """Each entry is one Detection block (a list of expressions)."""
    singles = [[_keyed(e, i)] for i, e in enumerate(EXPRESSIONS)]
    element = {"KeyPath": "t", "Condition": "Equals", "Value": "b"}
    lists = [
        [{"KeyPath": "v", "Condition": c, "Expressions": [element]}]
        for c in ("AnyElement", "AllElements", "NoElement", "OnlyOneElement")
    ]
    multi = [
        [{"Condition": c, "Values": [{"KeyPath": "v"}, {"Key": "u"}]}]
        for c in (
            "Equals", "DoesNotEqual", "IsGreaterThan", "IsLessThanOrEquals", "Contains",
            "DoesNotContain", "StartsWith", "EndsWith", "DoesNotEndWith",
        )
    ]  # fmt: skip
    a = {"KeyPath": "v", "Condition": "IsNotNull"}
    b = {"KeyPath": "v", "Condition": "Contains", "Value": "a"}
    c = {"KeyPath": "v", "Condition": "IsIn", "Values": ["a", "b"]}
    groups = [
        [{"Any": [a, b]}],
        [{"OnlyOne": [a, b, c]}],
        [{"None": [b, c]}],
        [{"All": [a, {"Any": [b, c]}]}],
        [a, b, {"KeyPath": "v", "Condition": "IsNotIn", "Values": ["x"]}],
        [{"KeyPath": "v", "Condition": "StartsWith", "Value": "h"},
         {"KeyPath": "v", "Condition": "EndsWith", "Value": "o"},
         {"KeyPath": "v", "Condition": "Contains", "Value": "l"},
         {"KeyPath": "v", "Condition": "Contains", "Value": "e"}],
    ]  # fmt: skip
    return singles + lists + multi + groups


@pytest.fixture(scope="module")
def grid_rules(tmp_path_factory) -> tuple[RuleSet, RuleSet]:
    pack = PantherDir(tmp_path_factory.mktemp("grid") / "pack")
    for index, detection in enumerate(_grid_expressions()):
        pack.rule(
            f"Grid.R{index:03d}",
            extra="Detection:\n" + _yaml_list(detection),
        )
    out = pack.path.parent / "out"
    report = convert_paths([pack.path], out, PantherOptions())
    assert report.refused == 0 and not report.problems, report.lines + report.problems
    return load_rules([pack.path]), load_rules([out])


def _yaml_list(items: list[dict[str, Any]]) -> str:
    return "".join(f"  - {json.dumps(item)}\n" for item in items)


def test_every_condition_means_the_same_natively(grid_rules) -> None:
    panther, native = grid_rules
    mismatches = []
    for rule in panther.rules:
        twin = native.get(rule.id)
        for value in [*GRID, "<missing>"]:
            for other in (None, "ell", "a", 5, [1]):
                raw = {
                    "id": "activity_grid",
                    "created_at": "2026-05-04T08:00:00Z",
                    "type": "grid",
                    "actor": {"type": "user_actor"},
                }
                if value != "<missing>":
                    raw["v"] = value
                if other is not None:
                    raw["u"] = other
                ours = outcome(rule, panther, raw) is not None
                theirs = outcome(twin, native, raw) is not None
                if ours != theirs:
                    mismatches.append((rule.document["Detection"], value, other, ours, theirs))
    assert mismatches == []


def test_grid_uses_match_where_it_can(grid_rules) -> None:
    _, native = grid_rules
    documents = [r.document for r in native.rules]
    assert sum("match" in d for d in documents) >= 30
    assert sum("when" in d for d in documents) >= 30
