"""The state database's schema version (`PRAGMA user_version`).

One SQLite file holds the tables of two owners: the state store (`state`, `alerts`,
`journal`, `meta`; engine/state/sqlite.py) and the outbox (the delivery tables;
engine/delivery/outbox.py). Each creates and migrates its own tables; the version is the
file's, so a file written by a newer `detect` is refused before either touches it.

Versions: 0, files written before the version was kept (upgraded in place); 1, the
schema the version was introduced with.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.errors import StateVersionError

SCHEMA_VERSION = 1

Migration = Callable[[sqlite3.Connection], None]


def file_version(db: sqlite3.Connection, path: str | Path) -> int:
    """The file's schema version; raises `StateVersionError` when it is newer than
    this code knows."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StateVersionError(
            f"{path} has state schema version {version}, newer than this detect knows"
            f" ({SCHEMA_VERSION}): upgrade detect, or point --state at another file"
        )
    return version


def migrate(db: sqlite3.Connection, path: str | Path, steps: Sequence[Migration]) -> None:
    """Bring the file to `SCHEMA_VERSION`: `steps[n]` takes it from version n to n + 1,
    in order, each step in its own transaction with the version it reaches."""
    if len(steps) != SCHEMA_VERSION:
        raise ValueError(f"{len(steps)} migration steps for schema version {SCHEMA_VERSION}")
    version = file_version(db, path)
    for target, step in enumerate(steps[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            db.execute(f"PRAGMA user_version = {target}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
