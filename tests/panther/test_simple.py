"""Simple detections: what each condition, key specifier and combinator means."""

from __future__ import annotations

from typing import Any

import pytest

from engine.panther.simple import SimpleDetectionError, compile_expression, compile_list, supported

MISSING = object()


def holds(expression: dict[str, Any], value: Any = MISSING, **data: Any) -> bool:
    if value is not MISSING:
        data["v"] = value
    return compile_expression(["Detection", 0], expression).test(data)


def cond(condition: str, **rest: Any) -> dict[str, Any]:
    return {"KeyPath": "v", "Condition": condition, **rest}


@pytest.mark.parametrize(
    ("expression", "value", "expected"),
    [
        (cond("Equals", Value="a"), "a", True),
        (cond("Equals", Value="a"), "A", False),
        (cond("Equals", Value=1), True, False),  # type-aware: true is not 1
        (cond("Equals", Value=1), 1.0, True),
        (cond("Equals", Value=False), MISSING, False),
        (cond("DoesNotEqual", Value="a"), MISSING, True),
        (cond("DoesNotEqual", Value="a"), "b", True),
        (cond("IEquals", Value="ADMIN"), "admin", True),
        (cond("IEquals", Value="ADMIN"), 1, False),
        (cond("IDoesNotEqual", Value="x"), None, True),
        (cond("Contains", Value="ell"), "hello", True),
        (cond("Contains", Value="b"), ["a", "b"], True),
        (cond("Contains", Value=1), [True], False),
        (cond("Contains", Value="x"), {"x": 1}, False),
        (cond("DoesNotContain", Value="x"), MISSING, True),
        (cond("IContains", Value="ELL"), "HeLLo", True),
        (cond("StartsWith", Value="sso_"), "sso_login_failed", True),
        (cond("StartsWith", Value="sso_"), ["sso_x"], False),
        (cond("DoesNotStartWith", Value="sso_"), 7, True),
        (cond("IEndsWith", Value="@EXAMPLE.com"), "ana@example.COM", True),
        (cond("DoesNotEndWith", Value=".com"), "a.org", True),
        (cond("IsGreaterThan", Value=5), 6, True),
        (cond("IsGreaterThan", Value=5), "6", False),
        (cond("IsGreaterThan", Value=5), True, False),
        (cond("IsGreaterThanOrEquals", Value=5), 5, True),
        (cond("IsGreaterThanOrEqual", Value=5), 5.0, True),
        (cond("IsLessThan", Value=5), 4.5, True),
        (cond("IsLessThanOrEquals", Value=5), MISSING, False),
        (cond("IsIn", Values=["a", "b"]), "b", True),
        (cond("IsIn", Values=[1]), True, False),
        (cond("IsNotIn", Values=["a"]), MISSING, True),
        (cond("Exists"), None, False),  # a null counts as missing, as in deep_get
        (cond("Exists"), 0, True),
        (cond("DoesNotExist"), MISSING, True),
        (cond("IsNull"), None, True),
        (cond("IsNotNull"), False, True),
        (cond("IsNullOrEmpty"), "", True),
        (cond("IsNullOrEmpty"), [], True),
        (cond("IsNullOrEmpty"), {}, True),
        (cond("IsNullOrEmpty"), 0, False),
        (cond("IsNullOrEmpty"), False, False),
        (cond("IsNotNullOrEmpty"), "x", True),
        (cond("IsIPAddress"), "2001:db8::1", True),
        (cond("IsIPAddress"), "not an ip", False),
        (cond("IsIPv4Address"), "10.0.0.1", True),
        (cond("IsIPv4Address"), "::1", False),
        (cond("IsIPv6Address"), "::1", True),
        (cond("IsIPAddressPrivate"), "192.168.1.1", True),
        (cond("IsIPAddressPrivate"), "8.8.8.8", False),
        (cond("IsIPAddressPublic"), "8.8.8.8", True),
        (cond("IsIPAddressPublic"), "203.0.113.5", False),  # documentation range
        (cond("IsIPAddressPublic"), MISSING, False),
        (cond("IsIPAddressInCIDR", Value="10.0.0.0/8"), "10.1.2.3", True),
        (cond("IsIPAddressInCIDR", Values=["10.0.0.0/8", "::1/128"]), "::1", True),
        (cond("IsIPAddressNotInCIDR", Value="10.0.0.0/8"), "11.0.0.1", True),
        (cond("IsIPAddressNotInCIDR", Value="10.0.0.0/8"), MISSING, False),
    ],
)
def test_conditions(expression: dict[str, Any], value: Any, expected: bool) -> None:
    assert holds(expression, value) is expected


def test_key_specifiers() -> None:
    data = {"a.b": 1, "a": {"b": [{"c": 2}, {"c": 3}], "x y": 4}, "l": [[5]]}
    assert compile_expression([], {"Key": "a.b", "Condition": "Equals", "Value": 1}).test(data)
    deep = {"DeepKey": ["a", "b", 1, "c"], "Condition": "Equals", "Value": 3}
    assert compile_expression([], deep).test(data)
    spaced = {"DeepKey": ["a", "x y"], "Condition": "Equals", "Value": 4}
    assert compile_expression([], spaced).test(data)
    indexed = {"KeyPath": "a.b[0].c", "Condition": "Equals", "Value": 2}
    assert compile_expression([], indexed).test(data)
    assert compile_expression([], {"KeyPath": "l[0][0]", "Condition": "Equals", "Value": 5}).test(
        data
    )
    projected = {"KeyPath": "a.b[*].c", "Condition": "Contains", "Value": 3}
    assert compile_expression([], projected).test(data)
    out_of_range = {"KeyPath": "a.b[5].c", "Condition": "IsNull"}
    assert compile_expression([], out_of_range).test(data)


def test_combinators() -> None:
    yes = {"Condition": "AlwaysTrue"}
    no = {"Condition": "AlwaysFalse"}
    assert compile_list([], [yes, yes]).test({}) is True
    assert compile_list([], [yes, no]).test({}) is False
    assert holds({"All": [yes, yes]}) and not holds({"All": [yes, no]})
    assert holds({"Any": [no, yes]}) and not holds({"Any": [no, no]})
    assert holds({"OnlyOne": [no, yes, no]}) and not holds({"OnlyOne": [yes, yes]})
    assert holds({"None": [no, no]}) and not holds({"None": [no, yes]})


@pytest.mark.parametrize(
    ("condition", "items", "expected"),
    [
        ("AnyElement", [{"t": "a"}, {"t": "b"}], True),
        ("AnyElement", [], False),
        ("AllElements", [{"t": "b"}, {"t": "b"}], True),
        ("AllElements", [], True),
        ("AllElements", [{"t": "b"}, "b"], False),
        ("NoElement", [{"t": "a"}], True),
        ("NoElement", MISSING, True),
        ("OnlyOneElement", [{"t": "b"}, {"t": "a"}], True),
        ("OnlyOneElement", [{"t": "b"}, {"t": "b"}], False),
        ("AnyElement", "not a list", False),
    ],
)
def test_list_comprehensions(condition: str, items: Any, expected: bool) -> None:
    expression = {
        "KeyPath": "v",
        "Condition": condition,
        "Expressions": [{"KeyPath": "t", "Condition": "Equals", "Value": "b"}],
    }
    assert holds(expression, items) is expected


@pytest.mark.parametrize(
    ("condition", "a", "b", "expected"),
    [
        ("Equals", 1, 1, True),
        ("Equals", MISSING, MISSING, True),
        ("DoesNotEqual", "x", "y", True),
        ("IsGreaterThan", 3, 2, True),
        ("IsGreaterThan", "3", 2, False),
        ("IsLessThanOrEquals", 2, 2, True),
        ("Contains", "hello", "ell", True),
        ("DoesNotContain", "hello", "x", True),
        ("StartsWith", "hello", "he", True),
        ("EndsWith", "hello", 1, False),
    ],
)
def test_multi_key_conditions(condition: str, a: Any, b: Any, expected: bool) -> None:
    data = {k: v for k, v in (("a", a), ("b", b)) if v is not MISSING}
    expression = {"Condition": condition, "Values": [{"KeyPath": "a"}, {"Key": "b"}]}
    assert holds(expression, **data) is expected


@pytest.mark.parametrize(
    ("expression", "where", "message"),
    [
        (
            cond("LooksLike", Value="x"),
            ["Detection", 0, "Condition"],
            "'LooksLike' is not supported",
        ),
        (cond("CIDRContainsIPAddresses", Value="x"), ["Detection", 0, "Condition"], "CIDR"),
        (
            {
                "Enrichment": {"Table": "t", "Selector": "s", "FieldPath": "f"},
                "Condition": "Equals",
            },
            ["Detection", 0, "Enrichment"],
            "lookup tables",
        ),
        (cond("Equals"), ["Detection", 0], "needs a Value"),
        (cond("IsIn", Values=[]), ["Detection", 0], "non-empty list"),
        (cond("IsGreaterThan", Value="5"), ["Detection", 0, "Value"], "takes a number"),
        (cond("StartsWith", Value=5), ["Detection", 0, "Value"], "takes a string"),
        (cond("IsIPAddressInCIDR", Value="nope"), ["Detection", 0, "Value"], "not a CIDR"),
        (cond("Exists", Value=1), ["Detection", 0, "Value"], "does not take"),
        ({"Condition": "Equals", "Value": 1}, ["Detection", 0], "exactly one of Key"),
        ({"KeyPath": "a..b", "Condition": "Exists"}, ["Detection", 0, "KeyPath"], "empty step"),
        ({"Any": []}, ["Detection", 0, "Any"], "non-empty list"),
        ({"Any": [], "All": []}, ["Detection", 0], "only key"),
        (
            {"Condition": "IsIn", "Values": [{"Key": "a"}, {"Key": "b"}]},
            ["Detection", 0, "Condition"],
            "not supported between two keys",
        ),
    ],
)
def test_errors_name_the_condition_and_where(expression, where, message) -> None:
    with pytest.raises(SimpleDetectionError) as raised:
        compile_expression(["Detection", 0], expression)
    assert raised.value.where == where
    assert message in str(raised.value)


def test_unsupported_condition_is_a_load_error_naming_it(panther_dir) -> None:
    panther_dir.rule(
        "Test.Unknown",
        extra="Detection:\n  - KeyPath: type\n    Condition: Matches\n    Value: x\n",
    )
    _, problems = panther_dir.check()
    (problem,) = problems
    assert problem.key == "Detection.0.Condition" and problem.line == 8
    assert "'Matches' is not supported" in problem.message


def test_the_supported_list_covers_documented_conditions() -> None:
    names = supported()
    for name in ("Equals", "IsIn", "IsIPAddressInCIDR", "AnyElement", "IsNullOrEmpty"):
        assert name in names
