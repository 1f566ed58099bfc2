"""The Redis state store: one partition (an organization, or `*` for a key's whole feed)
of a state shared by several workers (docs/state.md, docs/scaling.md).

Like the SQLite store, writes are buffered in memory and applied at `commit()`, here as
ONE Lua script (engine/state/redis_scripts.py) that first checks the partition's lease
(`{prefix}lease:{partition}` must still hold this worker's token) and otherwise applies
nothing and raises `LeaseLost`: a worker that stalled past its lease can never write, and
a page's state, alerts and checkpoint land together or not at all.

The holder of a partition's lease is its only writer, so what this instance has read or
written stays right for as long as it lives, as the SQLite store's cache does: a value is
fetched from Redis at most once (and not at all when the partition's index says it was
never stored), and reads see this instance's uncommitted writes. After `LeaseLost` the
instance is done (`lost`): its cache may be behind the new holder's writes, every later
commit raises `LeaseLost` again, and `close()` drops what is buffered.

Round trips to Redis (`round_trips` counts them, for `detect bench`):
- `commit()`: one (the script, by its SHA; the first time a server has not seen it, two
  more: loading it, running it), none when nothing changed;
- `get()`: none for a key written or read before, or never stored; one otherwise;
- the first read of the partition: two (its namespaces, then every namespace's keys in
  one pipeline), loading which keys exist; and, when the partition holds at most
  `PREFETCH_KEYS` keys, a third that reads all their values (one pipeline), after which
  no read goes to Redis;
- `get_meta()`: one for the first, none after (the partition's meta is read whole);
- `items(namespace)`: two (its keys, then their values in one pipeline);
- `purge()`: a commit, then one (the purge script);
- `alerts()`: a commit, then two.
So a replay costs about one round trip per commit (1000 activities), plus, over the
state of an earlier run larger than `PREFETCH_KEYS`, one per stored key it reads.
Measured (20,000 generated activities, seed 1, the bundled rules, a local server): 32
round trips into a fresh partition, 34 over the first run's 4,465 value keys, by
`python benchmarks/redis_round_trips.py` (the first also by `detect bench --generate
20000 --redis URL`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

from engine.errors import LeaseLost, StateWriteError
from engine.secrets import redact
from engine.state.redis_scripts import COMMIT, PURGE
from engine.state.store import ReadCache

if TYPE_CHECKING:
    import redis

_DELETED = object()
_MISSING = object()
SLACK_SECONDS = 30 * 86_400
"""How long past its event-time expiry (counted from the partition's watermark) Redis
keeps a value: 30 days. The event time of a partition stands still while no one reads
it, so wall-clock time passes between commits that the TTL cannot see: a replay kept
open (`keep_open`) and continued weeks later, or an outage of a day or more, must find
its windows, thresholds and sequences where it left them. The purge (daily, in event
time) is what bounds a live partition's memory; this TTL only reclaims a partition no
one writes any more, so it can be long."""
# Values asked for per MGET.
CHUNK = 1000
# A partition of at most this many keys is read whole at its first read (`_prefetch`).
PREFETCH_KEYS = 20_000
WATERMARK = "watermark"
# The meta entry the commit script sets to the server's time (epoch seconds) at each
# commit: which partitions are live (engine/state/redis_alerts.py).
COMMITTED_AT = "committed_at"


def dumps(value: Any) -> str:
    # pydantic-core's encoder, as the SQLite store's: several times json.dumps.
    return to_json(value, fallback=str).decode("utf-8")


def text(value: bytes | str) -> str:
    """A reply as text, whether the client decodes replies or not."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def epoch(timestamp: str) -> float:
    """Epoch seconds of an RFC 3339 time (`Z` or an offset)."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def where(client: redis.Redis) -> str:
    """host:port/db of a client's server, never its credentials."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def _checked_name(name: str, what: str) -> str:
    if ":" in name:
        raise ValueError(f"a {what} of the Redis state store may not hold ':' ({name!r})")
    return name


class RedisStore:
    """One partition of the shared state; see the module's docstring for its promises."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "detect:",
        partition: str = "*",
        lease: tuple[str, str] | None = None,
        *,
        cache_size: int = 100_000,
        close_client: bool = False,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.partition = _checked_name(partition, "partition")
        self.lease = lease
        self.cache_size = cache_size
        self.close_client = close_client
        # Called by `close()` after the last commit, before the client closes: the opener
        # lets go of what it holds for the store (`open_redis_store`'s lease).
        self.on_close = on_close
        self.base = f"{prefix}p:{partition}:"
        self.round_trips = 0
        # The lease was found lost: every later commit raises `LeaseLost` at once.
        self.lost = False
        self._commit = client.register_script(COMMIT)
        self._purge = client.register_script(PURGE)
        self._pending: dict[tuple[str, str], tuple[Any, float | None]] = {}
        self._pending_alerts: dict[str, tuple[dict[str, Any], bool]] = {}
        self._pending_meta: dict[str, Any] = {}
        # Every value read or written lately (None: known absent), bounded as the SQLite
        # store's is: what is dropped is still in `_pending` or in Redis.
        self._values = ReadCache(cache_size)
        # Which (namespace, key) Redis may hold, loaded at the first read; None before.
        self._present: set[tuple[str, str]] | None = None
        self._meta: dict[str, str] | None = None  # committed meta, as JSON text
        self._namespaces: set[str] = set()

    # -- talking to Redis --------------------------------------------------------------

    @contextmanager
    def _talking(self, trips: int = 1) -> Iterator[None]:
        """Count the round trips; a Redis that fails becomes one clear error."""
        import redis

        self.round_trips += trips
        try:
            yield
        except redis.RedisError as error:
            raise StateWriteError(
                f"Redis state at {where(self.client)} failed: {redact(str(error))}; "
                "nothing after the last commit was written"
            ) from None

    def _value_key(self, namespace: str, key: str) -> str:
        if namespace not in self._namespaces:
            self._namespaces.add(_checked_name(namespace, "namespace"))
        return f"{self.base}v:{namespace}:{key}"

    def _load_present(self) -> set[tuple[str, str]]:
        """The keys of every namespace of the partition: most reads of a new person's
        state are for keys never written, and need not go to Redis."""
        if self._present is None:
            present: set[tuple[str, str]] = set()
            with self._talking(2):
                namespaces = [text(n) for n in self.client.smembers(f"{self.base}ns")]
                pipe = self.client.pipeline(transaction=False)
                for ns in namespaces:
                    pipe.zrange(f"{self.base}x:{ns}", 0, -1)
                    pipe.smembers(f"{self.base}k:{ns}")
                replies = pipe.execute() if namespaces else []
            for ns, expiring, lasting in zip(namespaces, replies[::2], replies[1::2], strict=True):
                present.update((ns, text(k)) for k in expiring)
                present.update((ns, text(k)) for k in lasting)
            self._present = present
            if 0 < len(present) <= min(PREFETCH_KEYS, self.cache_size // 2):
                self._prefetch(list(present))
        return self._present

    def _prefetch(self, names: list[tuple[str, str]]) -> None:
        """Every value of a small partition in one pipeline: a worker that takes an
        organization over (or a replay over an earlier one's state) would otherwise ask
        for each key once, one round trip each. What this instance already holds (its
        own writes) is kept."""
        with self._talking():
            pipe = self.client.pipeline(transaction=False)
            for start in range(0, len(names), CHUNK):
                pipe.mget([self._value_key(ns, key) for ns, key in names[start : start + CHUNK]])
            found = [v for reply in pipe.execute() for v in reply]
        for name, raw in zip(names, found, strict=True):
            if name not in self._values and name not in self._pending:
                self._values.keep(name, None if raw is None else json.loads(raw))

    # -- the protocol ------------------------------------------------------------------

    def get(self, namespace: str, key: str) -> Any | None:
        name = (namespace, key)
        value = self._values.get(name, _MISSING)
        if value is not _MISSING:
            return value
        entry = self._pending.get(name)
        if entry is not None:
            value = None if entry[0] is _DELETED else entry[0]
        elif name not in self._load_present():
            value = None
        else:
            with self._talking():
                raw = self.client.get(self._value_key(namespace, key))
            value = None if raw is None else json.loads(raw)
        self._values.keep(name, value)
        return value

    def put(self, namespace: str, key: str, value: Any, expires: float | None = None) -> None:
        self._value_key(namespace, key)  # checks the namespace
        name = (namespace, key)
        self._pending[name] = (value, expires)
        self._values.keep(name, value)

    def delete(self, namespace: str, key: str) -> None:
        name = (namespace, key)
        self._pending[name] = (_DELETED, None)
        self._values.keep(name, None)

    def items(self, namespace: str) -> Iterator[tuple[str, Any]]:
        with self._talking(2):
            pipe = self.client.pipeline(transaction=False)
            pipe.zrange(f"{self.base}x:{namespace}", 0, -1)
            pipe.smembers(f"{self.base}k:{namespace}")
            expiring, lasting = pipe.execute()
            stored = [
                key
                for key in dict.fromkeys(text(k) for k in itertools.chain(expiring, lasting))
                if (namespace, key) not in self._pending
            ]
            pipe = self.client.pipeline(transaction=False)
            for start in range(0, len(stored), CHUNK):
                pipe.mget([self._value_key(namespace, k) for k in stored[start : start + CHUNK]])
            found = list(itertools.chain.from_iterable(pipe.execute())) if stored else []
        for (ns, key), (value, _) in list(self._pending.items()):
            if ns == namespace and value is not _DELETED:
                yield key, value
        for key, raw in zip(stored, found, strict=True):
            if raw is not None:  # gone by its TTL since the index was read
                value = json.loads(raw)
                self._values.keep((namespace, key), value)
                yield key, value

    def save_alert(self, alert: dict[str, Any], notify: bool) -> None:
        previous = self._pending_alerts.get(alert["alert_id"])
        self._pending_alerts[alert["alert_id"]] = (alert, notify or bool(previous and previous[1]))

    def alerts(self) -> Iterator[dict[str, Any]]:
        """Every alert of the shared state (not only this partition's), by opening time."""
        self.commit()
        with self._talking(2):
            ids = [text(i) for i in self.client.zrange(f"{self.prefix}alerts:opened", 0, -1)]
            pipe = self.client.pipeline(transaction=False)
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                pipe.mget([f"{self.prefix}alert:{i}" for i in chunk])
                pipe.zmscore(f"{self.prefix}alerts:notify", chunk)
            replies = pipe.execute() if ids else []
        for bodies, owed in zip(replies[::2], replies[1::2], strict=True):
            for body, position in zip(bodies, owed, strict=True):
                if body is not None:
                    yield {**json.loads(body), "_notify": position is not None}

    def get_meta(self, key: str) -> Any | None:
        if key in self._pending_meta:
            return self._pending_meta[key]
        if self._meta is None:
            with self._talking():
                stored = self.client.hgetall(f"{self.base}meta")
            self._meta = {text(k): text(v) for k, v in stored.items()}
        found = self._meta.get(key)
        return None if found is None else json.loads(found)

    def set_meta(self, key: str, value: Any) -> None:
        self._pending_meta[key] = value

    def _watermark(self) -> float | None:
        """The partition's event time (its `watermark` meta, as the pipeline sets it before
        each commit): a value's TTL is counted from it."""
        value = self.get_meta(WATERMARK)
        try:
            return epoch(value) if isinstance(value, str) else None
        except ValueError:
            return None

    def _fence(self) -> list[str]:
        return list(self.lease) if self.lease else ["", ""]

    def _lost(self) -> LeaseLost:
        self.lost = True
        return LeaseLost(self.partition, self.lease[0] if self.lease else "")

    def commit(self) -> None:
        """Apply every buffered change in one fenced script (see the module docstring)."""
        if not (self._pending or self._pending_alerts or self._pending_meta):
            return
        if self.lost:
            raise self._lost()  # without asking: a lost lease is not given back
        watermark = _MISSING
        puts: list[str] = []
        deletes: list[str] = []
        for (ns, key), (value, expires) in self._pending.items():
            if value is _DELETED:
                deletes += (ns, key)
                continue
            ttl = ""
            if expires is not None:
                if watermark is _MISSING:
                    watermark = self._watermark()  # read only when a TTL needs it
                if watermark is not None:
                    ttl = str(max(1000, int((expires - watermark + SLACK_SECONDS) * 1000)))
            puts += (ns, key, dumps(value), "" if expires is None else repr(expires), ttl)
        meta = {key: dumps(value) for key, value in self._pending_meta.items()}
        alerts: list[str] = []
        for alert_id, (body, notify) in self._pending_alerts.items():
            opened = body.get("first_event_at")
            alerts += (
                alert_id,
                dumps(body),
                "1" if notify else "0",
                repr(epoch(opened)) if opened else "0",
                str(body["kind"]),
            )
        argv = [
            *self._fence(),
            self.base,
            self.prefix,
            self.partition,
            str(len(puts) // 5),
            str(len(deletes) // 2),
            str(len(meta)),
            str(len(alerts) // 5),
            *puts,
            *deletes,
            *itertools.chain.from_iterable(meta.items()),
            *alerts,
        ]
        with self._talking():
            applied = self._commit(keys=[], args=argv)
        if not applied:
            raise self._lost()
        if self._present is not None:
            for name, (value, _) in self._pending.items():
                if value is _DELETED:
                    self._present.discard(name)
                else:
                    self._present.add(name)
        if self._meta is not None:
            self._meta.update(meta)
        self._pending.clear()
        self._pending_alerts.clear()
        self._pending_meta.clear()

    def purge(self, before: float) -> int:
        """Commit, then drop the partition's values that expired before `before` (event
        time), fenced like a commit. Cached copies may stay, as in the SQLite store:
        every reader treats an expired value as an absent one."""
        self.commit()
        with self._talking():
            answer = self._purge(keys=[], args=[*self._fence(), self.base, repr(before)])
        if not answer:
            raise self._lost()
        self._present = None  # read again when next needed
        return int(answer) - 1

    def idle(self, budget: float) -> float:
        """No housekeeping: Redis does its own (TTLs, persistence)."""
        return 0.0

    def after_fork(self) -> None:
        """Nothing to let go of: the client's connection pool notices it is in another
        process and opens its own connections there, should the child ever use it."""

    def close(self) -> None:
        """Commit what is buffered (after `LeaseLost`, drop it: the partition's new holder
        writes it again from the checkpoint); then `on_close`; close the client when the
        store was given it to own (`open_store`)."""
        try:
            if not self.lost:
                self.commit()
        finally:
            try:
                if self.on_close is not None:
                    self.on_close()
            finally:
                if self.close_client:
                    self.client.close()
