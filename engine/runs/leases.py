"""Who polls which organization: leases on partitions, and the registry of live workers.

Several `detect run` workers share one Redis. Each partition (an organization id, or `*`
for the key's whole feed) is written by one worker at a time: the holder of its lease,
the key `{prefix}lease:{partition}` whose value is the holder's token, with a TTL the
holder renews while it lives. The state store fences every commit with the same token
(engine/state/redis_store.py), so a worker that stalled past its TTL writes nothing; the
lease here only decides who *should* work, the fence makes sure no one else *can*.

- **Acquire** is `SET key token NX PX ttl`: one round trip, and exactly one winner.
- **Renew** and **release** are compare-and-set Lua scripts: they touch the key only when
  it still holds our token, so a worker never extends or deletes a lease it has lost.
- **Fair share**: a worker holds at most `ceil(partitions / live workers)`, so three
  workers spread ten organizations 4/4/2 or 4/3/3 and a fourth worker takes some over
  (the others hand their surplus back). Liveness is the registry below, judged on the
  workers' clocks: a skewed clock can only make the share uneven, never let two workers
  write one partition.
- **Registry**: `{prefix}workers` is a ZSET worker id -> last heartbeat (epoch seconds);
  `{prefix}worker:{id}` a HASH (host, pid, started, partitions held) that expires with the
  lease TTL, so `detect status` sees a dead worker's details vanish. Entries of workers
  silent for an hour are dropped from the ZSET.

The clock is injectable (the heartbeats and liveness); lease expiry itself is Redis's.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

WORKERS_KEY = "workers"
FORGET_WORKERS_AFTER = 3600.0  # seconds of silence before a worker leaves the registry

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lease_key(prefix: str, partition: str) -> str:
    return f"{prefix}lease:{partition}"


def worker_key(prefix: str, worker_id: str) -> str:
    return f"{prefix}worker:{worker_id}"


def holder_of(token: str | None) -> str | None:
    """The worker id a lease token names (`{worker id}/{random}`)."""
    if not token:
        return None
    return token.rsplit("/", 1)[0]


def new_worker_id() -> str:
    """Host, process and a random suffix: readable in `detect status`, unique even when
    a restarted process gets the same pid."""
    host = socket.gethostname().split(".")[0] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def fair_share(partitions: int, live_workers: int) -> int:
    """The most partitions one worker should hold."""
    return math.ceil(partitions / max(1, live_workers))


@dataclass
class Balance:
    """What one `Leases.balance` step changed: partitions newly acquired, partitions whose
    renewal failed (another worker holds them now: stop at once, write nothing), and
    partitions over the fair share (stop their pipeline, then `release`). `eager`: this
    worker is below its share and a partition may come free soon (one is free, or another
    worker holds more than its share and hands the surplus back at the end of its pass),
    so the next step is worth taking early; below the share with every partition held by
    workers at or under theirs (ten organizations over three workers, 4/4/2), nothing
    will come free until a worker joins or leaves."""

    acquired: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    surplus: list[str] = field(default_factory=list)
    share: int = 0
    live_workers: int = 1
    eager: bool = False


@dataclass(frozen=True)
class WorkerInfo:
    """One registry entry as `detect status` shows it."""

    worker_id: str
    heartbeat: float
    host: str | None
    pid: int | None
    started: float | None
    partitions: list[str]
    alive: bool


@dataclass(frozen=True)
class LeaseInfo:
    partition: str
    holder: str | None
    ttl_left: float | None  # seconds; None when free, or held by a key without expiry


class Leases:
    """One worker's leases and heartbeat on `client` (a `redis.Redis`)."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "detect:",
        ttl: float = 30.0,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl < 1:
            raise ValueError(f"a lease TTL must be at least 1 second, not {ttl!r}")
        self.client = client
        self.prefix = prefix
        self.ttl = float(ttl)
        self.worker_id = worker_id or new_worker_id()
        self.clock = clock
        self.started = clock()
        self.held: dict[str, str] = {}  # partition -> token
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl * 1000)

    def key(self, partition: str) -> str:
        return lease_key(self.prefix, partition)

    def lease(self, partition: str) -> tuple[str, str]:
        """(lease key, token) of a held partition: what the state store fences commits with."""
        return self.key(partition), self.held[partition]

    # -- one lease -------------------------------------------------------------------

    def acquire(self, partition: str) -> bool:
        token = f"{self.worker_id}/{secrets.token_hex(8)}"
        if self.client.set(self.key(partition), token, nx=True, px=self.ttl_ms):
            self.held[partition] = token
            return True
        return False

    def renew(self, partition: str) -> bool:
        """Extend a held lease by a TTL; False (and forgotten) when it is no longer ours."""
        token = self.held.get(partition)
        if token is None:
            return False
        if self._renew(keys=[self.key(partition)], args=[token, self.ttl_ms]):
            return True
        del self.held[partition]
        return False

    def release(self, partition: str, token: str | None = None) -> None:
        """Give a lease back now (a clean stop, a surplus): another worker may take it at
        once instead of after its TTL. With `token`, only that lease: one the balance has
        taken again since, under a new token, is kept."""
        held = self.held.get(partition)
        if held is None or (token is not None and held != token):
            return
        del self.held[partition]
        self._release(keys=[self.key(partition)], args=[held])

    def forget(self, partition: str, token: str) -> None:
        """Drop a lease known lost (its renewal failed, or the store's fence refused a
        commit), without a round trip. Only when `token`, the lost one, is still what we
        hold: a balance step whose renewal failed may take the partition again at once
        (Redis was away past the TTL), and forgetting that new token would leave the key
        held by a token this worker no longer knows, the organization unpolled for a TTL."""
        if self.held.get(partition) == token:
            del self.held[partition]

    # -- the registry ------------------------------------------------------------------

    def heartbeat(self) -> None:
        now = self.clock()
        key = worker_key(self.prefix, self.worker_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(self.prefix + WORKERS_KEY, {self.worker_id: now})
        pipe.hset(
            key,
            mapping={
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": self.started,
                "heartbeat": now,
                "partitions": json.dumps(sorted(self.held)),
            },
        )
        pipe.pexpire(key, self.ttl_ms)
        pipe.zremrangebyscore(self.prefix + WORKERS_KEY, "-inf", now - FORGET_WORKERS_AFTER)
        pipe.execute()

    def live_workers(self) -> list[str]:
        """Workers whose last heartbeat is within a TTL (this one always counts)."""
        now = self.clock()
        alive = self.client.zrangebyscore(self.prefix + WORKERS_KEY, now - self.ttl, "+inf")
        ids = {_text(member) for member in alive}
        ids.add(self.worker_id)
        return sorted(ids)

    def leave(self) -> None:
        """A clean stop: every lease released, the registry entry removed."""
        for partition in list(self.held):
            self.release(partition)
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self.prefix + WORKERS_KEY, self.worker_id)
        pipe.delete(worker_key(self.prefix, self.worker_id))
        pipe.execute()

    # -- the balance -------------------------------------------------------------------

    def balance(self, partitions: Sequence[str]) -> Balance:
        """One step, every TTL/3: renew what is held, say we live, and move toward the
        fair share (acquire free partitions below it, name the surplus above it)."""
        result = Balance()
        for partition in list(self.held):
            if partition not in partitions:
                result.surplus.append(partition)
            elif not self.renew(partition):
                result.lost.append(partition)
        self.heartbeat()
        live = self.live_workers()
        result.live_workers = len(live)
        result.share = fair_share(len(partitions), len(live))
        wanted = [p for p in self.held if p in partitions and p not in result.surplus]
        if len(wanted) > result.share:
            result.surplus.extend(sorted(wanted)[result.share :])
        elif len(wanted) < result.share:
            for partition in self._rotated(partitions):
                if len(wanted) >= result.share:
                    break
                if partition not in self.held and self.acquire(partition):
                    wanted.append(partition)
                    result.acquired.append(partition)
            if len(wanted) < result.share:
                result.eager = self._coming_free(partitions, result.share)
        return result

    def _coming_free(self, partitions: Sequence[str], share: int) -> bool:
        """Whether a partition this worker lacks is free, or held by a worker over the
        share (one MGET)."""
        others = [p for p in partitions if p not in self.held]
        if not others:
            return False
        tokens = self.client.mget([self.key(p) for p in others])
        holders = Counter(holder_of(_text(t)) if t is not None else None for t in tokens)
        if holders.pop(None, 0):
            return True
        return any(count > share for count in holders.values())

    def _rotated(self, partitions: Sequence[str]) -> list[str]:
        """The partitions starting at an offset of this worker's own, so workers starting
        together try different partitions first."""
        if not partitions:
            return []
        offset = zlib.crc32(self.worker_id.encode()) % len(partitions)
        return list(partitions[offset:]) + list(partitions[:offset])


# -- reading, for `detect status` -------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_workers(client: Any, prefix: str, now: float, ttl: float) -> list[WorkerInfo]:
    """Every worker in the registry, most recent heartbeat first; `alive` when it beat
    within a TTL."""
    entries = client.zrevrangebyscore(prefix + WORKERS_KEY, "+inf", "-inf", withscores=True)
    found: list[WorkerInfo] = []
    for member, score in entries:
        worker_id = _text(member)
        details = {
            _text(k): _text(v) for k, v in client.hgetall(worker_key(prefix, worker_id)).items()
        }
        try:
            partitions = json.loads(details.get("partitions", "[]"))
        except ValueError:
            partitions = []
        found.append(
            WorkerInfo(
                worker_id=worker_id,
                heartbeat=float(score),
                host=details.get("host"),
                pid=int(details["pid"]) if details.get("pid", "").isdigit() else None,
                started=float(details["started"]) if details.get("started") else None,
                partitions=list(partitions),
                alive=float(score) >= now - ttl,
            )
        )
    return found


def read_leases(client: Any, prefix: str, partitions: Iterable[str]) -> list[LeaseInfo]:
    """Each partition's holder and the seconds its lease has left."""
    names = list(partitions)
    # MULTI: a lease read by GET can no longer expire before its PTTL is read.
    pipe = client.pipeline(transaction=True)
    for partition in names:
        pipe.get(lease_key(prefix, partition))
        pipe.pttl(lease_key(prefix, partition))
    answers = pipe.execute()
    leases = []
    for index, partition in enumerate(names):
        token, left = answers[2 * index], answers[2 * index + 1]
        holder = holder_of(_text(token)) if token is not None else None
        leases.append(
            LeaseInfo(
                partition=partition,
                holder=holder,
                ttl_left=left / 1000 if holder is not None and left >= 0 else None,
            )
        )
    return leases
