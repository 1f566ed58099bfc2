"""Panther's simple detections: `Detection:` match expressions compiled to closures.

A match expression names a key (`Key`, `KeyPath` or `DeepKey`), a `Condition` and a
`Value` or `Values`; `All`, `Any`, `OnlyOne` and `None` group expressions; list
comprehensions (`AnyElement`, `AllElements`, `OnlyOneElement`, `NoElement`) run nested
`Expressions` on each element of a list; multi-key expressions compare two keys;
`AlwaysTrue`/`AlwaysFalse` are constants. The whole block compiles once into one function
of the activity's data.

Every node also knows its exact translation into the native rule format (a `match`
operator where one has the same meaning, otherwise a JMESPath `when` expression that uses
the engine's functions), which is what `detect convert` writes. Each condition's meaning is
chosen so the two agree on every JSON value; tests/panther/test_convert.py checks it on a
grid of values. The semantics are written down in docs/panther.md.

A condition this module does not know is a load error naming it, never a silent false.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jmespath

from engine.detection.functions import parse_ip, parse_network
from engine.detection.operators import same

Data = Any
Getter = Callable[[Data], Any]
Predicate = Callable[[Data], bool]

# detect's reading of "private" and "public" (Python's ipaddress tables change between
# versions, so the ranges are spelled out; docs/panther.md lists them).
PRIVATE_NETWORKS = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
)
NON_PUBLIC_NETWORKS = (
    *PRIVATE_NETWORKS,
    "0.0.0.0/8",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::ffff:0:0/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "ff00::/8",
)
_ANY_V4, _ANY_V6 = "0.0.0.0/0", "::/0"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEYPATH_STEP = re.compile(r"\[(\*|-?\d+)\]")


class SimpleDetectionError(ValueError):
    """A match expression that cannot be compiled; `where` is its path in the document."""

    def __init__(self, where: list[Any], message: str) -> None:
        super().__init__(message)
        self.where = where


# -- keys -------------------------------------------------------------------------------


def literal(value: Any) -> str:
    """A JMESPath JSON literal."""
    return "`" + json.dumps(value).replace("`", "\\`") + "`"


def _name(step: str) -> str:
    return step if _IDENTIFIER.match(step) else json.dumps(step)


@dataclass(frozen=True)
class KeySpec:
    """Where a value comes from: `path` is the equivalent JMESPath expression."""

    label: str
    path: str
    get: Getter = field(compare=False)


def _walker(steps: list[str | int]) -> Getter:
    """A getter for plain steps (names and indexes): None where a step does not apply,
    as JMESPath's field and index expressions."""
    if len(steps) == 1 and isinstance(steps[0], str):
        only = steps[0]
        return lambda data: data.get(only) if type(data) is dict else None

    def walk(data: Data) -> Any:
        value = data
        for step in steps:
            if isinstance(step, str):
                value = value.get(step) if type(value) is dict else None
            elif type(value) is list and -len(value) <= step < len(value):
                value = value[step]
            else:
                return None
        return value

    return walk


def _key_path(text: str) -> tuple[str, list[str | int] | None]:
    """A `KeyPath` (`a.b[2].c`, `a[*].b`) as JMESPath, and its plain steps (None when it
    projects with `[*]`)."""
    steps: list[str | int] = []
    parts: list[str] = []
    wildcard = False
    for segment in text.split("."):
        head, _, _ = segment.partition("[")
        rest = segment[len(head) :]
        if not head and not parts:
            raise ValueError(f"KeyPath {text!r} has an empty step")
        if head:
            steps.append(head)
            parts.append(("." if parts else "") + _name(head))
        elif not rest:
            raise ValueError(f"KeyPath {text!r} has an empty step")
        position = 0
        for match in _KEYPATH_STEP.finditer(rest):
            if match.start() != position:
                raise ValueError(f"KeyPath {text!r}: cannot read {rest[position:]!r}")
            position = match.end()
            token = match.group(1)
            if token == "*":
                wildcard = True
                parts.append("[*]")
            else:
                steps.append(int(token))
                parts.append(f"[{token}]")
        if position != len(rest):
            raise ValueError(f"KeyPath {text!r}: cannot read {rest[position:]!r}")
    return "".join(parts), None if wildcard else steps


def key_spec(where: list[Any], spec: Mapping[str, Any]) -> KeySpec:
    """The key of a match expression (exactly one of Key, KeyPath, DeepKey)."""
    given = [k for k in ("Key", "KeyPath", "DeepKey") if k in spec]
    if len(given) != 1:
        raise SimpleDetectionError(where, "give exactly one of Key, KeyPath and DeepKey")
    kind = given[0]
    value = spec[kind]
    if kind == "Key":
        if not isinstance(value, str) or not value:
            raise SimpleDetectionError([*where, kind], "Key must be a non-empty string")
        return KeySpec(f"Key {value}", _name(value), _walker([value]))
    if kind == "DeepKey":
        if not isinstance(value, list) or not value:
            raise SimpleDetectionError([*where, kind], "DeepKey must be a non-empty list")
        steps: list[str | int] = []
        parts: list[str] = []
        for step in value:
            if isinstance(step, bool) or not isinstance(step, str | int):
                raise SimpleDetectionError(
                    [*where, kind], f"DeepKey steps are strings or integers, not {step!r}"
                )
            steps.append(step)
            if isinstance(step, int):
                parts.append(f"[{step}]")
            else:
                parts.append(("." if parts else "") + _name(step))
        if isinstance(steps[0], int):
            raise SimpleDetectionError([*where, kind], "DeepKey must start with a key name")
        return KeySpec(f"DeepKey {value}", "".join(parts), _walker(steps))
    if not isinstance(value, str) or not value:
        raise SimpleDetectionError([*where, kind], "KeyPath must be a non-empty string")
    try:
        path, plain_steps = _key_path(value)
    except ValueError as exc:
        raise SimpleDetectionError([*where, kind], str(exc)) from exc
    if plain_steps is not None:
        return KeySpec(f"KeyPath {value}", path, _walker(plain_steps))
    compiled = jmespath.compile(path)
    return KeySpec(f"KeyPath {value}", path, compiled.search)


# -- conditions -------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ip(value: Any):
    return parse_ip(value) if isinstance(value, str) else None


def _networks(cidrs: tuple[str, ...]):
    return tuple(parse_network(c) for c in cidrs)


def _in(value: Any, networks) -> bool:
    address = _ip(value)
    return address is not None and any(
        address.version == n.version and address in n for n in networks
    )


def _js_is(path: str, kind: str) -> str:
    return f'type({path}) == `"{kind}"`'


def _js_cidrs(path: str, cidrs: tuple[str, ...]) -> str:
    inner = " || ".join(f"cidr_match({path}, {literal(c)})" for c in cidrs)
    return f"({_js_is(path, 'string')} && ({inner}))"


def _js_any_ip(path: str) -> str:
    return _js_cidrs(path, (_ANY_V4, _ANY_V6))


@dataclass(frozen=True)
class Condition:
    """One scalar condition: its argument kind, predicate, JMESPath and native operator."""

    name: str
    argument: str  # "value", "values", "none" or "cidrs"
    test: Callable[[Any, Any], bool]
    jmes: Callable[[str, Any], str]
    native: Callable[[Any], tuple[str, Any] | None] = lambda arg: None
    value_types: tuple[type, ...] = ()


def _negate(name: str, base: Condition) -> Condition:
    return Condition(
        name,
        base.argument,
        lambda v, a: not base.test(v, a),
        lambda p, a: f"!({base.jmes(p, a)})",
        value_types=base.value_types,
    )


def _string_op(name: str, method: str, fold: bool) -> Condition:
    def test(value: Any, arg: str) -> bool:
        if not isinstance(value, str):
            return False
        if fold:
            return getattr(value.lower(), method)(arg.lower())
        return getattr(value, method)(arg)

    def jmes(path: str, arg: str) -> str:
        subject = f"lower({path})" if fold else path
        argument = literal(arg.lower() if fold else arg)
        function = {"startswith": "starts_with", "endswith": "ends_with"}[method]
        return f"({_js_is(path, 'string')} && {function}({subject}, {argument}))"

    native_op = {"startswith": "starts_with", "endswith": "ends_with"}[method]
    native = None if fold else (lambda arg: (native_op, arg))
    return Condition(name, "value", test, jmes, native or (lambda arg: None), (str,))


def _contains(value: Any, arg: Any) -> bool:
    if isinstance(value, str):
        return isinstance(arg, str) and arg in value
    if isinstance(value, list):
        return any(same(item, arg) for item in value)
    return False


def _js_contains(path: str, arg: Any) -> str:
    array = f"({_js_is(path, 'array')} && length({path}[?@ == {literal(arg)}]) > `0`)"
    if isinstance(arg, str):
        return f"(({_js_is(path, 'string')} && contains({path}, {literal(arg)})) || {array})"
    return array


def _icontains(value: Any, arg: str) -> bool:
    return isinstance(value, str) and arg.lower() in value.lower()


def _compare(symbol: str) -> Callable[[Any, Any], bool]:
    function = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}[symbol]
    return lambda value, arg: _is_number(value) and function(value, arg)


def _comparison(name: str, symbol: str, native_op: str) -> Condition:
    return Condition(
        name,
        "value",
        _compare(symbol),
        lambda p, a: f"({_js_is(p, 'number')} && {p} {symbol} {literal(a)})",
        lambda arg: (native_op, arg),
        (int, float),
    )


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _build_conditions() -> dict[str, Condition]:
    table: dict[str, Condition] = {}

    def add(condition: Condition) -> Condition:
        table[condition.name] = condition
        return condition

    add(
        Condition(
            "Equals",
            "value",
            lambda v, a: v is not None and same(v, a),
            lambda p, a: f"{p} == {literal(a)}",
            lambda arg: ("equals", arg),
            (str, int, float, bool),
        )
    )
    add(
        Condition(
            "DoesNotEqual",
            "value",
            lambda v, a: not same(v, a),
            lambda p, a: f"{p} != {literal(a)}",
            lambda arg: ("not_equals", arg),
            (str, int, float, bool),
        )
    )
    iequals = add(
        Condition(
            "IEquals",
            "value",
            lambda v, a: isinstance(v, str) and v.lower() == a.lower(),
            lambda p, a: f"({_js_is(p, 'string')} && lower({p}) == {literal(a.lower())})",
            value_types=(str,),
        )
    )
    add(_negate("IDoesNotEqual", iequals))
    contains = add(
        Condition(
            "Contains",
            "value",
            _contains,
            _js_contains,
            lambda arg: ("contains", arg),
            (str, int, float, bool),
        )
    )
    add(_negate("DoesNotContain", contains))
    icontains = add(
        Condition(
            "IContains",
            "value",
            _icontains,
            lambda p, a: f"({_js_is(p, 'string')} && contains(lower({p}), {literal(a.lower())}))",
            value_types=(str,),
        )
    )
    add(_negate("IDoesNotContain", icontains))
    for name, method, fold in (
        ("StartsWith", "startswith", False),
        ("EndsWith", "endswith", False),
        ("IStartsWith", "startswith", True),
        ("IEndsWith", "endswith", True),
    ):
        base = add(_string_op(name, method, fold))
        negative = name.replace("StartsWith", "DoesNotStartWith").replace(
            "EndsWith", "DoesNotEndWith"
        )
        add(_negate(negative, base))
    for name, symbol, native_op in (
        ("IsGreaterThan", ">", "gt"),
        ("IsGreaterThanOrEquals", ">=", "gte"),
        ("IsLessThan", "<", "lt"),
        ("IsLessThanOrEquals", "<=", "lte"),
    ):
        add(_comparison(name, symbol, native_op))
    # Both spellings appear in Panther's own documentation.
    table["IsGreaterThanOrEqual"] = table["IsGreaterThanOrEquals"]
    table["IsLessThanOrEqual"] = table["IsLessThanOrEquals"]
    add(
        Condition(
            "IsIn",
            "values",
            lambda v, a: v is not None and any(same(v, i) for i in a),
            lambda p, a: "(" + " || ".join(f"{p} == {literal(i)}" for i in a) + ")",
            lambda arg: ("in", list(arg)),
        )
    )
    add(
        Condition(
            "IsNotIn",
            "values",
            lambda v, a: not any(same(v, i) for i in a),
            lambda p, a: "!(" + " || ".join(f"{p} == {literal(i)}" for i in a) + ")",
            lambda arg: ("not_in", list(arg)),
        )
    )
    not_null = Condition(
        "IsNotNull",
        "none",
        lambda v, a: v is not None,
        lambda p, a: f"{p} != null",
        lambda arg: ("exists", True),
    )
    null = Condition(
        "IsNull",
        "none",
        lambda v, a: v is None,
        lambda p, a: f"{p} == null",
        lambda arg: ("exists", False),
    )
    add(not_null)
    add(null)
    # A key holding null counts as missing, as event.deep_get treats it.
    table["Exists"] = not_null
    table["DoesNotExist"] = null
    empty = add(
        Condition(
            "IsNullOrEmpty",
            "none",
            lambda v, a: _empty(v),
            lambda p, a: f'({p} == null || {p} == `""` || {p} == `[]` || {p} == `{{}}`)',
        )
    )
    add(_negate("IsNotNullOrEmpty", empty))
    any_ip = (_ANY_V4, _ANY_V6)
    for name, cidrs in (
        ("IsIPAddress", any_ip),
        ("IsIPv4Address", (_ANY_V4,)),
        ("IsIPv6Address", (_ANY_V6,)),
        ("IsIPAddressPrivate", PRIVATE_NETWORKS),
    ):
        networks = _networks(cidrs)
        add(
            Condition(
                name,
                "none",
                lambda v, a, n=networks: _in(v, n),
                lambda p, a, c=cidrs: _js_cidrs(p, c),
                lambda arg, c=cidrs: ("cidr", list(c)),
            )
        )
    non_public = _networks(NON_PUBLIC_NETWORKS)
    add(
        Condition(
            "IsIPAddressPublic",
            "none",
            lambda v, a: _ip(v) is not None and not _in(v, non_public),
            lambda p, a: f"({_js_any_ip(p)} && !{_js_cidrs(p, NON_PUBLIC_NETWORKS)})",
            lambda arg: ("not_cidr", list(NON_PUBLIC_NETWORKS)),
        )
    )
    add(
        Condition(
            "IsIPAddressInCIDR",
            "cidrs",
            lambda v, a: _in(v, a[1]),
            lambda p, a: _js_cidrs(p, a[0]),
            lambda arg: ("cidr", list(arg[0])),
        )
    )
    add(
        Condition(
            "IsIPAddressNotInCIDR",
            "cidrs",
            lambda v, a: _ip(v) is not None and not _in(v, a[1]),
            lambda p, a: f"({_js_any_ip(p)} && !{_js_cidrs(p, a[0])})",
            lambda arg: ("not_cidr", list(arg[0])),
        )
    )
    return table


CONDITIONS = _build_conditions()

# Conditions that compare two keys (`Values: [{KeyPath: a}, {KeyPath: b}]`).
_MULTI_KEY: dict[str, tuple[Callable[[Any, Any], bool], Callable[[str, str], str]]] = {
    "Equals": (same, lambda a, b: f"{a} == {b}"),
    "DoesNotEqual": (lambda x, y: not same(x, y), lambda a, b: f"{a} != {b}"),
}
for _name_, _symbol in (
    ("IsGreaterThan", ">"),
    ("IsGreaterThanOrEquals", ">="),
    ("IsLessThan", "<"),
    ("IsLessThanOrEquals", "<="),
):
    _MULTI_KEY[_name_] = (
        lambda x, y, s=_symbol: _is_number(x) and _is_number(y) and _compare(s)(x, y),
        lambda a, b, s=_symbol: f"({_js_is(a, 'number')} && {_js_is(b, 'number')} && {a} {s} {b})",
    )
_MULTI_KEY["IsGreaterThanOrEqual"] = _MULTI_KEY["IsGreaterThanOrEquals"]
_MULTI_KEY["IsLessThanOrEqual"] = _MULTI_KEY["IsLessThanOrEquals"]
for _name_, _method, _function in (
    ("Contains", "__contains__", "contains"),
    ("StartsWith", "startswith", "starts_with"),
    ("EndsWith", "endswith", "ends_with"),
):
    _positive = (
        lambda x, y, m=_method: isinstance(x, str) and isinstance(y, str) and getattr(x, m)(y),
        lambda a, b, f=_function: (
            f"({_js_is(a, 'string')} && {_js_is(b, 'string')} && {f}({a}, {b}))"
        ),
    )
    _MULTI_KEY[_name_] = _positive
    _negative = (
        _name_.replace("Contains", "DoesNotContain")
        .replace("StartsWith", "DoesNotStartWith")
        .replace("EndsWith", "DoesNotEndWith")
    )
    _MULTI_KEY[_negative] = (
        lambda x, y, t=_positive[0]: not t(x, y),
        lambda a, b, j=_positive[1]: f"!({j(a, b)})",
    )

_ELEMENT_CONDITIONS = ("AnyElement", "AllElements", "NoElement", "OnlyOneElement")
_GROUPS = ("All", "Any", "OnlyOne", "None")
_UNSUPPORTED = {
    "CIDRContainsIPAddresses": "a key holding a CIDR is not supported; compare the address"
    " with IsIPAddressInCIDR instead",
    "CIDRDoesNotContainIPAddresses": "a key holding a CIDR is not supported; compare the"
    " address with IsIPAddressNotInCIDR instead",
}


# -- the expression tree ----------------------------------------------------------------


@dataclass
class Node:
    """A compiled match expression: `test(data)`, and its JMESPath translation relative to
    the data it runs on (the activity, or a list element)."""

    test: Predicate
    jmes: str
    # For `detect convert`: a native `match` entry (path, operator, argument) when this
    # node is one positive condition a match operator expresses exactly.
    native: tuple[str, str, Any] | None = None
    # The activity types an Equals/IsIn on `type` pins (for the evaluator's index).
    types: frozenset[str] | None = None


def _constant(value: bool) -> Node:
    return Node((lambda data: True) if value else (lambda data: False), literal(value))


def _check_value(where: list[Any], condition: Condition, value: Any) -> None:
    if condition.value_types and (
        (isinstance(value, bool) and bool not in condition.value_types)
        or not isinstance(value, condition.value_types)
    ):
        kinds = {str: "a string", int: "a number", float: "a number", bool: "a boolean"}
        wanted = " or ".join(dict.fromkeys(kinds[t] for t in condition.value_types))
        raise SimpleDetectionError(
            [*where, "Value"], f"{condition.name} takes {wanted} as Value, not {value!r}"
        )


def _scalar_node(where: list[Any], expression: Mapping[str, Any], name: str) -> Node:
    condition = CONDITIONS[name]
    key = key_spec(where, expression)
    allowed = {"Key", "KeyPath", "DeepKey", "Condition"}
    argument: Any = None
    if condition.argument == "value":
        if "Value" not in expression:
            raise SimpleDetectionError(where, f"{name} needs a Value")
        argument = expression["Value"]
        if isinstance(argument, list | dict) or argument is None:
            raise SimpleDetectionError(
                [*where, "Value"], f"Value must be a string, number or boolean: {argument!r}"
            )
        _check_value(where, condition, argument)
        allowed.add("Value")
    elif condition.argument == "values":
        values = expression.get("Values")
        if not isinstance(values, list) or not values:
            raise SimpleDetectionError(where, f"{name} needs Values: a non-empty list")
        for item in values:
            if isinstance(item, list | dict) or item is None:
                raise SimpleDetectionError(
                    [*where, "Values"], f"Values are strings, numbers or booleans: {item!r}"
                )
        argument = tuple(values)
        allowed.add("Values")
    elif condition.argument == "cidrs":
        given = expression.get("Values", expression.get("Value"))
        cidrs = given if isinstance(given, list) else [given]
        if given is None or not cidrs or not all(isinstance(c, str) for c in cidrs):
            raise SimpleDetectionError(where, f"{name} needs a CIDR as Value (or a list in Values)")
        try:
            networks = _networks(tuple(cidrs))
        except ValueError as exc:
            raise SimpleDetectionError(
                [*where, "Values" if "Values" in expression else "Value"], f"not a CIDR: {exc}"
            ) from exc
        argument = (tuple(cidrs), networks)
        allowed |= {"Value", "Values"}
    extra = set(expression) - allowed
    if extra:
        raise SimpleDetectionError(
            [*where, sorted(extra)[0]], f"{name} does not take {', '.join(sorted(extra))}"
        )
    get, test = key.get, condition.test
    native = condition.native(argument)
    types = None
    if key.path == "type" and name in ("Equals", "IsIn"):
        pinned = [argument] if name == "Equals" else list(argument)
        if all(isinstance(t, str) for t in pinned):
            types = frozenset(pinned)
    return Node(
        lambda data: test(get(data), argument),
        condition.jmes(key.path, argument),
        (key.path, native[0], native[1]) if native is not None else None,
        types,
    )


def _multi_key_node(where: list[Any], expression: Mapping[str, Any], name: str) -> Node:
    values = expression.get("Values")
    if set(expression) != {"Condition", "Values"} or not isinstance(values, list):
        raise SimpleDetectionError(where, "a multi-key expression has Condition and Values")
    if len(values) != 2 or not all(isinstance(v, dict) for v in values):
        raise SimpleDetectionError(
            [*where, "Values"], "a multi-key expression compares exactly two keys"
        )
    if name not in _MULTI_KEY:
        known = ", ".join(sorted(_MULTI_KEY))
        raise SimpleDetectionError(
            [*where, "Condition"],
            f"condition {name!r} is not supported between two keys (supported: {known})",
        )
    first = key_spec([*where, "Values", 0], values[0])
    second = key_spec([*where, "Values", 1], values[1])
    for index, spec in enumerate(values):
        if len(spec) != 1:
            raise SimpleDetectionError([*where, "Values", index], "give only the key here")
    test, jmes = _MULTI_KEY[name]
    get_a, get_b = first.get, second.get
    return Node(lambda data: test(get_a(data), get_b(data)), jmes(first.path, second.path))


def _element_node(where: list[Any], expression: Mapping[str, Any], name: str) -> Node:
    key = key_spec(where, expression)
    extra = set(expression) - {"Key", "KeyPath", "DeepKey", "Condition", "Expressions"}
    if extra:
        raise SimpleDetectionError([*where, sorted(extra)[0]], f"{name} does not take it")
    inner = compile_list([*where, "Expressions"], expression.get("Expressions"))
    get, check = key.get, inner.test
    path = key.path
    matching = f"length({path}[?{inner.jmes}])"
    is_array = _js_is(path, "array")

    def elements(data: Data) -> list[Any] | None:
        value = get(data)
        return value if type(value) is list else None

    if name == "AnyElement":

        def test(data: Data) -> bool:
            items = elements(data)
            return items is not None and any(check(i) for i in items)

        return Node(test, f"({is_array} && {matching} > `0`)")
    if name == "AllElements":

        def test_all(data: Data) -> bool:
            items = elements(data)
            return items is not None and all(check(i) for i in items)

        return Node(test_all, f"({is_array} && {matching} == length({path}))")
    if name == "NoElement":

        def test_none(data: Data) -> bool:
            items = elements(data)
            return items is None or not any(check(i) for i in items)

        return Node(test_none, f"!({is_array} && {matching} > `0`)")

    def test_one(data: Data) -> bool:
        items = elements(data)
        return items is not None and sum(1 for i in items if check(i)) == 1

    return Node(test_one, f"({is_array} && {matching} == `1`)")


def _group_node(where: list[Any], kind: str, items: Any) -> Node:
    items = _items(where, items)
    children = [compile_expression([*where, i], item) for i, item in enumerate(items)]
    tests = [c.test for c in children]
    jmes = [c.jmes for c in children]
    if kind == "All":
        return _all(children)
    if kind == "Any":

        def any_(data: Data) -> bool:
            return any(t(data) for t in tests)

        pinned = [c.types for c in children]
        types = None if any(t is None for t in pinned) else frozenset().union(*pinned)
        return Node(any_, "(" + " || ".join(jmes) + ")", types=types)
    if kind == "None":

        def none_(data: Data) -> bool:
            return not any(t(data) for t in tests)

        return Node(none_, "!(" + " || ".join(jmes) + ")")

    def only_one(data: Data) -> bool:
        return sum(1 for t in tests if t(data)) == 1

    return Node(only_one, "length([" + ", ".join(jmes) + "][?@]) == `1`")


def _all(children: list[Node]) -> Node:
    tests = tuple(c.test for c in children)
    if len(tests) == 1:
        test = tests[0]
    else:

        def test(data: Data) -> bool:
            for check in tests:  # noqa: SIM110 - a plain loop is faster on the hot path
                if not check(data):
                    return False
            return True

    pinned = [c.types for c in children if c.types is not None]
    types = frozenset.intersection(*pinned) if pinned else None
    if len(children) == 1:
        return Node(test, children[0].jmes, children[0].native, types)
    return Node(test, "(" + " && ".join(c.jmes for c in children) + ")", None, types)


def _items(where: list[Any], items: Any) -> list[Any]:
    if not isinstance(items, list) or not items:
        raise SimpleDetectionError(where, "must be a non-empty list of match expressions")
    return items


def compile_expression(where: list[Any], expression: Any) -> Node:
    """One match expression (a condition or a group) as a Node."""
    if not isinstance(expression, dict):
        raise SimpleDetectionError(where, f"a match expression is a mapping, not {expression!r}")
    groups = [k for k in _GROUPS if k in expression]
    if groups:
        if len(expression) != 1:
            raise SimpleDetectionError(where, f"{groups[0]} must be the only key of its mapping")
        return _group_node([*where, groups[0]], groups[0], expression[groups[0]])
    if "Enrichment" in expression:
        raise SimpleDetectionError(
            [*where, "Enrichment"], "Enrichment (lookup tables) is not supported by detect"
        )
    name = expression.get("Condition")
    if not isinstance(name, str):
        raise SimpleDetectionError(where, "a match expression needs a Condition (or All/Any/...)")
    if name in ("AlwaysTrue", "AlwaysFalse"):
        if len(expression) != 1:
            raise SimpleDetectionError(where, f"{name} takes no key or value")
        return _constant(name == "AlwaysTrue")
    if name in _ELEMENT_CONDITIONS:
        return _element_node(where, expression, name)
    has_key = any(k in expression for k in ("Key", "KeyPath", "DeepKey"))
    if not has_key and "Values" in expression:
        return _multi_key_node(where, expression, name)
    if name in _UNSUPPORTED:
        raise SimpleDetectionError([*where, "Condition"], f"{name}: {_UNSUPPORTED[name]}")
    if name not in CONDITIONS:
        raise SimpleDetectionError(
            [*where, "Condition"],
            f"condition {name!r} is not supported (supported: {', '.join(supported())})",
        )
    return _scalar_node(where, expression, name)


def compile_list(where: list[Any], expressions: Any) -> Node:
    """A list of match expressions that must all hold (a `Detection` or `Expressions`)."""
    items = _items(where, expressions)
    return _all([compile_expression([*where, i], item) for i, item in enumerate(items)])


def top_level(where: list[Any], expressions: Any) -> list[Node]:
    """The top-level expressions of a block, one Node each (explicit `All` groups are
    flattened): `detect convert` turns the positive conditions among them into `match`."""
    nodes: list[Node] = []
    for index, item in enumerate(_items(where, expressions)):
        if isinstance(item, dict) and set(item) == {"All"}:
            nodes.extend(top_level([*where, index, "All"], item["All"]))
        else:
            nodes.append(compile_expression([*where, index], item))
    return nodes


def supported() -> list[str]:
    """The condition names detect understands (documentation and error messages)."""
    return sorted({*CONDITIONS, *_ELEMENT_CONDITIONS, "AlwaysTrue", "AlwaysFalse"})


def key_spec_path(where: list[Any], spec: Any) -> KeySpec:
    """A bare key specifier (GroupBy items, AlertContext values, multi-key operands)."""
    if not isinstance(spec, dict):
        raise SimpleDetectionError(where, f"a key specifier is a mapping, not {spec!r}")
    extra = set(spec) - {"Key", "KeyPath", "DeepKey"}
    if extra:
        raise SimpleDetectionError([*where, sorted(extra)[0]], "not a key specifier key")
    return key_spec(where, spec)


_HOLE = re.compile(r"\{([^{}]*)\}")


def title_template(text: str) -> str:
    """An `AlertTitle` (`{KeyPath}` holes) as a native template (`{jmespath}` holes, other
    braces doubled)."""
    out: list[str] = []
    position = 0
    for match in _HOLE.finditer(text):
        literal_text = text[position : match.start()]
        out.append(literal_text.replace("{", "{{").replace("}", "}}"))
        inner = match.group(1).strip()
        if not inner:
            raise ValueError(f"empty {{}} in AlertTitle {text!r}")
        path, _ = _key_path(inner)
        out.append("{" + path + "}")
        position = match.end()
    out.append(text[position:].replace("{", "{{").replace("}", "}}"))
    return "".join(out)
