"""SQL lives only in the module that creates its tables (docs/architecture.md, "The
state file"): the state store's tables in `engine/state/sqlite.py`, the outbox's in
`engine/delivery/outbox.py`, the file's schema version in `engine/state/schema.py`.
Every other module asks their owners. Read from the string literals of the code with
`ast` (f-strings included, docstrings left out), so a query cannot slip in unnoticed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"

OWNERS = {
    "state": "state/sqlite.py",
    "alerts": "state/sqlite.py",
    "journal": "state/sqlite.py",
    "meta": "state/sqlite.py",
    "delivery_routes": "delivery/outbox.py",
    "deliveries": "delivery/outbox.py",
    "delivery_destinations": "delivery/outbox.py",
    "silences": "delivery/outbox.py",
}
# SQLite's own catalogue and pragmas: for every owner to read.
SHARED = {"sqlite_master"}
SQL_MODULES = {"state/sqlite.py", "state/schema.py", "delivery/outbox.py"}

STATEMENT = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|REPLACE INTO)\b")
TABLE = re.compile(
    r"\b(?:FROM|INTO|UPDATE(?! SET)|JOIN|TABLE(?: IF NOT EXISTS)?|INDEX(?: IF NOT EXISTS)? \w+ ON)"
    r"\s+(\w+)"
)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _literals(text: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal but docstrings; an f-string's pieces joined."""
    tree = ast.parse(text)
    skip = _docstrings(tree)
    inside_fstrings = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                inside_fstrings.add(id(value))
                parts.append(value.value if isinstance(value, ast.Constant) else "{}")
            found.append((node.lineno, "".join(str(p) for p in parts)))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in skip
            and id(node) not in inside_fstrings
        ):
            found.append((node.lineno, node.value))
    return found


def _violations(files: dict[str, str]) -> list[str]:
    problems = []
    for name, text in sorted(files.items()):
        for line, literal in _literals(text):
            if not STATEMENT.search(literal):
                continue
            if name not in SQL_MODULES:
                problems.append(f"{name}:{line}: SQL outside the owners: {literal[:60]!r}")
                continue
            for table in TABLE.findall(literal):
                owner = OWNERS.get(table)
                if table in SHARED or owner == name:
                    continue
                problems.append(f"{name}:{line}: table {table!r} belongs to {owner}")
    return problems


def test_sql_only_in_the_modules_that_own_the_tables():
    files = {
        str(path.relative_to(ENGINE)): path.read_text(encoding="utf-8")
        for path in ENGINE.rglob("*.py")
    }
    assert _violations(files) == []


def test_the_check_sees_a_stray_query_and_a_borrowed_table():
    files = {
        "bench.py": 'def f(db):\n    return db.execute("SELECT COUNT(*) FROM state")\n',
        "delivery/outbox.py": (
            "def g(db, t):\n"
            '    """SELECT in a docstring is prose."""\n'
            '    db.execute(f"SELECT body FROM {t} JOIN alerts a ON a.alert_id = d.alert_id")\n'
            "    db.execute(\"SELECT 1 FROM sqlite_master WHERE name = 'deliveries'\")\n"
        ),
        "state/sqlite.py": 'Q = "SELECT body FROM alerts WHERE notify = 1"\n',
    }
    assert _violations(files) == [
        "bench.py:2: SQL outside the owners: 'SELECT COUNT(*) FROM state'",
        "delivery/outbox.py:3: table 'alerts' belongs to state/sqlite.py",
    ]
