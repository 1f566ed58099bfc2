"""`detect state check` and `detect state rebuild`: what is wrong with a state file, and
a new one with everything that can still be read from it.

A rebuild holds the file's lock (no run may be writing it), moves the file and its WAL
and -shm files aside as `<state>.corrupt-<time>` (kept: nothing is deleted), reads a copy
of them table by table, row by row, stepping over unreadable pages
(`engine/state/schema.py`, `salvage`), and writes what it read into a new 0600 file at
the old path. The checkpoint (`meta`), the alerts and the outbox's tables come back
where they can be read; an empty or unreadable file gives a new empty database, and the
next run starts from `source.lookback`.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.state.files import create_private, restrict
from engine.state.schema import integrity, salvage
from engine.state.sqlite import _claim

SUFFIXES = ("", "-wal", "-shm")


@dataclass
class Rebuilt:
    path: Path
    kept: Path
    rows: dict[str, int] = field(default_factory=dict)
    unreadable: int = 0

    def summary(self) -> str:
        tables = ", ".join(f"{n} {c}" for n, c in self.rows.items()) or "nothing readable"
        loss = f"; {self.unreadable} unreadable stretch(es) stepped over" if self.unreadable else ""
        return f"rebuilt {self.path} ({tables}{loss}); the old file is kept as {self.kept}"


def check(path: Path) -> list[str]:
    """The problems of the file, [] when SQLite finds it sound."""
    return integrity(path)


def rebuild(path: Path, now: float | None = None) -> Rebuilt:
    path = Path(path)
    lock = _claim(path)  # raises StateInUseError while a run holds it
    try:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        kept = path.with_name(f"{path.name}.corrupt-{stamp}")
        with tempfile.TemporaryDirectory(prefix="detect-rebuild-") as scratch:
            copy = Path(scratch) / "old.db"
            for suffix in SUFFIXES:
                source = Path(f"{path}{suffix}")
                if source.exists():
                    shutil.copyfile(source, f"{copy}{suffix}")
            fresh = path.with_name(f"{path.name}.rebuilding")
            fresh.unlink(missing_ok=True)
            create_private(fresh)
            db = sqlite3.connect(str(fresh), isolation_level=None)
            try:
                rows, unreadable = salvage(copy, db) if copy.exists() else ({}, 0)
            finally:
                db.close()
        for suffix in SUFFIXES:
            source = Path(f"{path}{suffix}")
            if source.exists():
                os.replace(source, f"{kept}{suffix}")
                restrict(f"{kept}{suffix}")
        os.replace(fresh, path)
        return Rebuilt(path, kept, rows, unreadable)
    finally:
        lock.close()
