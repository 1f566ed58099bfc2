"""Compiling `match` blocks into plain closures.

A rule's `match` is compiled once at load time: paths become getters, conditions become
predicates, and the whole block becomes one function of the event data. Operator
semantics (missing values, type-aware equality) are written down in docs/architecture.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jmespath

from engine.detection.functions import (
    NamedLists,
    RegexError,
    compile_regex,
    in_networks,
    parse_ip,
    parse_network,
)
from engine.detection.jmespath_closures import compile_expression

Getter = Callable[[Mapping[str, Any]], Any]
Predicate = Callable[[Any], bool]
DataCheck = Callable[[Mapping[str, Any]], bool]

_SIMPLE_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")


class MatchError(ValueError):
    """A `match` entry that cannot be compiled; `key` is the path or operator at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class MatchErrors(ValueError):
    """Every entry of a `match` block that failed: (path, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(message for _, message in errors))
        self.errors = errors


def _simple_steps(path: str) -> list[str] | None:
    """The names of a dotted path (`actor.user_id`), None for any other JMESPath."""
    return path.split(".") if _SIMPLE_PATH.match(path) else None


def compile_path(path: str, options: jmespath.Options) -> Getter:
    """A getter for a JMESPath path; dotted names skip the JMESPath machinery (same result:
    a missing step or a non-object on the way gives None)."""
    steps = _simple_steps(path)
    if steps is not None:
        if len(steps) == 1:
            key = steps[0]
            return lambda data: data.get(key)
        if len(steps) == 2:
            outer, inner = steps

            def two(data: Mapping[str, Any]) -> Any:
                value = data.get(outer)
                return value.get(inner) if type(value) is dict else None

            return two

        def walk(data: Mapping[str, Any]) -> Any:
            value: Any = data
            for step in steps:
                if not isinstance(value, dict):
                    return None
                value = value.get(step)
            return value

        return walk
    try:
        return compile_expression(path, options)
    except jmespath.exceptions.JMESPathError as exc:
        raise MatchError(path, f"invalid JMESPath {path!r}: {exc}") from exc


def same(a: Any, b: Any) -> bool:
    """Equality that does not confuse `true` with `1` nor `1` with `1.0`-as-text."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return a == b


# Values of these exact types compare with `same` as Python's `==` and `hash` do (no bool
# among them: `True == 1`), so a set of them answers `in` with one lookup.
_MEMBER_TYPES = frozenset({str, int})


def _members(items: list[Any]) -> frozenset[Any] | None:
    """`items` as a set when every item is a plain string or integer, else None."""
    if all(type(i) in _MEMBER_TYPES for i in items):
        return frozenset(items)
    return None


def _any_same(value: Any, items: list[Any]) -> bool:
    """The `in` operator for any value: not null, and `same` as some item."""
    return value is not None and any(same(value, item) for item in items)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _comparable(a: Any, b: Any) -> bool:
    return (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))


def _networks(key: str, argument: Any) -> tuple:
    items = argument if isinstance(argument, list) else [argument]
    nets = []
    for item in items:
        if not isinstance(item, str):
            raise MatchError(key, f"{key} takes a CIDR string or a list of them, not {item!r}")
        try:
            nets.append(parse_network(item))
        except ValueError as exc:
            raise MatchError(key, f"{key}: {item!r} is not a CIDR") from exc
    return tuple(nets)


def _require_list(key: str, argument: Any) -> list:
    if not isinstance(argument, list):
        raise MatchError(key, f"{key} takes a list, not {argument!r}")
    return argument


def _require_str(key: str, argument: Any) -> str:
    if not isinstance(argument, str):
        raise MatchError(key, f"{key} takes a string, not {argument!r}")
    return argument


def _operator(key: str, argument: Any, lists: NamedLists) -> Predicate:
    """The predicate of one operator over the resolved value."""
    if key == "equals":
        if type(argument) is str:
            # A string equals only an equal string (never null, a bool or a number).
            return lambda v: v == argument
        return lambda v: v is not None and same(v, argument)
    if key == "not_equals":
        return lambda v: not same(v, argument)
    if key == "in":
        items = _require_list(key, argument)
        members = _members(items)
        if members is not None:
            return lambda v: v in members if type(v) in _MEMBER_TYPES else _any_same(v, items)
        return lambda v: _any_same(v, items)
    if key == "not_in":
        items = _require_list(key, argument)
        return lambda v: not any(same(v, i) for i in items)
    if key == "contains":

        def contains(v: Any) -> bool:
            if isinstance(v, str):
                return isinstance(argument, str) and argument in v
            if isinstance(v, list | tuple):
                return any(same(i, argument) for i in v)
            return False

        return contains
    if key == "starts_with":
        prefix = _require_str(key, argument)
        return lambda v: isinstance(v, str) and v.startswith(prefix)
    if key == "ends_with":
        suffix = _require_str(key, argument)
        return lambda v: isinstance(v, str) and v.endswith(suffix)
    if key == "regex":
        try:
            pattern = compile_regex(_require_str(key, argument))
        except RegexError as exc:
            raise MatchError(key, str(exc)) from exc
        return lambda v: isinstance(v, str) and pattern.search(v) is not None
    if key == "cidr":
        nets = _networks(key, argument)
        return lambda v: in_networks(v, nets)
    if key == "not_cidr":
        nets = _networks(key, argument)
        return lambda v: isinstance(v, str) and parse_ip(v) is not None and not in_networks(v, nets)
    if key == "exists":
        if not isinstance(argument, bool):
            raise MatchError(key, f"exists takes true or false, not {argument!r}")
        return (lambda v: v is not None) if argument else (lambda v: v is None)
    if key in ("gt", "gte", "lt", "lte"):
        if not (_is_number(argument) or isinstance(argument, str)):
            raise MatchError(key, f"{key} takes a number or a string, not {argument!r}")
        compare = {
            "gt": lambda v: v > argument,
            "gte": lambda v: v >= argument,
            "lt": lambda v: v < argument,
            "lte": lambda v: v <= argument,
        }[key]
        return lambda v: _comparable(v, argument) and compare(v)
    if key in ("in_list", "not_in_list"):
        name = _require_str(key, argument)
        try:
            named = lists.get(name)
        except KeyError as exc:
            raise MatchError(key, str(exc.args[0])) from exc
        if key == "in_list":
            return named.__contains__
        return lambda v: v not in named
    raise MatchError(key, f"unknown operator {key!r}")


def compile_condition(condition: Any, lists: NamedLists) -> Predicate:
    """A scalar means equals, a list means any of, a mapping holds operators (all must hold)."""
    if isinstance(condition, Mapping):
        if not condition:
            raise MatchError("", "an operator block needs at least one operator")
        predicates = [_operator(str(k), v, lists) for k, v in condition.items()]
        if len(predicates) == 1:
            return predicates[0]
        return lambda v: all(p(v) for p in predicates)
    if isinstance(condition, list):
        return _operator("in", list(condition), lists)
    if condition is None:
        return lambda v: v is None
    return _operator("equals", condition, lists)


def pinned_values(condition: Any) -> frozenset[str] | None:
    """The exact string values a condition admits, when it names them (for `type`
    dispatch); None when it could admit anything."""
    if isinstance(condition, str):
        return frozenset([condition])
    if isinstance(condition, list) and condition and all(isinstance(c, str) for c in condition):
        return frozenset(condition)
    if isinstance(condition, Mapping):
        if isinstance(condition.get("equals"), str):
            return frozenset([condition["equals"]])
        items = condition.get("in")
        if isinstance(items, list) and items and all(isinstance(c, str) for c in items):
            return frozenset(items)
    return None


def exact_values(condition: Any) -> frozenset[str] | None:
    """The string values a condition admits when it admits exactly those (`pinned_values`
    with no other operator beside `equals` or `in`); None otherwise."""
    if isinstance(condition, Mapping) and len(condition) != 1:
        return None
    return pinned_values(condition)


def _shape(condition: Any) -> tuple[str, Any] | None:
    """What `_fused` inlines: ("present" | "absent", None), ("equals", a string) or
    ("members", a list of plain strings and integers); None for anything else."""
    if isinstance(condition, Mapping):
        if len(condition) != 1:
            return None
        ((key, argument),) = condition.items()
        if key == "exists" and isinstance(argument, bool):
            return ("present" if argument else "absent", None)
        if key == "in" and isinstance(argument, list) and _members(argument) is not None:
            return ("members", argument)
        if key != "equals":
            return None
        condition = argument
    elif condition is None:
        return ("absent", None)
    elif isinstance(condition, list):
        return ("members", condition) if _members(condition) is not None else None
    if type(condition) is str:
        return ("equals", condition)
    if type(condition) is int:
        # Equal to an integer is being in a list of just that integer.
        return ("members", [condition])
    return None


def _fused(steps: list[str], shape: tuple[str, Any]) -> DataCheck:
    """A match entry on a one- or two-name path as a single closure: the same result as
    the getter and the predicate, in one call instead of three (this runs for every rule
    on every activity of its types)."""
    kind, argument = shape
    if len(steps) == 1:
        (key,) = steps
        if kind == "present":
            return lambda data: data.get(key) is not None
        if kind == "absent":
            return lambda data: data.get(key) is None
        if kind == "equals":
            return lambda data: data.get(key) == argument
        members = frozenset(argument)

        def member(data: Mapping[str, Any]) -> bool:
            value = data.get(key)
            if type(value) in _MEMBER_TYPES:
                return value in members
            return _any_same(value, argument)

        return member
    outer, inner = steps
    if kind == "present":

        def present(data: Mapping[str, Any]) -> bool:
            value = data.get(outer)
            return type(value) is dict and value.get(inner) is not None

        return present
    if kind == "absent":

        def absent(data: Mapping[str, Any]) -> bool:
            value = data.get(outer)
            return type(value) is not dict or value.get(inner) is None

        return absent
    if kind == "equals":

        def equals(data: Mapping[str, Any]) -> bool:
            value = data.get(outer)
            return type(value) is dict and value.get(inner) == argument

        return equals
    members = frozenset(argument)

    def nested_member(data: Mapping[str, Any]) -> bool:
        value = data.get(outer)
        value = value.get(inner) if type(value) is dict else None
        if type(value) in _MEMBER_TYPES:
            return value in members
        return _any_same(value, argument)

    return nested_member


def compile_check(
    path: str, condition: Any, lists: NamedLists, options: jmespath.Options
) -> DataCheck:
    """One entry of `match` as a function of the event data; raises `MatchError`."""
    getter = compile_path(path, options)
    predicate = compile_condition(condition, lists)
    steps = _simple_steps(path)
    shape = _shape(condition)
    if steps is not None and len(steps) <= 2 and shape is not None:
        return _fused(steps, shape)
    return lambda data: predicate(getter(data))


def all_of(checks: Sequence[DataCheck]) -> DataCheck | None:
    """One function true when every check is (in order, stopping at the first false);
    None for no checks at all."""
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda data: first(data) and second(data)
    every = tuple(checks)
    return lambda data: all(check(data) for check in every)


def compile_match(
    match: Mapping[str, Any], lists: NamedLists, options: jmespath.Options
) -> DataCheck:
    """One function of the event data that is true when every entry of `match` holds;
    raises `MatchErrors` naming every entry that does not compile."""
    checks: list[DataCheck] = []
    errors: list[tuple[str, str]] = []
    for path, condition in match.items():
        try:
            checks.append(compile_check(str(path), condition, lists, options))
        except MatchError as exc:
            errors.append((str(path), str(exc)))
    if errors:
        raise MatchErrors(errors)
    return all_of(checks) or (lambda data: True)
