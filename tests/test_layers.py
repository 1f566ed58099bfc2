"""The layers of docs/architecture.md, held against the code's imports.

Every module and package directly under `engine/` sits in one layer; it may import its
own unit and the units of lower layers, never a unit of its own layer or of a higher one
(the command package, `engine.cli`, is the top: no other unit imports it). And no module
imports itself back through others, whether the import is at the top of a file or inside
a function. Imports are read with `ast`, so nothing is run; an import that only a type
checker sees (`if TYPE_CHECKING:`) counts for the layers but not for cycles, since it is
never executed.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"

# Lowest first; keep in step with the table in docs/architecture.md.
LAYERS: list[set[str]] = [
    {"__init__", "activity", "errors", "durations", "jsonl", "resources", "secrets", "yaml_lines"},
    {"alerts", "state"},
    {"detection"},
    {"correlation", "panther"},
    {"config", "rule_formats", "sources"},
    {"delivery", "pipeline", "tools"},
    {"runs", "catalog"},
    {"noise", "testing", "bench", "feedgen", "orgsim"},
    {"cli"},
    {"__main__"},
]


def _modules() -> dict[str, tuple[str, bool]]:
    """Each engine module's dotted name: its text, and whether it is a package."""
    found = {}
    for path in sorted(ENGINE.rglob("*.py")):
        parts = ["engine", *path.relative_to(ENGINE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = (path.read_text(encoding="utf-8"), path.name == "__init__.py")
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Ids of the import nodes under `if TYPE_CHECKING:`."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                hidden.update(id(n) for n in ast.walk(inner))
    return hidden


def _imports(
    modules: dict[str, tuple[str, bool]],
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Every import between engine modules, and those that run (not type-only)."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    every: dict[str, set[str]] = defaultdict(set)
    running: dict[str, set[str]] = defaultdict(set)
    for module, (text, is_package) in modules.items():
        tree = ast.parse(text)
        hidden = _type_checking_only(tree)
        package = module if is_package else module.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*kept, base] if base else kept)
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                if name == "engine" or name.startswith("engine."):
                    target = resolve(name)
                    if target and target != module:
                        every[module].add(target)
                        if id(node) not in hidden:
                            running[module].add(target)
    return every, running


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer_of() -> dict[str, int]:
    return {unit: level for level, units in enumerate(LAYERS) for unit in units}


def _upward(every: dict[str, set[str]]) -> list[str]:
    layer = _layer_of()
    return sorted(
        f"{source} -> {target}"
        for source, targets in every.items()
        for target in targets
        if _unit(source) != _unit(target)
        and layer.get(_unit(target), 0) >= layer.get(_unit(source), 0)
    )


def _cycles(running: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(running.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                cycles.append(sorted(members))

    for module in sorted(set(running) | {t for ts in running.values() for t in ts}):
        if module not in index:
            visit(module)
    return cycles


def test_every_unit_has_a_layer():
    layer = _layer_of()
    units = {_unit(m) for m in _modules()}
    assert sorted(units - set(layer)) == [], "add the new unit to LAYERS and the docs"
    assert sorted(set(layer) - units) == [], "a unit in LAYERS no longer exists"


def test_imports_only_go_down():
    every, _ = _imports(_modules())
    assert _upward(every) == []


def test_no_import_cycles():
    _, running = _imports(_modules())
    assert _cycles(running) == []


def test_the_checks_see_an_upward_import_and_a_cycle():
    """On a made-up tree: a pipeline module that imports the CLI inside a function, a
    delivery module that imports the pipeline only for the type checker, and a cycle
    through a relative import."""
    fake = {
        "engine.pipeline": ("def f():\n    from engine.cli import main\n", False),
        "engine.cli": ("", True),
        "engine.delivery": ("", True),
        "engine.delivery.outbox": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from engine.pipeline import Pipeline\n",
            False,
        ),
        "engine.sources": ("", True),
        "engine.sources.files": ("from engine.sources import reorder\n", False),
        "engine.sources.reorder": ("from .files import read\n", False),
    }
    every, running = _imports(fake)
    assert _upward(every) == [
        "engine.delivery.outbox -> engine.pipeline",
        "engine.pipeline -> engine.cli",
    ]
    assert _cycles(running) == [["engine.sources.files", "engine.sources.reorder"]]
