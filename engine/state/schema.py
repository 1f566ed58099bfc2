"""The state database's schema version (`PRAGMA user_version`).

One SQLite file holds the tables of two owners: the state store (`state`, `alerts`,
`journal`, `meta`; engine/state/sqlite.py) and the outbox (the delivery tables;
engine/delivery/outbox.py). Each creates and migrates its own tables; the version is the
file's, so a file written by a newer `detect` is refused before either touches it.

Versions: 0, files written before the version was kept (upgraded in place); 1, the
schema the version was introduced with.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from engine.errors import StateCorruptError, StateVersionError, StateWriteError

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
            db.execute("COMMIT")
        except BaseException:  # noqa: BLE001 - raised again, translated
            rollback(db)
            reraise(path)


# -- the file itself: damage, a full disk, the check and the rebuild (`detect state`) --

_MAGIC = b"SQLite format 3\x00"
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 11, 13, 26
_CORRUPT_WORDS = ("malformed", "not a database", "file is encrypted", "corrupt")


def way_out(path: str | Path) -> str:
    return (
        f"`detect state check --state {path}` says what is wrong; "
        f"`detect state rebuild --state {path}` keeps what can be read (the checkpoint, "
        "the alerts and the outbox) in a new file and the old one beside it"
    )


def check_file(path: str | Path) -> None:
    """Refuse, before SQLite opens it, a state file that cannot be a database: empty (a
    run would take it for a first one and notify every alert of the lookback again), not
    an SQLite file, or shorter than its own header says (truncated). A file that does
    not exist yet is fine (it is created). Raises `StateCorruptError`."""
    path = Path(path)
    if str(path) == ":memory:":
        return
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            header = file.read(100)
    except FileNotFoundError:
        return
    except OSError as error:
        raise StateWriteError(f"cannot read {path}: {error.strerror or error}") from None
    if size == 0:
        raise StateCorruptError(
            f"{path} is empty (0 bytes): its checkpoint and outbox are gone, and a run would "
            "start over from source.lookback and notify those alerts again; restore it from "
            f"a backup, or start afresh on purpose: `detect state rebuild --state {path}`"
        )
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise StateCorruptError(f"{path} is not an SQLite database (overwritten?): {way_out(path)}")
    page = int.from_bytes(header[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(header[28:32], "big")
    valid = pages > 0 and header[24:28] == header[92:96]
    if page < 512 or size % page or (valid and size < pages * page):
        raise StateCorruptError(
            f"{path} is truncated ({size} bytes, its header says {pages * page}): {way_out(path)}"
        )


def is_corrupt(error: BaseException) -> bool:
    if not isinstance(error, sqlite3.DatabaseError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    text = str(error).lower()
    return any(word in text for word in _CORRUPT_WORDS)


def is_disk_full(error: BaseException) -> bool:
    if not isinstance(error, sqlite3.Error):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == _SQLITE_FULL) or "disk is full" in str(error)


def translate(error: BaseException, path: str | Path) -> BaseException:
    """An SQLite error on the state file as the one-line error the command prints:
    damage as `StateCorruptError`, a full disk as `StateWriteError`; others unchanged."""
    if is_corrupt(error):
        return StateCorruptError(f"{path} is damaged ({error}): {way_out(path)}")
    if is_disk_full(error):
        return StateWriteError(
            f"cannot write {path}: the disk is full ({_free(Path(path))} free on its file "
            "system); nothing since the last commit was written, and a run resumes from its "
            "checkpoint once there is room"
        )
    return error


def _free(path: Path) -> str:
    import shutil

    try:
        free = shutil.disk_usage(path.parent if str(path.parent) else ".").free
    except OSError:
        return "unknown space"
    for unit in ("bytes", "KB", "MB", "GB"):
        if free < 1024 or unit == "GB":
            return f"{free:g} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1024
    return f"{free} bytes"


def rollback(db: sqlite3.Connection) -> None:
    """Roll back what is open, if anything: SQLite ends a transaction by itself on some
    errors (a full disk), and a ROLLBACK then fails with `cannot rollback - no
    transaction is active`, hiding the error that matters."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def reraise(path: str | Path) -> NoReturn:
    """In an `except` block: raise the error being handled again, translated (damage,
    a full disk) when `translate` knows it."""
    error = sys.exc_info()[1]
    assert error is not None
    translated = translate(error, path)
    if translated is error:
        raise error
    raise translated from error


def integrity(path: str | Path, limit: int = 10) -> list[str]:
    """What SQLite's `integrity_check` finds wrong with the file (nothing: an empty
    list), read-only. A file that cannot be opened at all gives its one problem."""
    try:
        check_file(path)
    except StateCorruptError as error:
        return [str(error)]
    db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        rows = [row[0] for row in db.execute(f"PRAGMA integrity_check({int(limit)})")]
    except sqlite3.DatabaseError as error:
        return [str(error)]
    finally:
        db.close()
    return [] if rows == ["ok"] else rows


def salvage(old: Path, new: sqlite3.Connection) -> tuple[dict[str, int], int]:
    """Copy every table of `old` that can be read, row by row, into the empty database
    `new`, with the tables' own definitions, rowids and the schema version; rows on
    unreadable pages are stepped over. Returns the rows copied per table and how many
    times reading failed (0: everything was read)."""
    copied: dict[str, int] = {}
    failures = 0
    new.execute("PRAGMA journal_mode=WAL")  # writes the header: never an empty file
    src = sqlite3.connect(str(old), isolation_level=None)
    try:
        try:
            tables = src.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
            ).fetchall()
            version = int(src.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError:
            return copied, 1
        new.execute("BEGIN")
        for kind, name, sql in tables:
            if kind != "table" or name.startswith("sqlite_"):
                continue
            new.execute(sql)
            copied[name], missed = _copy_rows(src, new, name)
            failures += missed
        for kind, name, sql in tables:
            if kind in ("index", "trigger", "view") and not name.startswith("sqlite_"):
                try:
                    new.execute(sql)
                except sqlite3.IntegrityError:
                    failures += 1  # a unique index the salvaged rows break: left out
        new.execute(f"PRAGMA user_version = {version}")
        new.execute("COMMIT")
    finally:
        src.close()
    return copied, failures


def _copy_rows(src: sqlite3.Connection, new: sqlite3.Connection, table: str) -> tuple[int, int]:
    quoted = '"' + table.replace('"', '""') + '"'
    try:
        columns = [row[1] for row in src.execute(f"PRAGMA table_info({quoted})")]
    except sqlite3.DatabaseError:
        return 0, 1
    names = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    marks = ", ".join("?" * (len(columns) + 1))
    insert = f"INSERT OR IGNORE INTO {quoted} (rowid, {names}) VALUES ({marks})"
    select = f"SELECT rowid, {names} FROM {quoted} WHERE rowid > ? ORDER BY rowid LIMIT ?"
    after, copied, failures, step, limit = 0, 0, 0, 1, 500
    while failures < 64:
        try:
            rows = src.execute(select, (after, limit)).fetchall()
        except sqlite3.DatabaseError:
            if limit > 1:
                limit = 1  # read up to the damaged page one row at a time
                continue
            # On it: step over rowids, further each time, until rows read again.
            failures += 1
            after += step
            step *= 4
            continue
        if not rows:
            break
        step, limit = 1, 500
        new.executemany(insert, rows)
        copied += len(rows)
        after = rows[-1][0]
    return copied, failures
