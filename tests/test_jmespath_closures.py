"""Compiled JMESPath closures give exactly what the JMESPath interpreter gives."""

from __future__ import annotations

import itertools

import jmespath
import pytest
from jmespath import visitor

from engine.detection.functions import NamedList, NamedLists, make_options
from engine.detection.jmespath_closures import compile_expression

OPTIONS = make_options(NamedLists({"admins": NamedList("admins", ["ana@example.com"])}))

EXPRESSIONS = [
    "a",
    "a.b",
    "a.b.c",
    "a || b",
    "a.b || c || `7`",
    "a && b",
    "!a",
    "!a.b",
    "a == b",
    "a != b",
    "a == `1`",
    "a == `true`",
    "a < b",
    "a >= `2`",
    "lower(a)",
    "lower(a.b || c)",
    "email_domain(a)",
    "in_list(a, 'admins')",
    "!in_list(email_domain(a), 'admins')",
    "contains(a, 'x')",
    "length(a)",
    "a.b == 'x' || c.d == 'y'",
    "@",
    "`[1, 2]`",
    "a[0]",
    "a[-1]",
    "a[?b == 'x'].c",
    "a | b",
    "a | lower(@)",
    "a[*]",
    "a[*].b",
    "a[*].b || [a.b]",
    "[a, b]",
    "[a.b, c][0]",
    "a[?@ != `null`]",
    "a[?@]",
    "length(a[?@ != `null` && !in_list(@, 'admins')]) > `0`",
    "length((a[*].b || [a.b])[?@ != `null`])",
    "lower(a || b)",
    "contains(['x', 'y'], a)",
    "cidr_match(a, '10.0.0.0/8')",
    "starts_with(a, 'x')",
    "join(',', a)",
    "a[1:]",
    "a[]",
    "a.*",
]
VALUES = [
    None,
    True,
    False,
    0,
    1,
    2,
    1.5,
    "",
    "x",
    "X",
    "ana@Example.com",
    [],
    [1],
    ["x"],
    {},
    {"b": "x"},
    {"b": {"c": 3}},
    [{"b": "x", "c": 1}],
    ["ana@example.com", None, "bob@example.com"],
    [{"b": "X"}, {"b": None}, {"c": 1}, "x", None],
    "10.1.2.3",
]
DOCUMENTS = [
    {"a": a, "b": b, "c": "y", "d": None}
    for a, b in itertools.product(VALUES, [None, "x", 2, {"c": 0}])
] + [{}, {"c": {"d": "y"}}]


def _outcome(function, document):
    try:
        return ("value", function(document))
    except Exception as exc:  # noqa: BLE001 - the interpreter's own TypeErrors count too
        return ("error", type(exc).__name__)


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_closures_agree_with_the_interpreter(expression):
    compiled = compile_expression(expression, OPTIONS)
    parsed = jmespath.compile(expression)
    for document in DOCUMENTS:
        expected = _outcome(lambda d: parsed.search(d, options=OPTIONS), document)
        assert _outcome(compiled, document) == expected, (expression, document)


def test_a_malformed_expression_raises_the_library_error():
    with pytest.raises(jmespath.exceptions.ParseError):
        compile_expression("a ||", OPTIONS)


# Forms the closures leave to the interpreter (the rules do not write them).
INTERPRETED = {"a[1:]", "a[]", "a.*"}


@pytest.mark.parametrize("expression", [e for e in EXPRESSIONS if e not in INTERPRETED])
def test_the_forms_rules_write_never_walk_the_syntax_tree(expression, monkeypatch):
    compiled = compile_expression(expression, OPTIONS)

    def walked(*args, **kwargs):
        raise AssertionError(f"{expression!r} fell back to the interpreter")

    monkeypatch.setattr(visitor.TreeInterpreter, "visit", walked)
    for document in DOCUMENTS:
        assert _outcome(compiled, document) != ("error", "AssertionError"), expression
