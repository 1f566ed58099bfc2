"""No module takes another unit's private names: an underscore name is its own package's
business. Read with `ast` over `engine/`: an import of `_name` from another unit, or
`module._name` on an engine module imported from another unit, fails. (Within a unit,
its modules share what they need.)"""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _violations(files: dict[str, str]) -> list[str]:
    problems = []
    for name, text in sorted(files.items()):
        own = _unit("engine." + name.removesuffix(".py").replace("/", "."))
        tree = ast.parse(text)
        modules: dict[str, str] = {}  # local name -> engine module of another unit
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("engine."):
                if node.level or _unit(node.module or "") == own:
                    continue
                for alias in node.names:
                    if _private(alias.name):
                        problems.append(f"{name}:{node.lineno}: {node.module}.{alias.name}")
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    foreign = alias.name.startswith("engine.") and _unit(alias.name) != own
                    if foreign and alias.asname:
                        modules[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
            ):
                problems.append(f"{name}:{node.lineno}: {modules[node.value.id]}.{node.attr}")
    return problems


def test_no_unit_reaches_into_another_units_private_names():
    files = {
        str(path.relative_to(ENGINE)): path.read_text(encoding="utf-8")
        for path in ENGINE.rglob("*.py")
    }
    assert _violations(files) == []


def test_the_check_sees_a_private_import_and_a_private_attribute():
    files = {
        "bench/harness.py": (
            "from engine.runs.forked import _plain\n"
            "from engine.state import sqlite\n"
            "sqlite._tables(None)\n"
            "from engine.bench.panther import _ok\n"
        ),
        "feedgen/writer.py": "from engine.feedgen.background import _Feed\n",
    }
    assert _violations(files) == [
        "bench/harness.py:1: engine.runs.forked._plain",
        "bench/harness.py:3: engine.state.sqlite._tables",
    ]
