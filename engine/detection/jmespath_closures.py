"""JMESPath expressions as Python closures, for the forms rules actually write.

The JMESPath interpreter walks its syntax tree on every call, which costs more than the
rule's logic: `lower(actor.email_address)` or `claude_chat_id || claude_file_id` run on
every matching activity. This module turns fields, sub-expressions, `||`, `&&`, `!`,
literals, comparisons and function calls into nested closures that do exactly what the
interpreter's visitor does for those nodes (functions still go through the interpreter's
function table, so argument checks and errors are the library's own). Any other node
(projections, filters, slices, pipes...) makes the whole expression fall back to the
interpreter; tests compare both on many inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jmespath
from jmespath import visitor

Compiled = Callable[[Any], Any]


class _Unsupported(Exception):
    """A node this module does not compile; the interpreter will run the expression."""


def _is_false(value: Any) -> bool:
    # The interpreter's own definition (equality, not Python truth: 0 is true).
    return value == "" or value == [] or value == {} or value is None or value is False


def _field(name: str) -> Compiled:
    def field(value: Any) -> Any:
        if type(value) is dict:
            return value.get(name)
        try:
            return value.get(name)
        except AttributeError:
            return None

    return field


def _node(node: Mapping[str, Any], interpreter: visitor.TreeInterpreter) -> Compiled:
    kind = node["type"]
    children = node.get("children", [])
    if kind == "field":
        return _field(node["value"])
    if kind == "subexpression":
        steps = [_node(child, interpreter) for child in children]
        if all(child["type"] == "field" for child in children):
            names = [child["value"] for child in children]

            def fields(value: Any) -> Any:
                for name in names:
                    if type(value) is dict:
                        value = value.get(name)
                    else:
                        try:
                            value = value.get(name)
                        except AttributeError:
                            return None
                return value

            return fields

        def chain(value: Any) -> Any:
            for step in steps:
                value = step(value)
            return value

        return chain
    if kind == "current":
        return lambda value: value
    if kind == "literal":
        literal = node["value"]
        return lambda value: literal
    if kind == "or_expression":
        left, right = (_node(child, interpreter) for child in children)

        def either(value: Any) -> Any:
            matched = left(value)
            return right(value) if _is_false(matched) else matched

        return either
    if kind == "and_expression":
        left, right = (_node(child, interpreter) for child in children)

        def both(value: Any) -> Any:
            matched = left(value)
            return matched if _is_false(matched) else right(value)

        return both
    if kind == "not_expression":
        (inner,) = (_node(child, interpreter) for child in children)

        def negation(value: Any) -> Any:
            result = inner(value)
            if visitor._is_actual_number(result) and result == 0:
                return False
            return not result

        return negation
    if kind == "comparator":
        left, right = (_node(child, interpreter) for child in children)
        compare = interpreter.COMPARATOR_FUNC[node["value"]]
        if node["value"] in interpreter._EQUALITY_OPS:
            return lambda value: compare(left(value), right(value))

        def ordered(value: Any) -> Any:
            a, b = left(value), right(value)
            if not (visitor._is_comparable(a) and visitor._is_comparable(b)):
                return None
            return compare(a, b)

        return ordered
    if kind == "function_expression":
        name = node["value"]
        arguments = [_node(child, interpreter) for child in children]
        call = interpreter._functions.call_function

        def function(value: Any) -> Any:
            return call(name, [argument(value) for argument in arguments])

        return function
    raise _Unsupported(kind)


def compile_expression(text: str, options: jmespath.Options) -> Compiled:
    """A function of the data equal to `jmespath.search(text, data, options)`; raises
    `jmespath.exceptions.JMESPathError` for a malformed expression."""
    parsed = jmespath.compile(text)
    interpreter = visitor.TreeInterpreter(options)
    try:
        return _node(parsed.parsed, interpreter)
    except _Unsupported:
        return lambda data: parsed.search(data, options=options)
