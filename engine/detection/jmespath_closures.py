"""JMESPath expressions as Python closures, for the forms rules actually write.

The JMESPath interpreter walks its syntax tree on every call, which costs more than the
rule's logic: `lower(actor.email_address)` or `claude_chat_id || claude_file_id` run on
every matching activity. This module turns fields, sub-expressions, `||`, `&&`, `!`,
literals, comparisons, function calls, indexes, pipes, `[*]` projections, `[?...]` filters
and `[a, b]` lists into nested closures that do exactly what the interpreter's visitor
does for those nodes (functions come from the interpreter's function table, and any call
the fast path does not vouch for goes through the library, so argument checks and errors
are its own). Any other node (slices, flattening, object projections...) makes the whole
expression fall back to the interpreter; tests compare both on many inputs.
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
    # The interpreter's own definition (equality, not Python truth: 0 is true); for the
    # usual types of a value, the same answer without four comparisons.
    kind = type(value)
    if kind is str or kind is dict or kind is list:
        return not value
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
    if kind == "subexpression" or kind == "index_expression" or kind == "pipe":
        # The interpreter visits all three the same way: each child on the last's result.
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
    if kind == "current" or kind == "identity":
        return lambda value: value
    if kind == "index":
        position = node["value"]

        def index(value: Any) -> Any:
            if not isinstance(value, list):
                return None
            try:
                return value[position]
            except IndexError:
                return None

        return index
    if kind == "projection":
        base, each = (_node(child, interpreter) for child in children)

        def projection(value: Any) -> Any:
            items = base(value)
            if not isinstance(items, list):
                return None
            return [found for found in map(each, items) if found is not None]

        return projection
    if kind == "filter_projection":
        base, each, condition = (_node(child, interpreter) for child in children)

        def filtered(value: Any) -> Any:
            items = base(value)
            if not isinstance(items, list):
                return None
            collected = []
            for item in items:
                if not _is_false(condition(item)):
                    found = each(item)
                    if found is not None:
                        collected.append(found)
            return collected

        return filtered
    if kind == "multi_select_list":
        parts = [_node(child, interpreter) for child in children]
        return lambda value: None if value is None else [part(value) for part in parts]
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
        arguments = [_node(child, interpreter) for child in children]
        return _function(node["value"], arguments, interpreter)
    raise _Unsupported(kind)


def _function(
    name: str, arguments: list[Compiled], interpreter: visitor.TreeInterpreter
) -> Compiled:
    """A function call. The library validates the arguments against the function's
    signature on every call; when each argument's type name is one the signature allows
    (what that validation checks), the function is called directly, and any other case
    (a wrong type, a typed array, variadic or unknown functions) goes through the
    library, which then raises its own error or does its own checks."""
    functions = interpreter._functions
    call = functions.call_function

    def general(value: Any) -> Any:
        return call(name, [argument(value) for argument in arguments])

    spec = functions.FUNCTION_TABLE.get(name)
    if spec is None:
        return general
    signature = spec["signature"]
    if len(signature) != len(arguments) or not all(
        isinstance(parameter.get("types"), list)
        and not parameter.get("variadic")
        and not any("-" in t for t in parameter["types"])
        for parameter in signature
    ):
        return general
    method = spec["function"]
    # None: any type (the library checks nothing for an empty type list).
    allowed = [
        frozenset(functions._get_allowed_pytypes(parameter["types"])[0])
        if parameter["types"]
        else None
        for parameter in signature
    ]
    if len(arguments) == 1:
        (argument,) = arguments
        (types,) = allowed

        def unary(value: Any) -> Any:
            resolved = argument(value)
            if types is None or type(resolved).__name__ in types:
                return method(functions, resolved)
            return call(name, [resolved])

        return unary

    def function(value: Any) -> Any:
        resolved = [argument(value) for argument in arguments]
        for item, types in zip(resolved, allowed, strict=True):
            if types is not None and type(item).__name__ not in types:
                return call(name, resolved)
        return method(functions, *resolved)

    return function


# Deeper nesting than this is refused: the parser and the interpreter recurse per level,
# and 500 nested parentheses exhausted Python's stack (a RecursionError traceback).
MAX_NESTING = 64


class ExpressionRefused(jmespath.exceptions.JMESPathError):
    """An expression that parses but that the engine will not run (nested too deeply, a
    pattern the regex engine refuses)."""


def _nesting(text: str) -> int:
    """The deepest nesting of brackets in `text`, outside quoted strings and literals."""
    depth = deepest = 0
    quote = None
    escaped = False
    for ch in text:
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    return deepest


def _check_patterns(node: Mapping[str, Any]) -> None:
    """Compile every literal pattern of `regex_match` now, so a refused one is a
    problem `detect validate` reports, not a rule error on each activity."""
    from engine.detection.functions import RegexError, compile_regex

    stack = [node]
    while stack:
        current = stack.pop()
        children = current.get("children", [])
        literal = (
            current.get("type") == "function_expression"
            and current.get("value") == "regex_match"
            and len(children) == 2
            and children[1].get("type") == "literal"
        )
        if literal and isinstance(children[1].get("value"), str):
            try:
                compile_regex(children[1]["value"])
            except RegexError as exc:
                raise ExpressionRefused(str(exc)) from None
        stack.extend(child for child in children if isinstance(child, Mapping))


def compile_expression(text: str, options: jmespath.Options) -> Compiled:
    """A function of the data equal to `jmespath.search(text, data, options)`; raises
    `jmespath.exceptions.JMESPathError` for a malformed expression (`ExpressionRefused`
    for one nested too deeply or with a pattern RE2 refuses)."""
    if not isinstance(text, str):
        raise ExpressionRefused(f"an expression must be a string, not {type(text).__name__}")
    depth = _nesting(text)
    if depth > MAX_NESTING:
        raise ExpressionRefused(
            f"the expression nests brackets {depth} deep; at most {MAX_NESTING} are allowed"
        )
    try:
        parsed = jmespath.compile(text)
    except RecursionError:
        raise ExpressionRefused("the expression is nested too deeply to parse") from None
    _check_patterns(parsed.parsed)
    interpreter = visitor.TreeInterpreter(options)
    try:
        return _node(parsed.parsed, interpreter)
    except _Unsupported:
        return lambda data: parsed.search(data, options=options)
