"""The durable side of delivery: delivery records, dead letters, destination pauses and
silences, in the state database beside the `alerts` table the correlator writes.

The correlator commits each new alert (with `notify = 1`) in the same transaction as its
correlation state and the source checkpoint; that row is the outbox entry. Routing turns
it, exactly once (`delivery_routes` remembers it), into one `deliveries` row per
destination. A row moves `pending` → `sent` | `dead` | `silenced`; `detect alerts retry`
moves `dead` or `silenced` back to `pending`. Every change is its own short transaction,
committed before anything else happens, so a crash loses no record and never forgets that
a message was sent.

Digests (docs/delivery.md) live in the same table, so they get the same queue, leases,
retries and dead letters: an alert bound for a digest gets a delivery row in status
`digest` when it is routed; when its period closes the dispatcher seals the digest — one
row per message (purpose `digest`, `alert_id` holding the message key `dg_…`, the rendered
payload stored) and each member row pointing at its message through `digest_id`, in one
transaction. When a digest message is sent or dead-lettered, its members follow in the
same transaction as the message.

Times in these tables are wall-clock epoch seconds (delivery is about the present), while
the `alerts` table speaks event time.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Protocol

from engine.delivery.outbox_alerts import OutboxAlerts
from engine.state.files import create_private
from engine.state.schema import check_file, file_version, reraise, rollback
from engine.state.sqlite import AlertRows

PENDING, SENT, DEAD, SILENCED = "pending", "sent", "dead", "silenced"
# An alert waiting in a digest (its period is open, or its digest message is not sent).
DIGEST = "digest"
OPENED, CLOSED = "opened", "closed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivery_routes (
    alert_id TEXT PRIMARY KEY,
    routed_at REAL NOT NULL,
    window_end TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    purpose TEXT NOT NULL,
    status TEXT NOT NULL,
    queued_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at REAL,
    lease_until REAL,
    finished_at REAL,
    http_status INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    notice TEXT NOT NULL DEFAULT '',
    payload TEXT,
    event_count INTEGER,
    summary_due INTEGER NOT NULL DEFAULT 0,
    digest_id TEXT,
    UNIQUE (alert_id, destination, purpose)
);
CREATE INDEX IF NOT EXISTS deliveries_queue
    ON deliveries (destination, status, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (status, finished_at);
CREATE INDEX IF NOT EXISTS deliveries_summary ON deliveries (summary_due) WHERE summary_due = 1;
CREATE INDEX IF NOT EXISTS deliveries_open_digest ON deliveries (destination, queued_at)
    WHERE status = 'digest';
CREATE TABLE IF NOT EXISTS delivery_destinations (
    destination TEXT PRIMARY KEY,
    paused_until REAL NOT NULL DEFAULT 0,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS silences (
    silence_id TEXT PRIMARY KEY,
    rule_id TEXT,
    dedup_key TEXT,
    starts_at REAL NOT NULL,
    ends_at REAL NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    lifted_at REAL
);
"""

_DELIVERY_COLUMNS = (
    "delivery_id, alert_id, destination, purpose, status, queued_at, next_attempt_at, "
    "attempts, last_attempt_at, lease_until, finished_at, http_status, reason, notice, "
    "payload, event_count, digest_id"
)

# Members of digest messages that have been sent or dead-lettered take their message's
# outcome. Idempotent, and run in the transaction that settles the message.
_SETTLE_MEMBERS = (
    "UPDATE deliveries AS m SET status = p.status, finished_at = p.finished_at, "
    "http_status = p.http_status, lease_until = NULL, reason = CASE p.status WHEN 'sent' "
    "THEN 'sent in digest ' || p.alert_id ELSE 'digest ' || p.alert_id || ': ' || p.reason "
    "END FROM deliveries AS p WHERE m.status = 'digest' AND m.digest_id = p.alert_id "
    "AND m.destination = p.destination AND p.purpose = 'digest' AND p.status IN "
    "('sent', 'dead')"
)


# When a pending delivery gives up (parameters: limit, limit, grace): `limit` seconds after
# it was queued, or `grace` later when its final attempt is scheduled right at the limit,
# and never while an attempt holds its lease.
_EXPIRES_AT = (
    "MAX(COALESCE(lease_until, 0), queued_at + ? + CASE WHEN attempts > 0 AND "
    "next_attempt_at <= queued_at + ? THEN ? ELSE 0 END)"
)


@dataclass(frozen=True)
class Delivery:
    delivery_id: int
    alert_id: str
    destination: str
    purpose: str
    status: str
    queued_at: float
    next_attempt_at: float
    attempts: int
    last_attempt_at: float | None
    lease_until: float | None
    finished_at: float | None
    http_status: int | None
    reason: str
    notice: str
    payload: str | None
    event_count: int | None
    # For an alert in a digest: the key of the digest message that carries it.
    digest_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data.pop("payload")
        return data


@dataclass(frozen=True)
class Silence:
    silence_id: str
    rule_id: str | None
    dedup_key: str | None
    starts_at: float
    ends_at: float
    reason: str
    created_by: str
    created_at: float
    lifted_at: float | None

    @classmethod
    def new(
        cls,
        rule_id: str | None,
        dedup_key: str | None,
        starts_at: float,
        ends_at: float,
        reason: str,
        created_by: str,
        now: float,
    ) -> Silence:
        """A silence just made, with a fresh id: what either outbox then stores."""
        return cls(
            "sil_" + secrets.token_hex(6),
            rule_id,
            dedup_key,
            starts_at,
            ends_at,
            reason,
            created_by,
            now,
            None,
        )

    def active(self, now: float) -> bool:
        return self.lifted_at is None and self.starts_at <= now < self.ends_at

    def matches(self, rule_id: str, dedup_key: str) -> bool:
        if self.rule_id is not None and not fnmatchcase(rule_id, self.rule_id):
            return False
        return self.dedup_key is None or self.dedup_key == dedup_key

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class DestinationState:
    paused_until: float = 0.0
    consecutive_failures: int = 0
    reason: str = ""


@dataclass(frozen=True)
class PlannedDelivery:
    destination: str
    status: str
    reason: str = ""
    notice: str = ""


class OutboxStore(Protocol):
    """What the dispatcher, `detect alerts` and the test probe ask of an outbox, whichever
    backend holds it: `Outbox` here (SQLite, beside the state file's alerts) or
    `RedisOutbox` (engine/delivery/redis_outbox.py, shared by several workers). Both keep
    the semantics documented on `Outbox`; `open_outbox(config)` picks one."""

    def close(self) -> None: ...

    # the alerts the state store wrote
    def unrouted_alerts(self, limit: int = 500) -> list[dict[str, Any]]: ...
    def alert(self, alert_id: str) -> dict[str, Any] | None: ...
    def find_alert_ids(self, prefix: str) -> list[str]: ...
    def recent_alerts(self, limit: int, rule: str | None = None) -> list[dict[str, Any]]: ...
    def watermark(self) -> str | None: ...

    # routing and summaries
    def record_routes(
        self, routed: list[tuple[dict[str, Any], str, list[PlannedDelivery]]], now: float
    ) -> None: ...
    def route_note(self, alert_id: str) -> str | None: ...
    def summaries_due(self, watermark: str) -> list[tuple[Delivery, dict[str, Any]]]: ...
    def settle_summary(
        self,
        delivery_id: int,
        alert_id: str,
        destination: str,
        plan: PlannedDelivery | None,
        now: float,
    ) -> None: ...

    # the queue
    def next_due(self, destination: str, now: float) -> Delivery | None: ...
    def queue_times(
        self, destination: str, limit: float, grace: float
    ) -> tuple[float, float] | None: ...
    def claim(
        self, delivery_id: int, now: float, lease_until: float, payload: str, event_count: int
    ) -> Delivery | None: ...
    def finish(
        self,
        delivery_id: int,
        status: str,
        now: float,
        reason: str = "",
        http_status: int | None = None,
        summary_due: bool = False,
        *,
        lease: float | None,
    ) -> bool: ...
    def reschedule(
        self,
        delivery_id: int,
        next_attempt_at: float,
        reason: str,
        http_status: int | None,
        *,
        lease: float,
    ) -> bool: ...
    def expire(self, destination: str, limit: float, grace: float, now: float, why: str) -> int: ...
    def dead_letter_unconfigured(self, configured: set[str], now: float) -> int: ...

    # digests
    def open_digests(self) -> dict[str, float]: ...
    def digest_members(
        self, destination: str, routed_before: float
    ) -> list[tuple[Delivery, dict[str, Any] | None]]: ...
    def undigest(self, destination: str, now: float) -> int: ...
    def seal_digest(
        self,
        destination: str,
        messages: Sequence[tuple[str, str, Sequence[int]]],
        settled: Sequence[tuple[int, str, str]],
        now: float,
    ) -> bool: ...

    # destinations (their pause: the circuit state)
    def destination_state(self, destination: str) -> DestinationState: ...
    def set_destination_state(self, destination: str, state: DestinationState) -> None: ...

    # what `detect alerts` shows and changes
    def deliveries(self, alert_ids: Sequence[str]) -> dict[str, list[Delivery]]: ...
    def by_status(self, status: str | Sequence[str], limit: int) -> list[Delivery]: ...
    def counts(self) -> dict[str, int]: ...
    def requeue(
        self,
        now: float,
        alert_id: str | None = None,
        destination: str | None = None,
        statuses: Sequence[str] = (DEAD,),
    ) -> int: ...
    def add_silence(
        self,
        rule_id: str | None,
        dedup_key: str | None,
        starts_at: float,
        ends_at: float,
        reason: str,
        created_by: str,
        now: float,
    ) -> Silence: ...
    def silences(self, now: float, include_ended: bool = False) -> list[Silence]: ...
    def lift_silence(self, silence_id: str, now: float) -> bool: ...
    def silence_for(self, rule_id: str, dedup_key: str, now: float) -> Silence | None: ...


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(*row)


class Outbox(OutboxAlerts):
    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise FileNotFoundError(str(self.path))
        # An empty, overwritten or truncated file is refused before SQLite sees it; a new
        # one is created 0600 (its -wal and -shm get the same mode).
        check_file(self.path)
        if create and str(path) != ":memory:":
            create_private(self.path)
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            file_version(self._db, self.path)
            self._alerts = AlertRows(self._db)
            self._migrate()
            self._db.executescript(_SCHEMA)
        except sqlite3.Error:
            reraise(self.path)

    def _migrate(self) -> None:
        """Columns added after a state file may have been created: added in place, so an
        existing file opens and keeps every row. (The file's schema version is the state
        store's to raise, engine/state/schema.py; this check runs on every open, so the
        outbox's tables are right whichever of the two opens a file first.)"""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(deliveries)")}
        if columns and "digest_id" not in columns:
            self._db.execute("ALTER TABLE deliveries ADD COLUMN digest_id TEXT")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:  # noqa: BLE001 - raised again, translated
            # A full disk ends the transaction by itself: say so, not "cannot rollback".
            rollback(self._db)
            reraise(self.path)

    # -- the alerts the correlator wrote (the state store's tables, read through it) --

    def _routed(self, alert_ids: Sequence[str]) -> set[str]:
        """Which of these alerts routing has seen (one query)."""
        marks = ", ".join("?" * len(alert_ids))
        rows = self._db.execute(
            f"SELECT alert_id FROM delivery_routes WHERE alert_id IN ({marks})", list(alert_ids)
        )
        return {r[0] for r in rows.fetchall()}

    def _unrouted_ids(self, limit: int) -> list[str]:
        """The alerts owed a notification that routing has not seen, in commit order:
        the state store's ids a chunk at a time, each chunk matched against the routes
        in one query."""
        found: list[str] = []
        after = 0
        while len(found) < limit:
            chunk = self._alerts.notify_ids(after)
            if not chunk:
                break
            after = chunk[-1][0]
            ids = [alert_id for _, alert_id in chunk]
            routed = self._routed(ids)
            found.extend(alert_id for alert_id in ids if alert_id not in routed)
        return found[:limit]

    # -- routing ---------------------------------------------------------------------

    def record_routes(
        self,
        routed: list[tuple[dict[str, Any], str, list[PlannedDelivery]]],
        now: float,
    ) -> None:
        """For each (alert, note, planned deliveries): its route and its delivery rows,
        all in one transaction (a crash routes the batch again, never half of it)."""
        with self._tx() as db:
            for alert, note, planned in routed:
                db.execute(
                    "INSERT OR IGNORE INTO delivery_routes (alert_id, routed_at, window_end, "
                    "note) VALUES (?, ?, ?, ?)",
                    (alert["alert_id"], now, alert.get("_window_end") or "", note),
                )
                for plan in planned:
                    finished = None if plan.status in (PENDING, DIGEST) else now
                    db.execute(
                        "INSERT OR IGNORE INTO deliveries (alert_id, destination, purpose, "
                        "status, queued_at, next_attempt_at, finished_at, reason, notice) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            alert["alert_id"],
                            plan.destination,
                            OPENED,
                            plan.status,
                            now,
                            now,
                            finished,
                            plan.reason,
                            plan.notice,
                        ),
                    )

    def route_note(self, alert_id: str) -> str | None:
        row = self._db.execute(
            "SELECT note FROM delivery_routes WHERE alert_id = ?", (alert_id,)
        ).fetchone()
        return row[0] if row else None

    def summaries_due(self, watermark: str) -> list[tuple[Delivery, dict[str, Any]]]:
        """Sent notifications to summary destinations whose alert window has closed."""
        rows = self._db.execute(
            f"SELECT {', '.join('d.' + c.strip() for c in _DELIVERY_COLUMNS.split(','))} "
            "FROM deliveries d JOIN delivery_routes r ON r.alert_id = d.alert_id "
            "WHERE d.summary_due = 1 AND r.window_end != '' AND r.window_end <= ?",
            (watermark,),
        ).fetchall()
        due = [_delivery(row) for row in rows]
        bodies = self._alerts.bodies([d.alert_id for d in due])
        return [(d, bodies[d.alert_id]) for d in due if d.alert_id in bodies]

    def settle_summary(
        self,
        delivery_id: int,
        alert_id: str,
        destination: str,
        plan: PlannedDelivery | None,
        now: float,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE deliveries SET summary_due = 0 WHERE delivery_id = ?", (delivery_id,)
            )
            if plan is not None:
                db.execute(
                    "INSERT OR IGNORE INTO deliveries (alert_id, destination, purpose, status, "
                    "queued_at, next_attempt_at, finished_at, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        alert_id,
                        destination,
                        CLOSED,
                        plan.status,
                        now,
                        now,
                        None if plan.status == PENDING else now,
                        plan.reason,
                    ),
                )

    # -- the queue -------------------------------------------------------------------

    def pending_destinations(self) -> set[str]:
        rows = self._db.execute(
            "SELECT DISTINCT destination FROM deliveries WHERE status IN (?, ?)",
            (PENDING, DIGEST),
        )
        return {r[0] for r in rows.fetchall()}

    def next_due(self, destination: str, now: float) -> Delivery | None:
        """The oldest delivery for a destination that may be attempted now."""
        row = self._db.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE destination = ? AND status = ? "
            "AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?) "
            "ORDER BY delivery_id LIMIT 1",
            (destination, PENDING, now, now),
        ).fetchone()
        return _delivery(row) if row else None

    def queue_times(
        self, destination: str, limit: float, grace: float
    ) -> tuple[float, float] | None:
        """(earliest moment a pending delivery may be attempted, earliest moment one
        expires), for a destination whose deliveries live `limit` seconds."""
        row = self._db.execute(
            "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))), "
            f"MIN({_EXPIRES_AT}) FROM deliveries WHERE destination = ? AND status = ?",
            (limit, limit, grace, destination, PENDING),
        ).fetchone()
        if not row or row[0] is None:
            return None
        return float(row[0]), float(row[1])

    def claim(
        self, delivery_id: int, now: float, lease_until: float, payload: str, event_count: int
    ) -> Delivery | None:
        """Take a delivery for one attempt (a lease, so a second process or a restart
        does not send it concurrently); the payload is stored on the first attempt and
        reused by every later one. The returned row's `lease_until` is the claim's token:
        `finish` and `reschedule` record the attempt's outcome only under it."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE deliveries SET lease_until = ?, attempts = attempts + 1, "
                "last_attempt_at = ?, payload = COALESCE(payload, ?), "
                "event_count = COALESCE(event_count, ?) WHERE delivery_id = ? AND status = ? "
                "AND (lease_until IS NULL OR lease_until <= ?)",
                (lease_until, now, payload, event_count, delivery_id, PENDING, now),
            )
            if cursor.rowcount != 1:
                return None
            row = db.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE delivery_id = ?",
                (delivery_id,),
            ).fetchone()
        return _delivery(row)

    def finish(
        self,
        delivery_id: int,
        status: str,
        now: float,
        reason: str = "",
        http_status: int | None = None,
        summary_due: bool = False,
        *,
        lease: float | None,
    ) -> bool:
        """Settle a pending delivery. `lease` is the `lease_until` of the claim the
        attempt ran under: a dispatcher that stalled past it may find the delivery
        claimed again (or settled) by another, whose record must stand, so nothing
        changes and the answer is False. With `lease=None` (settled without an attempt:
        silenced, its alert gone) it applies only while no claim holds the row."""
        if lease is None:
            held = "(lease_until IS NULL OR lease_until <= ?)"
            params: tuple[Any, ...] = (delivery_id, PENDING, now)
        else:
            held, params = "lease_until = ?", (delivery_id, PENDING, lease)
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE deliveries SET status = ?, finished_at = ?, lease_until = NULL, "
                "reason = ?, http_status = ?, summary_due = ? WHERE delivery_id = ? "
                f"AND status = ? AND {held}",
                (status, now, reason, http_status, int(summary_due), *params),
            )
            if cursor.rowcount != 1:
                return False
            db.execute(_SETTLE_MEMBERS)
        return True

    def reschedule(
        self,
        delivery_id: int,
        next_attempt_at: float,
        reason: str,
        http_status: int | None,
        *,
        lease: float,
    ) -> bool:
        """Release a failed attempt's claim (`lease`: its `lease_until`) and set the next
        attempt; False, and nothing changed, when the delivery is no longer pending under
        that claim (a stale reschedule must not clear a newer holder's lease)."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE deliveries SET next_attempt_at = ?, lease_until = NULL, reason = ?, "
                "http_status = ? WHERE delivery_id = ? AND status = ? AND lease_until = ?",
                (next_attempt_at, reason, http_status, delivery_id, PENDING, lease),
            )
            return cursor.rowcount == 1

    def expire(self, destination: str, limit: float, grace: float, now: float, why: str) -> int:
        """Dead-letter what has waited `limit` seconds: never one an attempt holds, and a
        final attempt scheduled at the limit gets `grace` seconds to happen."""
        where = f"destination = ? AND status = ? AND {_EXPIRES_AT} <= ?"
        params = (destination, PENDING, limit, limit, grace, now)
        if self._db.execute(f"SELECT 1 FROM deliveries WHERE {where} LIMIT 1", params).fetchone():
            with self._tx() as db:
                cursor = db.execute(
                    "UPDATE deliveries SET status = ?, finished_at = ?, reason = ? || CASE "
                    "WHEN reason = '' THEN '' ELSE '; last error: ' || reason END "
                    f"WHERE {where}",
                    (DEAD, now, why, *params),
                )
                db.execute(_SETTLE_MEMBERS)
                return cursor.rowcount
        return 0

    def dead_letter_unconfigured(self, configured: set[str], now: float) -> int:
        stray = self.pending_destinations() - configured
        count = 0
        with self._tx() as db:
            for name in sorted(stray):
                cursor = db.execute(
                    "UPDATE deliveries SET status = ?, finished_at = ?, lease_until = NULL, "
                    "reason = ? WHERE destination = ? AND status IN (?, ?)",
                    (
                        DEAD,
                        now,
                        f"destination {name!r} is not in the configuration",
                        name,
                        PENDING,
                        DIGEST,
                    ),
                )
                count += cursor.rowcount
        return count

    # -- digests ---------------------------------------------------------------------

    def open_digests(self) -> dict[str, float]:
        """Destinations with alerts waiting for a digest not sealed yet, and the moment
        the oldest of them was routed (its period is the first to close)."""
        rows = self._db.execute(
            "SELECT destination, MIN(queued_at) FROM deliveries WHERE status = ? "
            "AND digest_id IS NULL GROUP BY destination",
            (DIGEST,),
        )
        return {name: float(first) for name, first in rows.fetchall()}

    def digest_members(
        self, destination: str, routed_before: float
    ) -> list[tuple[Delivery, dict[str, Any] | None]]:
        """The unsealed digest rows of a destination routed before a moment, oldest
        first, each with its alert (None when the alert is gone)."""
        rows = self._db.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE destination = ? AND status = ? "
            "AND digest_id IS NULL AND queued_at < ? ORDER BY delivery_id",
            (destination, DIGEST, routed_before),
        ).fetchall()
        members = [_delivery(row) for row in rows]
        bodies = self._alerts.bodies([m.alert_id for m in members])
        return [(m, bodies.get(m.alert_id)) for m in members]

    def undigest(self, destination: str, now: float) -> int:
        """Unsealed digest rows of a destination that no longer batches become ordinary
        pending deliveries."""
        with self._tx() as db:
            return db.execute(
                "UPDATE deliveries SET status = ?, queued_at = ?, next_attempt_at = ? "
                "WHERE destination = ? AND status = ? AND digest_id IS NULL",
                (PENDING, now, now, destination, DIGEST),
            ).rowcount

    def seal_digest(
        self,
        destination: str,
        messages: Sequence[tuple[str, str, Sequence[int]]],
        settled: Sequence[tuple[int, str, str]],
        now: float,
    ) -> bool:
        """In one transaction: each digest message (key, payload, member delivery ids) is
        queued with its rendered payload and its members point at it; `settled` members
        (delivery id, status, reason: silenced since, alert gone) leave the digest.
        False, and nothing written, when another process sealed any of them first (the
        write lock is held from the check to the commit, so no alert is listed twice)."""
        wanted = [m for _, _, members in messages for m in members] + [m for m, _, _ in settled]
        with self._tx() as db:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                free = db.execute(
                    f"SELECT COUNT(*) FROM deliveries WHERE delivery_id IN "
                    f"({','.join('?' * len(chunk))}) AND status = ? AND digest_id IS NULL",
                    [*chunk, DIGEST],
                ).fetchone()[0]
                if free != len(chunk):
                    return False
            for key, payload, members in messages:
                db.execute(
                    "INSERT INTO deliveries (alert_id, destination, purpose, status, "
                    "queued_at, next_attempt_at, payload, event_count) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, destination, DIGEST, PENDING, now, now, payload, len(members)),
                )
                db.executemany(
                    "UPDATE deliveries SET digest_id = ? WHERE delivery_id = ? AND status = ? "
                    "AND digest_id IS NULL",
                    [(key, member, DIGEST) for member in members],
                )
            db.executemany(
                "UPDATE deliveries SET status = ?, finished_at = ?, reason = ? "
                "WHERE delivery_id = ? AND status = ?",
                [(status, now, reason, member, DIGEST) for member, status, reason in settled],
            )
        return True

    # -- destinations ----------------------------------------------------------------

    def destination_state(self, destination: str) -> DestinationState:
        row = self._db.execute(
            "SELECT paused_until, consecutive_failures, reason FROM delivery_destinations "
            "WHERE destination = ?",
            (destination,),
        ).fetchone()
        return DestinationState(*row) if row else DestinationState()

    def set_destination_state(self, destination: str, state: DestinationState) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO delivery_destinations (destination, paused_until, "
                "consecutive_failures, reason) VALUES (?, ?, ?, ?) ON CONFLICT (destination) "
                "DO UPDATE SET paused_until = excluded.paused_until, "
                "consecutive_failures = excluded.consecutive_failures, reason = excluded.reason",
                (destination, state.paused_until, state.consecutive_failures, state.reason),
            )

    # -- what the CLI shows and changes ----------------------------------------------

    def deliveries(self, alert_ids: Sequence[str]) -> dict[str, list[Delivery]]:
        found: dict[str, list[Delivery]] = {a: [] for a in alert_ids}
        for start in range(0, len(alert_ids), 500):
            chunk = list(alert_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE alert_id IN ({marks}) "
                "ORDER BY delivery_id",
                chunk,
            ).fetchall()
            for row in rows:
                delivery = _delivery(row)
                found[delivery.alert_id].append(delivery)
        return found

    def by_status(self, status: str | Sequence[str], limit: int) -> list[Delivery]:
        wanted = [status] if isinstance(status, str) else list(status)
        rows = self._db.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE status IN "
            f"({','.join('?' * len(wanted))}) "
            "ORDER BY COALESCE(finished_at, queued_at) DESC, delivery_id DESC LIMIT ?",
            (*wanted, limit),
        ).fetchall()
        return [_delivery(r) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
        return dict(rows.fetchall())

    def requeue(
        self,
        now: float,
        alert_id: str | None = None,
        destination: str | None = None,
        statuses: Sequence[str] = (DEAD,),
    ) -> int:
        """Send dead (or silenced) deliveries again, with a fresh retry budget. The stored
        payload is dropped so the message is rendered anew from the alert — except a
        digest message's, which cannot be rendered again: it is sent again whole, and its
        members wait for it again. An alert of a digest whose message is not re-sent
        goes on its own."""
        marks = ",".join("?" * len(statuses))
        fresh = (
            "queued_at = ?, next_attempt_at = ?, attempts = 0, lease_until = NULL, "
            "finished_at = NULL, http_status = NULL, reason = 'requeued by detect alerts retry'"
        )
        where = f"status IN ({marks})"
        scope: list[Any] = []
        if destination is not None:
            where += " AND destination = ?"
            scope.append(destination)
        with self._tx() as db:
            count = 0
            if alert_id is None:
                count += db.execute(
                    f"UPDATE deliveries SET status = ?, {fresh} WHERE {where} AND purpose = ?",
                    [PENDING, now, now, *statuses, *scope, DIGEST],
                ).rowcount
                db.execute(
                    f"UPDATE deliveries AS m SET status = ?, {fresh} FROM deliveries AS p "
                    f"WHERE m.{where.replace(' AND destination', ' AND m.destination')} "
                    "AND m.digest_id = p.alert_id AND m.destination = p.destination "
                    "AND p.purpose = ? AND p.status = ?",
                    [DIGEST, now, now, *statuses, *scope, DIGEST, PENDING],
                )
            query = (
                f"UPDATE deliveries SET status = ?, {fresh}, payload = NULL, event_count = NULL, "
                f"digest_id = NULL WHERE {where} AND purpose != ?"
            )
            params: list[Any] = [PENDING, now, now, *statuses, *scope, DIGEST]
            if alert_id is not None:
                query += " AND alert_id = ?"
                params.append(alert_id)
            count += db.execute(query, params).rowcount
            return count

    # -- silences --------------------------------------------------------------------

    def add_silence(
        self,
        rule_id: str | None,
        dedup_key: str | None,
        starts_at: float,
        ends_at: float,
        reason: str,
        created_by: str,
        now: float,
    ) -> Silence:
        silence = Silence.new(rule_id, dedup_key, starts_at, ends_at, reason, created_by, now)
        with self._tx() as db:
            db.execute(
                "INSERT INTO silences (silence_id, rule_id, dedup_key, starts_at, ends_at, "
                "reason, created_by, created_at, lifted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                astuple(silence),
            )
        return silence

    def silences(self, now: float, include_ended: bool = False) -> list[Silence]:
        rows = self._db.execute(
            "SELECT silence_id, rule_id, dedup_key, starts_at, ends_at, reason, created_by, "
            "created_at, lifted_at FROM silences ORDER BY created_at DESC"
        ).fetchall()
        found = [Silence(*r) for r in rows]
        if include_ended:
            return found
        return [s for s in found if s.lifted_at is None and s.ends_at > now]

    def lift_silence(self, silence_id: str, now: float) -> bool:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE silences SET lifted_at = ? WHERE silence_id = ? AND lifted_at IS NULL",
                (now, silence_id),
            )
            return cursor.rowcount == 1

    def silence_for(self, rule_id: str, dedup_key: str, now: float) -> Silence | None:
        rows = self._db.execute(
            "SELECT silence_id, rule_id, dedup_key, starts_at, ends_at, reason, created_by, "
            "created_at, lifted_at FROM silences WHERE lifted_at IS NULL AND starts_at <= ? "
            "AND ends_at > ? ORDER BY created_at",
            (now, now),
        ).fetchall()
        for row in rows:
            silence = Silence(*row)
            if silence.matches(rule_id, dedup_key):
                return silence
        return None


def read_delivery_figures(path: Path) -> tuple[int, dict[str, int]]:
    """New alerts owed a notification that routing has not seen, and the deliveries by
    status, from a read-only connection (a live run may be writing); for `detect status`."""
    check_file(path)
    db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        alerts = AlertRows(db)
        owed = 0
        after = 0
        while chunk := alerts.notify_ids(after):
            after = chunk[-1][0]
            owed += len(chunk)
            if "delivery_routes" in tables:
                ids = [alert_id for _, alert_id in chunk]
                marks = ", ".join("?" * len(ids))
                owed -= db.execute(
                    f"SELECT COUNT(*) FROM delivery_routes WHERE alert_id IN ({marks})", ids
                ).fetchone()[0]
        deliveries: dict[str, int] = {}
        if "deliveries" in tables:
            deliveries = dict(
                db.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall()
            )
        return owed, deliveries
    finally:
        db.close()


def read_pending_by_destination(path: Path) -> dict[str, tuple[int, float]]:
    """{destination: (pending deliveries, when the oldest was queued)}, from a read-only
    connection that waits at most half a second for a lock: the metrics endpoint reads it
    on every scrape while the run writes (the file is in WAL mode, so readers and the
    writer do not wait for each other)."""
    db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=0.5)
    try:
        rows = db.execute(
            "SELECT destination, COUNT(*), MIN(queued_at) FROM deliveries WHERE status = ? "
            "GROUP BY destination",
            (PENDING,),
        ).fetchall()
        return {name: (int(count), float(first)) for name, count, first in rows}
    finally:
        db.close()
