"""Small semantic changes ("mutants") of one rule, made from its parsed definition.

Each mutant is the rule's document with one thing changed: a threshold moved by one, a
window halved, a condition dropped or turned around, an operator swapped for its
neighbour, a step dropped, a dedup key part left out; for a Python rule, one comparison or
boolean operator of its `rule()` function flipped. A rule's tests should notice every one
of them: a mutant its tests pass on is a behaviour no test pins down, and each mutant
carries a one-line hint of the test that would (`mutate.py` runs them).

Some mutants provably cannot change a verdict (an `exists: true` guard on the path the
engine skips activities without anyway, two identical sequence steps swapped); they are
marked `equivalent` with the reason, and left out of the score. Only such proofs count:
a mutant is never called equivalent because the tests happen not to tell it apart.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine.detection.operators import pinned_values
from engine.detection.rule import Rule
from engine.durations import parse_duration

DEFAULT_FORGET = "90d"

# An operator and its neighbour: the one a typo or a wrong reading of the spec gives.
NEIGHBOURS = {
    "gt": "gte",
    "gte": "gt",
    "lt": "lte",
    "lte": "lt",
    "in": "not_in",
    "not_in": "in",
    "equals": "not_equals",
    "not_equals": "equals",
    "cidr": "not_cidr",
    "not_cidr": "cidr",
    "in_list": "not_in_list",
    "not_in_list": "in_list",
}
# Operators that never hold on a missing or null value: beside one of them, an
# `exists: true` on the same path decides nothing.
_FALSE_ON_NULL = frozenset(
    {"cidr", "not_cidr", "contains", "starts_with", "ends_with", "regex", "gt", "gte", "lt"}
    | {"lte", "in_list"}
)


@dataclass(frozen=True)
class Mutant:
    """One change of one rule. `where` is the key path of what changed (for its line),
    `change` what it became, `hint` the test that would tell it apart. A YAML mutant has
    the changed `document`; a Python one the changed `module_ast` of the rule's module."""

    kind: str
    where: tuple[Any, ...]
    change: str
    hint: str
    document: Mapping[str, Any] | None = None
    module_ast: ast.Module | None = None
    module_path: Path | None = None
    python_line: int | None = None
    equivalent: str | None = None

    @property
    def location(self) -> str:
        return ".".join(str(p) for p in self.where)


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _duration_text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 1)}s"


def _scaled(text: str, factor: float) -> str | None:
    try:
        delta = parse_duration(text)
    except ValueError:
        return None
    scaled = timedelta(seconds=max(1, int(delta.total_seconds() * factor)))
    return None if scaled == delta else _duration_text(scaled)


class _Maker:
    """Builds mutants of one document: each starts from a fresh copy (tests shared)."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        self.body = {k: v for k, v in doc.items() if k != "tests"}

    def copy(self) -> dict[str, Any]:
        mutated = copy.deepcopy(self.body)
        if "tests" in self.doc:
            mutated["tests"] = self.doc["tests"]
        return mutated

    def make(
        self,
        kind: str,
        where: tuple[Any, ...],
        change: str,
        hint: str,
        edit: Callable[[dict[str, Any]], None],
        equivalent: str | None = None,
    ) -> Mutant:
        mutated = self.copy()
        edit(mutated)
        if equivalent is None and {k: v for k, v in mutated.items() if k != "tests"} == self.body:
            equivalent = "the change leaves the definition as it was"
        return Mutant(kind, where, change, hint, document=mutated, equivalent=equivalent)


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _skipped_without(rule_doc: Mapping[str, Any], block_where: tuple[Any, ...]) -> set[str]:
    """Paths the engine itself skips activities without, for a block's matches: a new
    value rule's `of` and `per` (top-level block), a sequence step's `by`."""
    if not block_where:
        spec = rule_doc.get("new_value")
        if isinstance(spec, Mapping):
            return {p for p in (spec.get("of"), spec.get("per")) if isinstance(p, str)}
        return set()
    step = _at(rule_doc, block_where)
    return {step["by"]} if isinstance(step.get("by"), str) else set()


def _condition_mutants(
    maker: _Maker,
    block_where: tuple[Any, ...],
    path: str,
    condition: Any,
    guarded_by: set[str],
    python_types: frozenset[str] | None = None,
) -> Iterator[Mutant]:
    where = (*block_where, "match", path)

    def drop_entry(doc: dict[str, Any]) -> None:
        block = _at(doc, block_where)
        del block["match"][path]
        if not block["match"]:
            del block["match"]

    only_exists = isinstance(condition, Mapping) and dict(condition) == {"exists": True}
    if only_exists:
        skipped = path in guarded_by
        yield maker.make(
            "drop-exists",
            where,
            f"guard `{path}: {{exists: true}}` removed",
            f"no test activity lacks {path} (add one that must not alert)",
            drop_entry,
            f"the engine skips activities without {path} anyway" if skipped else None,
        )
    else:
        admitted = pinned_values(condition) if path == "type" else None
        rechecked = python_types is not None and admitted is not None and python_types <= admitted
        yield maker.make(
            "drop-condition",
            where,
            f"condition `{path}: {_fmt(condition)}` removed",
            f"no test activity fails only `{path}: {_fmt(condition)}` (a near miss that "
            "differs from a firing activity there alone)",
            drop_entry,
            "the Python rule() requires the same activity type itself" if rechecked else None,
        )

    if isinstance(condition, Mapping):
        for op, argument in condition.items():
            op_where = (*where, op)
            if op == "exists" and isinstance(argument, bool):
                if not only_exists:
                    yield maker.make(
                        "swap-operator",
                        op_where,
                        f"`{path}: {{exists: {_fmt(not argument)}}}`",
                        f"no firing test activity has {path} {'set' if argument else 'unset'}",
                        _set_op(block_where, path, op, "exists", not argument),
                    )
                    implied = any(o in _FALSE_ON_NULL for o in condition if o != op)
                    yield maker.make(
                        "drop-exists",
                        op_where,
                        f"`exists: {_fmt(argument)}` removed from `{path}`",
                        f"no test activity has {path} {'unset' if argument else 'set'}",
                        _drop_op(block_where, path, op),
                        f"another operator on {path} is false on a missing value"
                        if argument and implied
                        else None,
                    )
                continue
            neighbour = NEIGHBOURS.get(op)
            if neighbour is not None:
                yield maker.make(
                    "swap-operator",
                    op_where,
                    f"`{path}: {{{op}: {_fmt(argument)}}}` became `{neighbour}`",
                    _swap_hint(path, op, argument),
                    _set_op(block_where, path, op, neighbour, argument),
                )
            if len(condition) > 1:
                yield maker.make(
                    "drop-condition",
                    op_where,
                    f"`{op}: {_fmt(argument)}` removed from `{path}`",
                    f"no test activity fails only `{path}: {{{op}: {_fmt(argument)}}}`",
                    _drop_op(block_where, path, op),
                )
    else:
        negated = (
            {"not_in": condition}
            if isinstance(condition, list)
            else {"exists": True}
            if condition is None
            else {"not_equals": condition}
        )

        def negate(doc: dict[str, Any]) -> None:
            _at(doc, block_where)["match"][path] = copy.deepcopy(negated)

        yield maker.make(
            "negate-condition",
            where,
            f"`{path}: {_fmt(condition)}` became `{_fmt(negated)}`",
            f"no test tells `{path}: {_fmt(condition)}` from its opposite (a firing "
            f"activity that meets it, a quiet one that does not)",
            negate,
        )


def _swap_hint(path: str, op: str, argument: Any) -> str:
    if op in ("gt", "gte", "lt", "lte"):
        return f"no test activity has {path} equal to {_fmt(argument)} (the boundary)"
    return f"no test tells `{op}` from `{NEIGHBOURS[op]}` on {path} (one activity on each side)"


def _set_op(
    block_where: tuple[Any, ...], path: str, op: str, new_op: str, argument: Any
) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        condition = _at(doc, block_where)["match"][path]
        rebuilt = {}
        for key, value in condition.items():
            if key == op:
                rebuilt[new_op] = copy.deepcopy(argument)
            else:
                rebuilt[key] = value
        _at(doc, block_where)["match"][path] = rebuilt

    return edit


def _drop_op(block_where: tuple[Any, ...], path: str, op: str) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        del _at(doc, block_where)["match"][path][op]

    return edit


def _block_mutants(
    maker: _Maker,
    doc: Mapping[str, Any],
    block_where: tuple[Any, ...],
    python_types: frozenset[str] | None = None,
) -> Iterator[Mutant]:
    """Mutants of the `match` and `when` of the rule or of one sequence step."""
    block = _at(doc, block_where)
    guarded_by = _skipped_without(doc, block_where)
    match = block.get("match")
    if isinstance(match, Mapping):
        for path, condition in match.items():
            yield from _condition_mutants(
                maker, block_where, str(path), condition, guarded_by, python_types
            )
    when = block.get("when")
    if isinstance(when, str):
        where = (*block_where, "when")

        def negate(mutated: dict[str, Any]) -> None:
            _at(mutated, block_where)["when"] = f"!({when})"

        def drop(mutated: dict[str, Any]) -> None:
            del _at(mutated, block_where)["when"]

        yield maker.make(
            "negate-when",
            where,
            f"`when` negated: !({when})",
            "no test tells `when` from its opposite (a firing activity that makes it true, "
            "a quiet one that makes it false)",
            negate,
        )
        yield maker.make(
            "drop-when",
            where,
            "`when` removed",
            f"no test activity fails only `when: {when}`",
            drop,
        )


def _threshold_mutants(maker: _Maker, spec: Mapping[str, Any]) -> Iterator[Mutant]:
    count = spec.get("count")
    if isinstance(count, int) and not isinstance(count, bool):

        def counted(value: int) -> Callable[[dict[str, Any]], None]:
            return lambda doc: doc["threshold"].__setitem__("count", value)

        yield maker.make(
            "threshold-count",
            ("threshold", "count"),
            f"threshold.count {count} -> {count + 1}",
            f"no test fires with exactly {count} matches (no test sits at count)",
            counted(count + 1),
        )
        if count > 1:
            yield maker.make(
                "threshold-count",
                ("threshold", "count"),
                f"threshold.count {count} -> {count - 1}",
                f"no test stays quiet with exactly {count - 1} matches (no test sits at count-1)",
                counted(count - 1),
            )
    window = spec.get("window")
    if isinstance(window, str):
        yield from _duration_mutants(
            maker,
            ("threshold", "window"),
            window,
            "no test fires with its matches spread over more than half the window",
            "no test stays quiet with matches spread just beyond the window",
        )
    distinct = spec.get("distinct")
    if isinstance(distinct, str):
        yield maker.make(
            "drop-distinct",
            ("threshold", "distinct"),
            f"threshold.distinct ({distinct}) removed",
            f"no test repeats a value of {distinct} (repeats must count once)",
            lambda doc: doc["threshold"].__delitem__("distinct"),
        )


def _duration_mutants(
    maker: _Maker,
    where: tuple[Any, ...],
    text: str,
    shorter_hint: str,
    longer_hint: str,
    present: bool = True,
) -> Iterator[Mutant]:
    for factor, label, hint in ((0.5, "halved", shorter_hint), (2.0, "doubled", longer_hint)):
        scaled = _scaled(text, factor)
        if scaled is None:
            continue

        def edit(doc: dict[str, Any], value: str = scaled) -> None:
            _at(doc, where[:-1])[where[-1]] = value

        name = ".".join(where)
        yield maker.make(
            "duration",
            where,
            f"{name} {text} {label} to {scaled}" + ("" if present else " (default)"),
            hint,
            edit,
        )


def _new_value_mutants(maker: _Maker, spec: Mapping[str, Any]) -> Iterator[Mutant]:
    forget = spec.get("forget")
    text = forget if isinstance(forget, str) else DEFAULT_FORGET
    yield from _duration_mutants(
        maker,
        ("new_value", "forget"),
        text,
        f"no test sees a value again between half of {text} and {text} after it was last "
        "seen (it must stay quiet)",
        f"no test sees a value again just after {text} unseen (it must fire)",
        present=isinstance(forget, str),
    )
    if isinstance(forget, str):
        try:
            default = parse_duration(forget) == parse_duration(DEFAULT_FORGET)
        except ValueError:
            default = True
        if not default:
            yield maker.make(
                "duration",
                ("new_value", "forget"),
                f"new_value.forget {forget} removed (the default {DEFAULT_FORGET})",
                f"no test sees a value again just after {forget} unseen (it must fire)",
                lambda doc: doc["new_value"].__delitem__("forget"),
            )
    if isinstance(spec.get("per"), str):
        per = spec["per"]
        yield maker.make(
            "drop-per",
            ("new_value", "per"),
            f"new_value.per ({per}) removed",
            f"no test shows a value known for one {per} firing for another",
            lambda doc: doc["new_value"].__delitem__("per"),
        )
    learn_from = spec.get("learn_from", "matches")
    other = "all" if learn_from == "matches" else "matches"
    yield maker.make(
        "learn-from",
        ("new_value", "learn_from"),
        f"new_value.learn_from {learn_from} -> {other}",
        "no test has a value first seen on an activity the rule does not match"
        if other == "all"
        else "no test teaches a value from an activity the rule does not match",
        lambda doc: doc["new_value"].__setitem__("learn_from", other),
    )
    first = bool(spec.get("alert_on_first", False))
    yield maker.make(
        "alert-on-first",
        ("new_value", "alert_on_first"),
        f"new_value.alert_on_first {_fmt(first)} -> {_fmt(not first)}",
        "no test shows a key's first value "
        + ("alerting" if first else "learned silently (a first activity alone: 0 alerts)"),
        lambda doc: doc["new_value"].__setitem__("alert_on_first", not first),
    )


def _sequence_mutants(maker: _Maker, doc: Mapping[str, Any]) -> Iterator[Mutant]:
    spec = doc["sequence"]
    within = spec.get("within")
    if isinstance(within, str):
        yield from _duration_mutants(
            maker,
            ("sequence", "within"),
            within,
            "no test completes the sequence with its last step more than half of "
            f"{within} after the first",
            f"no test stays quiet with its last step just over {within} after the first",
        )
    steps = spec.get("steps") or []
    if len(steps) > 1:
        for index in range(len(steps)):

            def drop(mutated: dict[str, Any], i: int = index) -> None:
                del mutated["sequence"]["steps"][i]

            yield maker.make(
                "drop-step",
                ("sequence", "steps", index),
                f"sequence step {index + 1} removed",
                f"no test leaves out step {index + 1} and must stay quiet",
                drop,
            )
        for index in range(len(steps) - 1):

            def swap(mutated: dict[str, Any], i: int = index) -> None:
                found = mutated["sequence"]["steps"]
                found[i], found[i + 1] = found[i + 1], found[i]

            identical = _plain(steps[index]) == _plain(steps[index + 1])
            yield maker.make(
                "swap-steps",
                ("sequence", "steps", index),
                f"sequence steps {index + 1} and {index + 2} swapped",
                f"no test has steps {index + 1} and {index + 2} in the wrong order (it must "
                "stay quiet)",
                swap,
                "the two steps are identical" if identical else None,
            )
    for index in range(len(steps)):
        yield from _block_mutants(maker, doc, ("sequence", "steps", index))
    if isinstance(spec.get("reset"), Mapping):
        yield maker.make(
            "drop-reset",
            ("sequence", "reset"),
            "sequence.reset removed",
            "no test shows the reset activity clearing a partial sequence",
            lambda mutated: mutated["sequence"].__delitem__("reset"),
        )


_HOLE = re.compile(r"\{\{|\}\}|\{[^{}]*\}")


def _dedup_mutants(maker: _Maker, key: str) -> Iterator[Mutant]:
    holes = [m for m in _HOLE.finditer(key) if m.group() not in ("{{", "}}")]
    for hole in holes:
        start, end = hole.span()
        # Take one neighbouring separator with the hole, so `{a}:{b}` becomes `{a}`.
        if end < len(key) and key[end] in ":/|-_ " and start == 0:
            end += 1
        elif start > 0 and key[start - 1] in ":/|-_ ":
            start -= 1
        rest = key[:start] + key[end:]

        def edit(doc: dict[str, Any], value: str = rest) -> None:
            doc["dedup"]["key"] = value

        part = hole.group()
        yield maker.make(
            "drop-dedup-part",
            ("dedup", "key"),
            f"dedup key part {part} removed ({rest!r})",
            f"no test checks the dedup key (`dedup:`), nor has alerts told apart by {part} alone",
            edit,
        )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------
# Python rules: flips inside the rule() function, on the module's AST.

_COMPARE_FLIPS: dict[type, type] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_SYMBOLS = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}


def _rule_function(tree: ast.Module) -> ast.FunctionDef | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "rule":
            return node
    return None


def _python_sites(function: ast.FunctionDef) -> list[tuple[Any, ...]]:
    """Every flippable spot of the function, as (kind, node index in ast.walk order, op
    index, description, line)."""
    sites = []
    for number, node in enumerate(ast.walk(function)):
        if isinstance(node, ast.Compare):
            for index, op in enumerate(node.ops):
                if type(op) in _COMPARE_FLIPS:
                    flipped = _SYMBOLS[_COMPARE_FLIPS[type(op)]]
                    text = f"`{_SYMBOLS[type(op)]}` became `{flipped}`"
                    sites.append(("compare", number, index, text, node.lineno))
        elif isinstance(node, ast.BoolOp):
            text = "`and` became `or`" if isinstance(node.op, ast.And) else "`or` became `and`"
            sites.append(("boolop", number, 0, text, node.lineno))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            sites.append(("not", number, 0, "`not` removed", node.lineno))
    return sites


def _reads_type(node: ast.AST, event: str) -> bool:
    """`event.get("type")` or `event["type"]`."""
    if isinstance(node, ast.Subscript):
        key = node.slice
        return (
            isinstance(node.value, ast.Name)
            and node.value.id == event
            and isinstance(key, ast.Constant)
            and key.value == "type"
        )
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == event
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == "type"
    )


def _required_types(test: ast.AST, event: str) -> frozenset[str] | None:
    """The types a conjunct `event.get("type") == "x"` (or `in ("x", "y")`) admits."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and _reads_type(test.left, event)):
        return None
    (op,), (right,) = test.ops, test.comparators
    if isinstance(op, ast.Eq) and isinstance(right, ast.Constant) and isinstance(right.value, str):
        return frozenset([right.value])
    if isinstance(op, ast.In) and isinstance(right, ast.Tuple | ast.List | ast.Set):
        values = [e.value for e in right.elts if isinstance(e, ast.Constant)]
        if len(values) == len(right.elts) and all(isinstance(v, str) for v in values):
            return frozenset(values)
    return None


def _python_types(rule: Rule) -> frozenset[str] | None:
    """The activity types a Python rule's rule() provably requires: its body is one
    `return A and ...` (a docstring aside) whose conjunct A compares the event's type with
    constants. None when that cannot be shown."""
    if rule.module is None:
        return None
    path = Path(getattr(rule.module, "__file__", "") or "")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    function = _rule_function(tree)
    if function is None or not function.args.args:
        return None
    body = list(function.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
        return None
    value = body[0].value
    conjuncts = (
        value.values if isinstance(value, ast.BoolOp) and isinstance(value.op, ast.And) else [value]
    )
    event = function.args.args[0].arg
    for conjunct in conjuncts:
        types = _required_types(conjunct, event)
        if types is not None:
            return types
    return None


class _DropNot(ast.NodeTransformer):
    def __init__(self, target: ast.AST) -> None:
        self.target = target

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        return node.operand if node is self.target else node


def _python_mutants(rule: Rule) -> Iterator[Mutant]:
    module = rule.module
    path = Path(getattr(module, "__file__", "") or "")
    if not path.is_file():
        return
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return
    function = _rule_function(tree)
    if function is None:
        return
    for kind, number, index, text, line in _python_sites(function):
        mutated = copy.deepcopy(tree)
        node = list(ast.walk(_rule_function(mutated)))[number]
        if kind == "compare":
            node.ops[index] = _COMPARE_FLIPS[type(node.ops[index])]()
        elif kind == "boolop":
            node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        else:
            mutated = _DropNot(node).visit(mutated)
        ast.fix_missing_locations(mutated)
        yield Mutant(
            "python",
            ("python",),
            f"{path.name}:{line} in rule(): {text}",
            f"no test tells the condition at {path.name}:{line} from its flip (an activity "
            "on each side of it)",
            module_ast=mutated,
            module_path=path,
            python_line=line,
        )


# ---------------------------------------------------------------------------------------


def generate(rule: Rule) -> list[Mutant]:
    """Every mutant of a native rule (an empty list for rules of other formats)."""
    doc = rule.document
    if not isinstance(doc, Mapping) or "id" not in doc or getattr(rule, "run_test", None):
        return []
    maker = _Maker(doc)
    mutants: list[Mutant] = []
    mutants += _block_mutants(maker, doc, (), _python_types(rule))
    if isinstance(doc.get("threshold"), Mapping):
        mutants += _threshold_mutants(maker, doc["threshold"])
    if isinstance(doc.get("new_value"), Mapping):
        mutants += _new_value_mutants(maker, doc["new_value"])
    if isinstance(doc.get("sequence"), Mapping):
        mutants += _sequence_mutants(maker, doc)
    dedup = doc.get("dedup")
    if isinstance(dedup, Mapping) and isinstance(dedup.get("key"), str):
        mutants += _dedup_mutants(maker, dedup["key"])
    if rule.module is not None:
        mutants += _python_mutants(rule)
    return mutants
