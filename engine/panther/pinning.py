"""Which activity types a Panther rule's `rule()` can return True for, read off its code.

Most Panther rules start by checking the activity type:

    def rule(event):
        return event.get("type") == "claude_chat_access_failed"

    def rule(event):
        return event.get("type") in FAILURES and bool(event.deep_get("actor", "ip_address"))

    def rule(event):
        if event.get("type") not in ("a", "b"):
            return False
        ...

On any other type such a function returns False before doing anything else, so the
evaluator may skip it there, as it skips a native rule whose `match` pins `type`. Nothing
is guessed: a rule is pinned only when all of this is proven, else it runs on every
activity as before.

- `rule` is a plain function (no decorator, one positional parameter, no defaults) whose
  bytecode is exactly that of the `def` analysed here (so the file was not changed after
  the import, and `rule` was not rebound to something else);
- its first statement (after a docstring) is `return G`, `return G and ...`, or
  `if not G: return False` (also written `!=` / `not in`), where G is
  `event.get("type") == "x"`, `"x" == event.get("type")` or `event.get("type") in C`
  (`event["type"]` and `event.get("type", default)` too; the exact key `type`, which every
  activity has, so the value is the activity's type and nothing can raise);
- or the type is first read into a local name and the function dispatches on it, then
  returns False:

      def rule(event):
          event_type = event.get("type")
          if event_type == "org_sso_toggled":
              return ...
          if event_type in ("a", "b"):      # or elif
              ...
          return False

  where every statement between the first and the last is an `if` (with `elif`s, no
  `else`) whose test is `name == "x"`, `"x" == name` or `name in C`, and the name is not
  declared `global` or `nonlocal`: on another type no test holds (the comparisons have no
  effects and no branch ran to change the name), so the final `return False` is reached;
- C is a literal tuple, list or set of strings, or a module global that the module binds
  once, at top level, to a tuple or frozenset of strings (immutable), never rebinds
  (no other binding of the name, no `global` statement for it) and cannot rebind
  indirectly (the module does not use `globals`, `vars`, `setattr`, `exec`, `eval`,
  `__dict__` or `sys.modules`).

The evaluator never sees test mocks: Panther `Tests:` call `rule()` directly, so a mock of
the guard's constant still works there.
"""

from __future__ import annotations

import ast
import types
from pathlib import Path
from typing import Any

_DYNAMIC = frozenset(("globals", "vars", "setattr", "exec", "eval", "__dict__", "modules"))


def pinned_types(module: types.ModuleType, module_path: Path) -> frozenset[str] | None:
    """The activity types outside which `module.rule` returns False at once, or None
    when that cannot be proven."""
    function = getattr(module, "rule", None)
    if type(function) is not types.FunctionType:
        return None
    code = function.__code__
    try:
        source = Path(module_path).read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(module_path))
        compiled = compile(tree, str(module_path), "exec", dont_inherit=True)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None
    definition = next(
        (
            node
            for node in tree.body
            if isinstance(node, ast.FunctionDef)
            and node.name == "rule"
            and node.lineno == code.co_firstlineno
        ),
        None,
    )
    if definition is None or definition.decorator_list or not _same_code(compiled, code):
        return None
    parameter = _single_parameter(definition.args)
    if parameter is None:
        return None
    body = definition.body
    if (
        len(body) > 1
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]  # a docstring does nothing
    reader = _Reader(parameter, module, tree)
    first = body[0]
    if isinstance(first, ast.Return) and first.value is not None:
        guard = first.value
        if isinstance(guard, ast.BoolOp) and isinstance(guard.op, ast.And):
            guard = guard.values[0]
        return reader.guard(guard, negated=False)
    if (
        isinstance(first, ast.If)
        and not first.orelse
        and len(first.body) == 1
        and isinstance(first.body[0], ast.Return)
        and isinstance(first.body[0].value, ast.Constant)
        and first.body[0].value.value is False
    ):
        test = first.test
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return reader.guard(test.operand, negated=False)
        return reader.guard(test, negated=True)
    if isinstance(first, ast.Assign):
        return reader.dispatch(definition, body)
    return None


def _same_code(compiled: types.CodeType, code: types.CodeType) -> bool:
    """Whether the module compiled from the file analysed holds exactly `code`."""
    for constant in compiled.co_consts:
        if (
            isinstance(constant, types.CodeType)
            and constant.co_name == code.co_name
            and constant.co_firstlineno == code.co_firstlineno
        ):
            return (
                constant.co_code == code.co_code
                and constant.co_consts == code.co_consts
                and constant.co_names == code.co_names
                and constant.co_varnames == code.co_varnames
            )
    return False


def _single_parameter(arguments: ast.arguments) -> str | None:
    positional = arguments.posonlyargs + arguments.args
    if (
        len(positional) != 1
        or arguments.vararg
        or arguments.kwarg
        or arguments.kwonlyargs
        or arguments.defaults
    ):
        return None
    return positional[0].arg


class _Reader:
    def __init__(self, parameter: str, module: types.ModuleType, tree: ast.Module) -> None:
        self.parameter = parameter
        self.module = module
        self.tree = tree

    def guard(
        self, node: ast.expr, negated: bool, name: str | None = None
    ) -> frozenset[str] | None:
        """The types of `node` (an `==`/`in` on the type; `!=`/`not in` when negated); with
        `name`, on that local name holding the type instead of on the event."""

        def subject(side: ast.expr) -> bool:
            if name is None:
                return self.is_type(side)
            return isinstance(side, ast.Name) and side.id == name

        if not isinstance(node, ast.Compare) or len(node.ops) != 1:
            return None
        op, left, right = node.ops[0], node.left, node.comparators[0]
        equal, member = (ast.NotEq, ast.NotIn) if negated else (ast.Eq, ast.In)
        if isinstance(op, equal):
            if subject(left):
                return _string(right)
            if subject(right):
                return _string(left)
            return None
        if isinstance(op, member) and subject(left):
            return self.collection(right)
        return None

    def dispatch(self, definition: ast.FunctionDef, body: list[ast.stmt]) -> frozenset[str] | None:
        """The types of `name = <the type>`, then `if name == ...` branches, then
        `return False`; None for any other shape."""
        first, last = body[0], body[-1]
        if not (
            isinstance(first, ast.Assign)
            and len(first.targets) == 1
            and isinstance(first.targets[0], ast.Name)
            and self.is_type(first.value)
            and isinstance(last, ast.Return)
            and isinstance(last.value, ast.Constant)
            and last.value.value is False
            and len(body) > 2
        ):
            return None
        name = first.targets[0].id
        if name == self.parameter or any(
            isinstance(node, ast.Global | ast.Nonlocal) and name in node.names
            for node in ast.walk(definition)
        ):
            return None
        found: set[str] = set()
        for statement in body[1:-1]:
            while True:
                if not isinstance(statement, ast.If):
                    return None
                types = self.guard(statement.test, negated=False, name=name)
                if types is None:
                    return None
                found |= types
                if not statement.orelse:
                    break
                if len(statement.orelse) != 1:
                    return None  # an `else:` block runs on every other type
                statement = statement.orelse[0]  # an `elif`
        return frozenset(found)

    def is_type(self, node: ast.expr) -> bool:
        """`event.get("type")`, `event.get("type", default)` or `event["type"]`."""
        if isinstance(node, ast.Call):
            func = node.func
            return (
                isinstance(func, ast.Attribute)
                and func.attr == "get"
                and self.is_event(func.value)
                and not node.keywords
                and 1 <= len(node.args) <= 2
                and _is_type_key(node.args[0])
                and all(not isinstance(a, ast.Starred) for a in node.args)
                and (len(node.args) == 1 or _is_harmless(node.args[1]))
            )
        if isinstance(node, ast.Subscript):
            return self.is_event(node.value) and _is_type_key(node.slice)
        return False

    def is_event(self, node: ast.expr) -> bool:
        return isinstance(node, ast.Name) and node.id == self.parameter

    def collection(self, node: ast.expr) -> frozenset[str] | None:
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            found = [_string(item) for item in node.elts]
            if not found or any(f is None for f in found):
                return None
            return frozenset().union(*found)  # type: ignore[arg-type]
        if isinstance(node, ast.Name) and self.fixed_global(node.id):
            value = getattr(self.module, node.id, None)
            if type(value) in (tuple, frozenset) and all(type(v) is str for v in value):
                return frozenset(value)
        return None

    def fixed_global(self, name: str) -> bool:
        """Bound once at the module's top level and never rebound, even indirectly."""
        bindings = 0
        for statement in self.tree.body:
            if (
                isinstance(statement, ast.Assign)
                and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)
                and statement.targets[0].id == name
            ):
                bindings += 1
        if bindings != 1:
            return False
        stores = 0
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name):
                if node.id in _DYNAMIC:
                    return False
                if node.id == name and not isinstance(node.ctx, ast.Load):
                    stores += 1
            elif _rebinds(node, name):
                return False
        return stores == 1


def _rebinds(node: ast.AST, name: str) -> bool:
    """Whether `node` (not a Name) may bind `name` or reach the module's globals."""
    if isinstance(node, ast.Attribute):
        return node.attr in _DYNAMIC or (node.attr == name and not isinstance(node.ctx, ast.Load))
    if isinstance(node, ast.Global | ast.Nonlocal):
        return name in node.names
    if isinstance(node, ast.alias):
        return (node.asname or node.name) == name
    if isinstance(
        node,
        ast.FunctionDef
        | ast.AsyncFunctionDef
        | ast.ClassDef
        | ast.ExceptHandler
        | ast.MatchAs
        | ast.MatchStar,
    ):
        return node.name == name
    if isinstance(node, ast.MatchMapping):
        return node.rest == name
    return False


def _is_type_key(node: Any) -> bool:
    return isinstance(node, ast.Constant) and node.value == "type" and type(node.value) is str


def _is_harmless(node: ast.expr) -> bool:
    """A default argument that cannot have effects: a literal constant."""
    return isinstance(node, ast.Constant)


def _string(node: ast.expr) -> frozenset[str] | None:
    if isinstance(node, ast.Constant) and type(node.value) is str:
        return frozenset((node.value,))
    return None
