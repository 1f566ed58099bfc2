"""The SQLite state store: the embedded default (`.detect/state.db`).

Writes are buffered in memory and written in one transaction at `commit()`, which is both
the durability contract (alerts, state and checkpoint land together or not at all) and
what keeps a replay fast (one fsync per batch, not per activity). WAL mode lets
`detect status` and `detect alerts` read while a run writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic_core import to_json

_DELETED = object()
_MISSING = object()

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
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def _dumps(value: Any) -> str:
    # pydantic-core's encoder: several times json.dumps, and commits encode every value
    # a batch touched.
    return to_json(value, fallback=str).decode("utf-8")


class SqliteStore:
    def __init__(self, path: str | Path, cache_size: int = 100_000) -> None:
        self.cache_size = cache_size
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._pending: dict[tuple[str, str], tuple[Any, float | None]] = {}
        self._pending_alerts: dict[str, tuple[dict[str, Any], bool]] = {}
        self._pending_meta: dict[str, Any] = {}
        self._cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
        # Hashes of the keys the database may hold (this process is its only writer): most
        # lookups of a new user's state are for keys that were never written.
        self._present: set[int] = {
            hash(row) for row in self._db.execute("SELECT namespace, key FROM state")
        }

    def get(self, namespace: str, key: str) -> Any | None:
        pending = self._pending.get((namespace, key))
        if pending is not None:
            return None if pending[0] is _DELETED else pending[0]
        cached = self._cache.get((namespace, key), _MISSING)
        if cached is not _MISSING:
            self._cache.move_to_end((namespace, key))
            return cached
        if hash((namespace, key)) not in self._present:
            value = None  # never stored: no need to ask the database
        else:
            row = self._db.execute(
                "SELECT value FROM state WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
            value = json.loads(row[0]) if row else None
        self._remember(namespace, key, value)
        return value

    def _remember(self, namespace: str, key: str, value: Any) -> None:
        """Keep a committed value (None: known absent) in the read cache, LRU-bounded.
        This process is the database's only writer, so the cache cannot go stale."""
        cache = self._cache
        cache[(namespace, key)] = value
        cache.move_to_end((namespace, key))
        if len(cache) > self.cache_size:
            cache.popitem(last=False)

    def put(self, namespace: str, key: str, value: Any, expires: float | None = None) -> None:
        self._pending[(namespace, key)] = (value, expires)

    def delete(self, namespace: str, key: str) -> None:
        self._pending[(namespace, key)] = (_DELETED, None)

    def items(self, namespace: str) -> Iterator[tuple[str, Any]]:
        seen: set[str] = set()
        for (ns, key), (value, _) in list(self._pending.items()):
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
        cursor = self._db.execute(
            "DELETE FROM state WHERE expires IS NOT NULL AND expires < ?", (before,)
        )
        # Cached copies of purged rows may stay: every reader already treats an expired
        # value exactly as an absent one (that is what `expires` promises).
        return cursor.rowcount

    def commit(self) -> None:
        """Write every buffered change in one transaction."""
        if not (self._pending or self._pending_alerts or self._pending_meta):
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            upserts = []
            deletes = []
            for (ns, key), (value, expires) in self._pending.items():
                if value is _DELETED:
                    deletes.append((ns, key))
                else:
                    upserts.append((ns, key, _dumps(value), expires))
                    self._present.add(hash((ns, key)))
            db.executemany("DELETE FROM state WHERE namespace = ? AND key = ?", deletes)
            db.executemany(
                "INSERT INTO state (namespace, key, value, expires) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
                "expires = excluded.expires",
                upserts,
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
        except BaseException:
            db.execute("ROLLBACK")
            self._cache.clear()  # it may hold objects changed for this failed write
            raise
        for (ns, key), (value, _) in self._pending.items():
            self._remember(ns, key, None if value is _DELETED else value)
        self._pending.clear()
        self._pending_alerts.clear()
        self._pending_meta.clear()

    def close(self) -> None:
        self.commit()
        self._db.close()
