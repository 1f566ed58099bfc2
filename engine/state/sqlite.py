"""The SQLite state store: the embedded default (`.detect/state.db`).

Writes are buffered in memory and written in one transaction at `commit()`, which is both
the durability contract (alerts, state and checkpoint land together or not at all) and
what keeps a replay fast (one fsync per batch, not per activity). WAL mode lets
`detect status` and `detect alerts` read while a run writes.

State changes reach the `state` table in two steps. Each commit appends everything it
changed as encoded rows of the `journal` (2,000 changes a row): a commit touches hundreds
of keys (a threshold window per busy person), and upserting each into the table's B-tree
costs about ten times that append. Every `FOLD_EVERY` commits, when `MAX_UNFOLDED` keys
wait, before a purge and on close, the changes since the last fold go into the table, each
key once however often it changed, and the journal is emptied, in one transaction. A
caller with time on its hands (a replay whose evaluating process is behind) may have it
fold early (`idle`). Opening a store folds what an earlier process left in the journal,
so a crash between folds loses nothing committed. A fold writes the values as they are
in memory then: like every store, this one expects a value handed to `put` (or returned
by `get`) to change only before it is put again.

One process writes a state database at a time (the read cache and the key-presence set
rely on it); other processes only read the outbox.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from pydantic_core import to_json

from engine.errors import StateInUseError, StateWriteError
from engine.state.files import create_private, open_private, restrict
from engine.state.schema import check_file, file_version, migrate, reraise, rollback
from engine.state.store import ReadCache

log = logging.getLogger(__name__)
_DELETED = object()
_MISSING = object()
# Commits between folds of the journal into the state table (a journal of some 15 MB for
# a busy organization's 250 commits), and the most changed keys held for a fold before
# it is done early (memory).
FOLD_EVERY = 250
MAX_UNFOLDED = 20_000
JOURNAL_ROW = 2000  # changes per journal row
# Changed keys worth a fold when the store is idle, and about what a fold costs per key
# (see `idle`).
IDLE_FOLD = 1000
FOLD_SECONDS_PER_KEY = 10e-6
_UPSERT = (
    "INSERT INTO state (namespace, key, value, expires) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
    "expires = excluded.expires"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    expires REAL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS state_expires ON state (expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    body TEXT NOT NULL,
    notify INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    changes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def _create_tables(db: sqlite3.Connection) -> None:
    """0 -> 1: the tables as they were when the version began to be kept (a file of
    version 0 already has them, or some of them: each is created only when missing)."""
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


# In order: _MIGRATIONS[n] takes the file from schema version n to n + 1.
_MIGRATIONS = (_create_tables,)


def _journal_rows(
    changes: dict[tuple[str, str], tuple[Any, float | None]],
) -> Iterator[tuple[bytes]]:
    """The changes as journal rows of `JOURNAL_ROW` entries each, encoded one row at a
    time: a commit that saves thousands of held samples never holds all their text."""
    items = iter(changes.items())
    while chunk := list(itertools.islice(items, JOURNAL_ROW)):
        entries = [
            (ns, key, None, None, True) if value is _DELETED else (ns, key, value, expires, False)
            for (ns, key), (value, expires) in chunk
        ]
        yield (to_json(entries, fallback=str),)


def _dumps(value: Any) -> str:
    # pydantic-core's encoder: several times json.dumps, and commits encode every value
    # a batch touched.
    return to_json(value, fallback=str).decode("utf-8")


def _claim(path: Path) -> IO[str]:
    """Hold `path`'s lock file for as long as the store is open: the read cache, the
    key-presence set and the journal assume this process is the database's only writer,
    so a second `detect run` or `detect replay --state` on it must stop, not corrupt it.
    The operating system releases the lock when the process ends, however it ends."""
    lock = open_private(path.parent / f"{path.name}.lock", "a+", encoding="utf-8")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise StateInUseError(
            f"{path} is in use by {holder}: one detect process writes a state database "
            "at a time (stop it, or give this run its own --state)"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"process {os.getpid()}")
    lock.flush()
    return lock


class SqliteStore:
    def __init__(self, path: str | Path, cache_size: int = 100_000) -> None:
        self.cache_size = cache_size
        self.path = Path(path)
        self._lock: IO[str] | None = None
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _claim(self.path)
        try:
            self._open(str(path))
        except BaseException:
            if self._lock is not None:
                self._lock.close()
                self._lock = None
            raise

    def _open(self, path: str) -> None:
        """Connect, migrate and load what the store keeps in memory; a damaged file or a
        full disk is reported as such (engine/state/schema.py, `translate`)."""
        if path != ":memory:":
            # Refused before SQLite sees it: an empty file would pass for a first run.
            check_file(self.path)
            create_private(self.path)  # 0600; its -wal and -shm get the same mode
            for suffix in ("-wal", "-shm"):
                restrict(f"{path}{suffix}")
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            migrate(self._db, self.path, _MIGRATIONS)
            self._load()
        except sqlite3.Error:
            reraise(self.path)

    def _load(self) -> None:
        self._pending: dict[tuple[str, str], tuple[Any, float | None]] = {}
        # Committed to the journal, not yet folded into the table.
        self._unfolded: dict[tuple[str, str], tuple[Any, float | None]] = {}
        self._commits = 0
        self._pending_alerts: dict[str, tuple[dict[str, Any], bool]] = {}
        self._pending_meta: dict[str, Any] = {}
        # Every value read or written lately (None: known absent), written through by
        # `put`, so a read is one dict lookup. Bounded by dropping the oldest tenth when
        # full: cheaper per read than an LRU's reordering, and the store stays right
        # because what is dropped is still in `_pending`, `_unfolded` or the table.
        self._values = ReadCache(self.cache_size)
        # Hashes of the keys the database may hold (this process is its only writer): most
        # lookups of a new user's state are for keys that were never written.
        self._present: set[int] = {
            hash(row) for row in self._db.execute("SELECT namespace, key FROM state")
        }
        self._fold_leftovers()

    def get(self, namespace: str, key: str) -> Any | None:
        name = (namespace, key)
        value = self._values.get(name, _MISSING)
        if value is not _MISSING:
            return value
        entry = self._pending.get(name) or self._unfolded.get(name)
        if entry is not None:
            value = None if entry[0] is _DELETED else entry[0]
        elif hash(name) not in self._present:
            value = None  # never stored: no need to ask the database
        else:
            row = self._db.execute(
                "SELECT value FROM state WHERE namespace = ? AND key = ?", name
            ).fetchone()
            value = json.loads(row[0]) if row else None
        self._values.keep(name, value)
        return value

    def put(self, namespace: str, key: str, value: Any, expires: float | None = None) -> None:
        name = (namespace, key)
        self._pending[name] = (value, expires)
        self._values.keep(name, value)

    def delete(self, namespace: str, key: str) -> None:
        name = (namespace, key)
        self._pending[name] = (_DELETED, None)
        self._values.keep(name, None)

    def items(self, namespace: str) -> Iterator[tuple[str, Any]]:
        seen: set[str] = set()
        recent = {**self._unfolded, **self._pending}
        for (ns, key), (value, _) in recent.items():
            if ns == namespace:
                seen.add(key)
                if value is not _DELETED:
                    yield key, value
        rows = self._db.execute(
            "SELECT key, value FROM state WHERE namespace = ?", (namespace,)
        ).fetchall()
        for key, text in rows:
            if key not in seen:
                yield key, json.loads(text)

    def save_alert(self, alert: dict[str, Any], notify: bool) -> None:
        previous = self._pending_alerts.get(alert["alert_id"])
        self._pending_alerts[alert["alert_id"]] = (alert, notify or bool(previous and previous[1]))

    def alerts(self) -> Iterator[dict[str, Any]]:
        self.commit()
        rows = self._db.execute("SELECT body, notify FROM alerts ORDER BY opened_at, alert_id")
        for body, notify in rows.fetchall():
            yield {**json.loads(body), "_notify": bool(notify)}

    def get_meta(self, key: str) -> Any | None:
        if key in self._pending_meta:
            return self._pending_meta[key]
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        self._pending_meta[key] = value

    def purge(self, before: float) -> int:
        self.commit()
        self.fold()
        cursor = self._db.execute(
            "DELETE FROM state WHERE expires IS NOT NULL AND expires < ?", (before,)
        )
        # Cached copies of purged rows may stay: every reader already treats an expired
        # value exactly as an absent one (that is what `expires` promises).
        return cursor.rowcount

    def commit(self) -> None:
        """Write every buffered change in one transaction (state changes as one journal
        row; a fold every `FOLD_EVERY` commits)."""
        if not (self._pending or self._pending_alerts or self._pending_meta):
            return
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            if self._pending:
                db.executemany(
                    "INSERT INTO journal (changes) VALUES (?)", _journal_rows(self._pending)
                )
            db.executemany(
                "INSERT INTO alerts (alert_id, rule_id, kind, severity, opened_at, body, notify)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id) DO UPDATE SET "
                "body = excluded.body, notify = MAX(alerts.notify, excluded.notify)",
                [
                    (
                        alert_id,
                        body["rule_id"],
                        body["kind"],
                        body["severity"],
                        body.get("first_event_at") or "",
                        _dumps(body),
                        int(notify),
                    )
                    for alert_id, (body, notify) in self._pending_alerts.items()
                ],
            )
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [(k, _dumps(v)) for k, v in self._pending_meta.items()],
            )
            db.execute("COMMIT")
        except BaseException:  # noqa: BLE001 - raised again, translated
            rollback(db)
            reraise(self.path)
        self._unfolded.update(self._pending)
        self._pending.clear()
        self._pending_alerts.clear()
        self._pending_meta.clear()
        self._commits += 1
        if self._commits % FOLD_EVERY == 0 or len(self._unfolded) > MAX_UNFOLDED:
            try:
                self.fold()
            except (sqlite3.Error, StateWriteError) as error:
                # The commit stands (its changes are in the journal); a later commit folds.
                log.warning("state store: folding the journal failed, will retry: %s", error)

    def after_fork(self) -> None:
        """In a forked child: close its copy of the lock file, so the lock is released
        when the parent ends even if the child outlives it. The database is not touched:
        the connection belongs to the parent."""
        if self._lock is not None:
            os.close(self._lock.fileno())

    def idle(self, budget: float) -> float:
        """Fold the journal early, when the caller has had the time for it (a replay
        whose evaluating process is behind), so the fold on close, or every `FOLD_EVERY`
        commits, finds little left. Only right after a commit: a value put since may
        already hold changes that are not committed."""
        if self._pending or self._pending_alerts or self._pending_meta:
            return 0.0
        waiting = len(self._unfolded)
        if waiting < IDLE_FOLD or waiting * FOLD_SECONDS_PER_KEY > budget:
            return 0.0
        started = time.perf_counter()
        try:
            self.fold()
        except (sqlite3.Error, StateWriteError) as error:  # as after a commit
            log.warning("state store: folding the journal failed, will retry: %s", error)
        return time.perf_counter() - started

    def fold(self) -> None:
        """Move the committed changes from the journal into the state table, each key once."""
        if not self._unfolded:
            return
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            self._write_state(self._unfolded)
            db.execute("DELETE FROM journal")
            db.execute("COMMIT")
        except BaseException:  # noqa: BLE001 - raised again, translated
            rollback(db)
            reraise(self.path)
        self._unfolded.clear()

    def _write_state(self, changes: dict[tuple[str, str], tuple[Any, float | None]]) -> None:
        present = self._present

        def upserts() -> Iterator[tuple[str, str, str, float | None]]:
            # Encoded one at a time as SQLite asks: a fold of tens of thousands of keys
            # never holds all their text at once.
            for (ns, key), (value, expires) in changes.items():
                if value is not _DELETED:
                    present.add(hash((ns, key)))
                    yield ns, key, _dumps(value), expires

        deletes = [name for name, (value, _) in changes.items() if value is _DELETED]
        self._db.executemany("DELETE FROM state WHERE namespace = ? AND key = ?", deletes)
        self._db.executemany(_UPSERT, upserts())

    def _fold_leftovers(self) -> None:
        """Fold what a previous process committed to the journal but did not fold, in one
        transaction: the rows read are the rows deleted."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute("SELECT seq, changes FROM journal ORDER BY seq").fetchall()
            if rows:
                changes: dict[tuple[str, str], tuple[Any, float | None]] = {}
                for _, blob in rows:
                    for ns, key, value, expires, deleted in json.loads(blob):
                        changes[(ns, key)] = (_DELETED if deleted else value, expires)
                self._write_state(changes)
                db.execute("DELETE FROM journal WHERE seq <= ?", (rows[-1][0],))
            db.execute("COMMIT")
        except BaseException:  # noqa: BLE001 - raised again, translated
            rollback(db)
            reraise(self.path)

    def close(self) -> None:
        try:
            self.commit()
            self.fold()
            self._db.close()
        finally:
            if self._lock is not None:
                self._lock.close()  # releases the claim
                self._lock = None


def _read_only(path: Path) -> sqlite3.Connection:
    check_file(path)
    return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)


def _tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


class AlertRows:
    """The `alerts` and `meta` tables read over another owner's connection to the same
    file: the outbox's (routing, summaries, digests, `detect alerts`), `detect status`'s.
    Only reads; what they hold is written by `SqliteStore.commit`. Before the state store
    has created its tables, every read finds nothing."""

    # Alert ids per query when a caller matches them against its own tables.
    CHUNK = 2000

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def present(self) -> bool:
        return "alerts" in _tables(self._db)

    def notify_ids(self, after: int = 0, limit: int = CHUNK) -> list[tuple[int, str]]:
        """(position, alert id) of the alerts owed a notification, in commit order,
        after position `after` (0: from the first); at most `limit`."""
        if not self.present():
            return []
        return self._db.execute(
            "SELECT rowid, alert_id FROM alerts WHERE notify = 1 AND rowid > ? "
            "ORDER BY rowid LIMIT ?",
            (after, limit),
        ).fetchall()

    def bodies(self, alert_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The alerts of these ids that exist, by id (queried `CHUNK` ids at a time)."""
        found: dict[str, dict[str, Any]] = {}
        if not alert_ids or not self.present():
            return found
        unique = list(dict.fromkeys(alert_ids))
        for start in range(0, len(unique), self.CHUNK):
            chunk = unique[start : start + self.CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT alert_id, body FROM alerts WHERE alert_id IN ({marks})", chunk
            )
            for alert_id, body in rows.fetchall():
                found[alert_id] = json.loads(body)
        return found

    def body(self, alert_id: str) -> dict[str, Any] | None:
        if not self.present():
            return None
        row = self._db.execute("SELECT body FROM alerts WHERE alert_id = ?", (alert_id,))
        found = row.fetchone()
        return json.loads(found[0]) if found else None

    def ids_starting(self, prefix: str, limit: int = 5) -> list[str]:
        """The ids that begin with `prefix` (taken literally), at most `limit`."""
        if not self.present():
            return []
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._db.execute(
            "SELECT alert_id FROM alerts WHERE alert_id LIKE ? ESCAPE '\\' LIMIT ?",
            (escaped + "%", limit),
        )
        return [r[0] for r in rows.fetchall()]

    def recent(self, limit: int, rule: str | None = None) -> list[dict[str, Any]]:
        """The latest alerts by opening time (of one rule, with `rule`)."""
        if not self.present():
            return []
        query = "SELECT body FROM alerts"
        params: list[Any] = []
        if rule:
            query += " WHERE rule_id = ?"
            params.append(rule)
        query += " ORDER BY opened_at DESC, rowid DESC LIMIT ?"
        params.append(limit)
        return [json.loads(b) for (b,) in self._db.execute(query, params).fetchall()]

    def meta(self, key: str) -> Any | None:
        """A `meta` entry (`watermark`: event time the pipeline has reached)."""
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return json.loads(row[0]) if row else None


def read_summary(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The `meta` entries and the number of alerts of each kind, from a read-only
    connection (a live run may be writing); for `detect status`."""
    db = _read_only(path)
    try:
        file_version(db, path)
        tables = _tables(db)
        meta: dict[str, Any] = {}
        if "meta" in tables:
            for key, value in db.execute("SELECT key, value FROM meta"):
                try:
                    meta[key] = json.loads(value)
                except ValueError:
                    meta[key] = value
        kinds: dict[str, int] = {}
        if "alerts" in tables:
            kinds = dict(db.execute("SELECT kind, COUNT(*) FROM alerts GROUP BY kind").fetchall())
        return meta, kinds
    finally:
        db.close()


def read_state_rows(path: Path) -> int:
    """How many keys the `state` table holds (after a fold); for `detect bench`."""
    db = _read_only(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM state").fetchone()[0])
    finally:
        db.close()
