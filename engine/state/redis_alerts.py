"""The shared alerts of a Redis state, read by the outbox and `detect status`: the same
read methods as the SQLite store's `AlertRows`, over the keys `RedisStore.commit`
writes (docs/state.md):

- `{prefix}alert:{id}` the alert's JSON;
- `{prefix}alerts:notify` ZSET id -> position, the `{prefix}alerts:seq` count when the
  alert was first owed a notification (a position never changes);
- `{prefix}alerts:opened` ZSET id -> opening time (epoch), for `recent`;
- `{prefix}alerts:ids` ZSET of the ids at one score, for `ids_starting` (by prefix);
- `{prefix}alerts:kinds` HASH kind -> how many alerts;
- `{prefix}partitions` SET, and each partition's `{prefix}p:{partition}:meta` HASH;
- `{prefix}lease:{partition}`, whether a worker holds the partition (engine/runs/leases.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.state.redis_store import CHUNK, COMMITTED_AT, text

if TYPE_CHECKING:
    import redis

LIVE_AFTER_COMMIT = 3600.0
"""Seconds a partition no one holds still counts in `meta` after its last commit (on
the server's clock, as the commit script records it)."""


class RedisAlertRows:
    """Only reads; what they find is written by `RedisStore.commit`."""

    CHUNK = CHUNK

    def __init__(self, client: redis.Redis, prefix: str = "detect:") -> None:
        self._client = client
        self._prefix = prefix

    def present(self) -> bool:
        """Always: Redis needs no tables, and before the first alert every read finds
        nothing."""
        return True

    def notify_ids(self, after: int = 0, limit: int = CHUNK) -> list[tuple[int, str]]:
        """(position, alert id) of the alerts owed a notification, in the order they were
        first owed one, after position `after` (0: from the first); at most `limit`."""
        found = self._client.zrangebyscore(
            f"{self._prefix}alerts:notify",
            f"({after}",
            "+inf",
            start=0,
            num=limit,
            withscores=True,
        )
        return [(int(score), text(member)) for member, score in found]

    def bodies(self, alert_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The alerts of these ids that exist, by id (`CHUNK` ids per MGET)."""
        unique = list(dict.fromkeys(alert_ids))
        found: dict[str, dict[str, Any]] = {}
        if not unique:
            return found
        pipe = self._client.pipeline(transaction=False)
        for start in range(0, len(unique), self.CHUNK):
            chunk = unique[start : start + self.CHUNK]
            pipe.mget([f"{self._prefix}alert:{i}" for i in chunk])
        values = [v for reply in pipe.execute() for v in reply]
        for alert_id, body in zip(unique, values, strict=True):
            if body is not None:
                found[alert_id] = json.loads(body)
        return found

    def body(self, alert_id: str) -> dict[str, Any] | None:
        found = self._client.get(f"{self._prefix}alert:{alert_id}")
        return None if found is None else json.loads(found)

    def ids_starting(self, prefix: str, limit: int = 5) -> list[str]:
        """The ids that begin with `prefix` (taken literally), at most `limit`."""
        low = f"[{prefix}".encode()
        high = f"[{prefix}".encode() + b"\xff"
        found = self._client.zrangebylex(f"{self._prefix}alerts:ids", low, high, 0, limit)
        return [text(i) for i in found]

    def recent(self, limit: int, rule: str | None = None) -> list[dict[str, Any]]:
        """The latest alerts by opening time (of one rule, with `rule`: read newest first,
        a chunk at a time, until `limit` are found)."""
        key = f"{self._prefix}alerts:opened"
        found: list[dict[str, Any]] = []
        start = 0
        step = limit if rule is None else max(limit, self.CHUNK)
        while len(found) < limit:
            ids = [text(i) for i in self._client.zrevrange(key, start, start + step - 1)]
            if not ids:
                break
            bodies = self.bodies(ids)
            for alert_id in ids:
                body = bodies.get(alert_id)
                if body is not None and (rule is None or body.get("rule_id") == rule):
                    found.append(body)
            start += step
        return found[:limit]

    def meta(self, key: str) -> Any | None:
        """A meta entry, the lowest over the live partitions that hold it
        (`live_partitions`): the `watermark` is the event time every organization at work
        has reached, so digests and summaries never run ahead of a lagging one, and one
        that stopped (no longer configured, or a replay's `*` done with) does not hold
        them back for good. Watermarks are RFC 3339 text of one form, so they compare as
        the times do."""
        live = self.live_partitions()
        values = [v for p, v in self.partition_meta(key).items() if v is not None and p in live]
        try:
            return min(values) if values else None
        except TypeError:  # values that do not compare: no lowest
            return None

    def live_partitions(self) -> set[str]:
        """The partitions a worker (or a replay) holds the lease of, and those that
        committed within the last `LIVE_AFTER_COMMIT` seconds (the server's clock): an
        organization between two holders (its worker died, or stopped and its
        successor has not started yet) still counts for that long, and a partition no
        one writes any more (no longer configured, a replay's `*`) stops counting an
        hour after its last commit. With none held and none committed lately (a state
        read well after its last run), those that committed within `LIVE_AFTER_COMMIT`
        of the newest commit; every partition when none has a commit time (a state
        written before commit times were kept)."""
        partitions = self.partitions()
        if not partitions:
            return set()
        pipe = self._client.pipeline(transaction=False)
        pipe.time()
        for partition in partitions:
            pipe.exists(f"{self._prefix}lease:{partition}")
            pipe.hget(f"{self._prefix}p:{partition}:meta", COMMITTED_AT)
        (seconds, micro), *replies = pipe.execute()
        live = {p for p, held in zip(partitions, replies[::2], strict=True) if held}
        committed: dict[str, float] = {}
        for partition, raw in zip(partitions, replies[1::2], strict=True):
            try:
                committed[partition] = float(json.loads(raw))
            except (TypeError, ValueError):  # none (an older state's), or not a number
                continue
        now = seconds + micro / 1e6
        live.update(p for p, at in committed.items() if at >= now - LIVE_AFTER_COMMIT)
        if not live and committed:
            newest = max(committed.values())
            live = {p for p, at in committed.items() if at >= newest - LIVE_AFTER_COMMIT}
        return live or set(partitions)

    def partitions(self) -> list[str]:
        """The partitions that have committed, sorted."""
        return sorted(text(p) for p in self._client.smembers(f"{self._prefix}partitions"))

    def partition_meta(self, key: str) -> dict[str, Any]:
        """Each partition's value of the meta entry `key` (None where unset)."""
        partitions = self.partitions()
        if not partitions:
            return {}
        pipe = self._client.pipeline(transaction=False)
        for partition in partitions:
            pipe.hget(f"{self._prefix}p:{partition}:meta", key)
        values = [None if v is None else json.loads(v) for v in pipe.execute()]
        return dict(zip(partitions, values, strict=True))

    def kinds(self) -> dict[str, int]:
        """How many alerts of each kind (detection, rule_error, source_health)."""
        counts = self._client.hgetall(f"{self._prefix}alerts:kinds")
        return {text(k): int(v) for k, v in counts.items()}
