"""The outbox on Redis: what `Outbox` keeps in the SQLite file, shared by every worker.

With `state.backend: redis` several `detect run` workers commit alerts to one Redis
(`RedisStore`, under `{prefix}alert:…` and `{prefix}alerts:notify`), and each runs a
dispatcher over this outbox: any of them may route a new alert or send a due delivery,
and exactly one does. The semantics are the SQLite outbox's, method for method (the
`OutboxStore` protocol; tests/delivery/test_redis_outbox.py runs the same checks on
both): deliveries move `pending` → `sent` | `dead` | `silenced`, digests seal and settle
their members, silences and destination pauses are shared.

Every change is one Lua script (engine/delivery/redis_scripts.py), applied whole:
- `claim` takes a pending delivery whose lease has passed and sets a new lease, in one
  step, so of several dispatchers racing for one delivery exactly one gets it; a
  dispatcher that dies holding a claim leaves a lease that expires, and another retries
  the delivery after it (the at-least-once case the dispatcher documents); `finish` and
  `reschedule` apply only while the row is still pending under the claim (the lease) the
  attempt ran under, so a stalled dispatcher cannot overwrite a newer attempt;
- routing a batch, sealing a digest (checked free, then written), settling a digest's
  members with their message, and `requeue` each apply all their rows or none.
Reads that span several keys (lists for `detect alerts`, figures for `detect status`) are
not snapshots: a row may move between two of them, as it may between two SQLite queries.

The alerts themselves are the state store's: read through `RedisAlertRows`, which lists
the alerts owed a notification in commit order.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from engine.delivery.outbox import (
    DIGEST,
    PENDING,
    Delivery,
    DestinationState,
    PlannedDelivery,
    Silence,
)
from engine.delivery.outbox_alerts import AlertReader, OutboxAlerts
from engine.delivery.redis_scripts import SCRIPTS


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _time(moment: float) -> str:
    """A time as stored: the float's repr, so it reads back the same float."""
    return repr(float(moment))


def _optional(value: int | None) -> str:
    return "" if value is None else str(int(value))


def _float(row: Mapping[str, str], name: str) -> float | None:
    value = row.get(name)
    return None if value is None else float(value)


def _int(row: Mapping[str, str], name: str) -> int | None:
    value = row.get(name)
    return None if value is None else int(value)


def _row(data: Mapping[Any, Any] | Sequence[Any]) -> dict[str, str]:
    """A delivery's hash, from HGETALL (a mapping) or a script (a flat list)."""
    if isinstance(data, Mapping):
        return {_text(k): _text(v) for k, v in data.items()}
    items = [_text(v) for v in data]
    return dict(zip(items[0::2], items[1::2], strict=True))


def _delivery(row: Mapping[str, str]) -> Delivery:
    return Delivery(
        delivery_id=int(row["delivery_id"]),
        alert_id=row["alert_id"],
        destination=row["destination"],
        purpose=row["purpose"],
        status=row["status"],
        queued_at=float(row["queued_at"]),
        next_attempt_at=float(row["next_attempt_at"]),
        attempts=int(row["attempts"]),
        last_attempt_at=_float(row, "last_attempt_at"),
        lease_until=_float(row, "lease_until"),
        finished_at=_float(row, "finished_at"),
        http_status=_int(row, "http_status"),
        reason=row.get("reason", ""),
        notice=row.get("notice", ""),
        payload=row.get("payload"),
        event_count=_int(row, "event_count"),
        digest_id=row.get("digest_id"),
    )


class RedisOutbox(OutboxAlerts):
    """The outbox under `{prefix}outbox:` of a Redis the workers share.

    `client` is a `redis.Redis` (`open_redis(settings)` builds one from the
    configuration); it is closed by `close()` only when `owns_client`. `alerts` reads the
    state store's alerts (default: `RedisAlertRows(client, prefix)`)."""

    # Alert ids per round trip when matching the state store's list against the routes.
    CHUNK = 2000

    def __init__(
        self,
        client: Any,
        prefix: str = "detect:",
        *,
        alerts: AlertReader | None = None,
        owns_client: bool = False,
    ) -> None:
        self._redis = client
        self._owns_client = owns_client
        self.prefix = prefix
        self._p = prefix + "outbox:"
        if alerts is None:
            from engine.state.redis_alerts import RedisAlertRows

            alerts = RedisAlertRows(client, prefix)
        self._alerts = alerts
        self._scripts = {name: client.register_script(code) for name, code in SCRIPTS.items()}

    def _run(self, name: str, *args: Any) -> Any:
        return self._scripts[name](args=[self._p, *args])

    def close(self) -> None:
        if self._owns_client:
            self._redis.close()

    def _rows(self, ids: Iterable[Any]) -> list[Delivery]:
        """The deliveries of these ids that exist, in the order given (one round trip)."""
        wanted = [_text(i) for i in ids]
        if not wanted:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for delivery_id in wanted:
            pipe.hgetall(f"{self._p}d:{delivery_id}")
        return [_delivery(_row(data)) for data in pipe.execute() if data]

    # -- the alerts the correlator wrote (the state store's keys, read through it) ----

    def _unrouted_ids(self, limit: int, advance: bool = True) -> list[str]:
        """The alerts owed a notification that routing has not seen, in commit order, at
        most `limit`. The scan starts after `routed_through`, the position up to which
        every alert is routed: positions become visible in order (each is taken in the
        commit that makes its alert visible, the contract of `{prefix}alerts:seq`) and
        a route is never removed, so what lies before it never needs reading again.
        Without `advance` nothing is written (`detect status` only reads)."""
        found: list[str] = []
        start = after = int(self._redis.get(f"{self._p}routed_through") or 0)
        through = start
        while len(found) < limit:
            chunk = self._alerts.notify_ids(after, self.CHUNK)
            if not chunk:
                break
            after = chunk[-1][0]
            routes = self._redis.hmget(f"{self._p}routes", [a for _, a in chunk])
            for (position, alert_id), route in zip(chunk, routes, strict=True):
                if route is None:
                    found.append(alert_id)
                elif not found:
                    through = position
        if advance and through > start:
            self._run("routed_through", through)
        return found[:limit]

    # -- routing ---------------------------------------------------------------------

    def record_routes(
        self,
        routed: list[tuple[dict[str, Any], str, list[PlannedDelivery]]],
        now: float,
    ) -> None:
        """For each (alert, note, planned deliveries): its route and its delivery rows,
        in one script (two dispatchers routing the same alert make its rows once)."""
        if not routed:
            return
        batch = [
            [
                alert["alert_id"],
                json.dumps([now, alert.get("_window_end") or "", note], ensure_ascii=False),
                [[p.destination, p.status, p.reason, p.notice] for p in planned],
            ]
            for alert, note, planned in routed
        ]
        self._run("record_routes", _time(now), json.dumps(batch, ensure_ascii=False))

    def _route(self, alert_id: str) -> list[Any] | None:
        found = self._redis.hget(f"{self._p}routes", alert_id)
        return None if found is None else json.loads(found)

    def route_note(self, alert_id: str) -> str | None:
        route = self._route(alert_id)
        return None if route is None else str(route[2])

    def summaries_due(self, watermark: str) -> list[tuple[Delivery, dict[str, Any]]]:
        """Sent notifications to summary destinations whose alert window has closed."""
        ids = sorted(int(_text(i)) for i in self._redis.smembers(f"{self._p}summary"))
        due = self._rows(ids)
        if not due:
            return []
        routes = self._redis.hmget(f"{self._p}routes", [d.alert_id for d in due])
        closed = []
        for delivery, route in zip(due, routes, strict=True):
            window_end = json.loads(route)[1] if route is not None else ""
            if window_end and window_end <= watermark:
                closed.append(delivery)
        bodies = self._alerts.bodies([d.alert_id for d in closed])
        return [(d, bodies[d.alert_id]) for d in closed if d.alert_id in bodies]

    def settle_summary(
        self,
        delivery_id: int,
        alert_id: str,
        destination: str,
        plan: PlannedDelivery | None,
        now: float,
    ) -> None:
        status, reason = ("", "") if plan is None else (plan.status, plan.reason)
        self._run("settle_summary", delivery_id, alert_id, destination, _time(now), status, reason)

    # -- the queue -------------------------------------------------------------------

    def _destinations(self) -> list[str]:
        return sorted(_text(d) for d in self._redis.smembers(f"{self._p}dests"))

    def pending_destinations(self) -> set[str]:
        names = self._destinations()
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.zcard(f"{self._p}sd:{PENDING}:{name}")
            pipe.zcard(f"{self._p}sd:{DIGEST}:{name}")
        sizes = pipe.execute()
        return {n for i, n in enumerate(names) if sizes[2 * i] or sizes[2 * i + 1]}

    def next_due(self, destination: str, now: float) -> Delivery | None:
        """The oldest delivery for a destination that may be attempted now."""
        found = self._run("next_due", destination, _time(now))
        return None if found is None else _delivery(_row(found))

    def queue_times(
        self, destination: str, limit: float, grace: float
    ) -> tuple[float, float] | None:
        """(earliest moment a pending delivery may be attempted, earliest moment one
        expires), for a destination whose deliveries live `limit` seconds."""
        found = self._run("queue_times", destination, _time(limit), _time(grace))
        if found is None:
            return None
        return float(_text(found[0])), float(_text(found[1]))

    def claim(
        self, delivery_id: int, now: float, lease_until: float, payload: str, event_count: int
    ) -> Delivery | None:
        """Take a pending delivery whose lease (if any) has passed, for one attempt,
        under a lease until `lease_until`: one script, so exactly one of several racing
        dispatchers gets it. The payload is stored on the first attempt and reused. The
        returned row's `lease_until` is the claim's token for `finish`/`reschedule`."""
        found = self._run(
            "claim", delivery_id, _time(now), _time(lease_until), payload, int(event_count)
        )
        return None if found is None else _delivery(_row(found))

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
        """Settle a pending delivery under its claim (`lease`: the claim's `lease_until`,
        None when settled without an attempt), as the SQLite outbox's `finish`: False, and
        nothing written, when another worker has claimed or settled it since."""
        return bool(
            self._run(
                "finish",
                delivery_id,
                status,
                _time(now),
                reason,
                _optional(http_status),
                int(summary_due),
                "" if lease is None else _time(lease),
            )
        )

    def reschedule(
        self,
        delivery_id: int,
        next_attempt_at: float,
        reason: str,
        http_status: int | None,
        *,
        lease: float,
    ) -> bool:
        """Release a failed attempt's claim and set the next attempt, only while the
        delivery is still pending under that claim (as the SQLite outbox's)."""
        return bool(
            self._run(
                "reschedule",
                delivery_id,
                _time(next_attempt_at),
                reason,
                _optional(http_status),
                _time(lease),
            )
        )

    def expire(self, destination: str, limit: float, grace: float, now: float, why: str) -> int:
        """Dead-letter what has waited `limit` seconds: never one an attempt holds, and a
        final attempt scheduled at the limit gets `grace` seconds to happen."""
        return int(self._run("expire", destination, _time(limit), _time(grace), _time(now), why))

    def dead_letter_unconfigured(self, configured: set[str], now: float) -> int:
        stray = sorted(self.pending_destinations() - configured)
        if not stray:
            return 0
        pairs = [
            item
            for name in stray
            for item in (name, f"destination {name!r} is not in the configuration")
        ]
        return int(self._run("dead_letter_destinations", _time(now), *pairs))

    # -- digests ---------------------------------------------------------------------

    def open_digests(self) -> dict[str, float]:
        """Destinations with alerts waiting for a digest not sealed yet, and the moment
        the oldest of them was routed (its period is the first to close)."""
        names = self._destinations()
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.zrange(f"{self._p}dg:{name}", 0, 0, withscores=True)
        found = {}
        for name, first in zip(names, pipe.execute(), strict=True):
            if first:
                found[name] = float(first[0][1])
        return found

    def digest_members(
        self, destination: str, routed_before: float
    ) -> list[tuple[Delivery, dict[str, Any] | None]]:
        """The unsealed digest rows of a destination routed before a moment, oldest
        first, each with its alert (None when the alert is gone)."""
        ids = self._redis.zrangebyscore(
            f"{self._p}dg:{destination}", "-inf", f"({_time(routed_before)}"
        )
        members = sorted(self._rows(ids), key=lambda d: d.delivery_id)
        bodies = self._alerts.bodies([m.alert_id for m in members])
        return [(m, bodies.get(m.alert_id)) for m in members]

    def undigest(self, destination: str, now: float) -> int:
        """Unsealed digest rows of a destination that no longer batches become ordinary
        pending deliveries."""
        return int(self._run("undigest", destination, _time(now)))

    def seal_digest(
        self,
        destination: str,
        messages: Sequence[tuple[str, str, Sequence[int]]],
        settled: Sequence[tuple[int, str, str]],
        now: float,
    ) -> bool:
        """In one script: each digest message (key, payload, member delivery ids) is
        queued with its rendered payload and its members point at it; `settled` members
        (delivery id, status, reason) leave the digest. False, and nothing written, when
        another process sealed or settled any of them first."""
        plan = [
            [[key, payload, [int(m) for m in members]] for key, payload, members in messages],
            [[int(m), status, reason] for m, status, reason in settled],
        ]
        return bool(
            self._run("seal_digest", destination, _time(now), json.dumps(plan, ensure_ascii=False))
        )

    # -- destinations ----------------------------------------------------------------

    def destination_state(self, destination: str) -> DestinationState:
        found = self._redis.hgetall(f"{self._p}dest:{destination}")
        if not found:
            return DestinationState()
        row = _row(found)
        return DestinationState(
            float(row["paused_until"]), int(row["consecutive_failures"]), row["reason"]
        )

    def set_destination_state(self, destination: str, state: DestinationState) -> None:
        self._redis.hset(
            f"{self._p}dest:{destination}",
            mapping={
                "paused_until": _time(state.paused_until),
                "consecutive_failures": str(state.consecutive_failures),
                "reason": state.reason,
            },
        )

    # -- what the CLI shows and changes ----------------------------------------------

    def deliveries(self, alert_ids: Sequence[str]) -> dict[str, list[Delivery]]:
        pipe = self._redis.pipeline(transaction=False)
        for alert_id in alert_ids:
            pipe.zrange(f"{self._p}a:{alert_id}", 0, -1)
        ids = [int(_text(i)) for found in pipe.execute() for i in found]
        found: dict[str, list[Delivery]] = {a: [] for a in alert_ids}
        for delivery in self._rows(sorted(ids)):
            found[delivery.alert_id].append(delivery)
        return found

    def by_status(self, status: str | Sequence[str], limit: int) -> list[Delivery]:
        """Newest first (finished, else queued), then by id, like the SQLite outbox:
        each status's top `limit`, with every row tied with the last of them."""
        wanted = [status] if isinstance(status, str) else list(status)
        candidates: dict[int, float] = {}
        for name in wanted:
            key = f"{self._p}s:{name}"
            top = self._redis.zrevrange(key, 0, limit - 1, withscores=True) if limit > 0 else []
            if top:
                last = top[-1][1]
                top += self._redis.zrangebyscore(key, last, last, withscores=True)
            candidates.update((int(_text(i)), float(score)) for i, score in top)
        order = sorted(candidates, key=lambda i: (candidates[i], i), reverse=True)[: max(limit, 0)]
        return self._rows(order)

    def counts(self) -> dict[str, int]:
        found = self._redis.hgetall(f"{self._p}counts")
        return {_text(k): int(v) for k, v in found.items() if int(v) > 0}

    def requeue(
        self,
        now: float,
        alert_id: str | None = None,
        destination: str | None = None,
        statuses: Sequence[str] = ("dead",),
    ) -> int:
        """Send dead (or silenced) deliveries again, with a fresh retry budget; as the
        SQLite outbox's `requeue` (a digest message is sent again whole and its members
        wait for it again), in one script."""
        return int(self._run("requeue", _time(now), alert_id or "", destination or "", *statuses))

    def figures(self) -> tuple[int, dict[str, int]]:
        """New alerts owed a notification that routing has not seen, and the deliveries
        by status; for `detect status` (as `read_delivery_figures` for a file): reads
        only."""
        return len(self._unrouted_ids(sys.maxsize, advance=False)), self.counts()

    def pending_by_destination(self) -> dict[str, tuple[int, float]]:
        """{destination: (pending deliveries, when the oldest was queued)}, as
        `read_pending_by_destination` gives for a state file; for the metrics endpoint of
        every worker (the outbox is shared, so each shows the same): reads only."""
        names = self._destinations()
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.zcard(f"{self._p}age:{name}")
            pipe.zrange(f"{self._p}age:{name}", 0, 0, withscores=True)
        answers = pipe.execute()
        found: dict[str, tuple[int, float]] = {}
        for index, name in enumerate(names):
            count, oldest = answers[2 * index], answers[2 * index + 1]
            if count and oldest:
                found[name] = (int(count), float(oldest[0][1]))
        return found

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
        record = asdict(silence)
        del record["lifted_at"]  # kept in its own hash, set once
        self._redis.hset(f"{self._p}silences", silence.silence_id, json.dumps(record))
        return silence

    def _all_silences(self) -> list[Silence]:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(f"{self._p}silences")
        pipe.hgetall(f"{self._p}lifted")
        records, lifted = pipe.execute()
        lifted_at = {_text(k): float(v) for k, v in lifted.items()}
        found = []
        for key, value in records.items():
            record = json.loads(value)
            found.append(Silence(**record, lifted_at=lifted_at.get(_text(key))))
        return found

    def silences(self, now: float, include_ended: bool = False) -> list[Silence]:
        found = sorted(self._all_silences(), key=lambda s: s.created_at, reverse=True)
        if include_ended:
            return found
        return [s for s in found if s.lifted_at is None and s.ends_at > now]

    def lift_silence(self, silence_id: str, now: float) -> bool:
        return bool(self._run("lift_silence", silence_id, _time(now)))

    def silence_for(self, rule_id: str, dedup_key: str, now: float) -> Silence | None:
        active = [s for s in self._all_silences() if s.active(now)]
        for silence in sorted(active, key=lambda s: s.created_at):
            if silence.matches(rule_id, dedup_key):
                return silence
        return None
