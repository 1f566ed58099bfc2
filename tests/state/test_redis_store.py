"""What the Redis state store promises beyond the common contract
(tests/state/test_store_contract.py): the lease fence, partitions kept apart, TTLs that
follow the event-time expiry, commits applied whole or not at all, few round trips, and
the shared alerts as the outbox reads them (`RedisAlertRows`). On a real redis-server."""

from __future__ import annotations

import pytest

from engine.errors import LeaseLost, StateWriteError

redis = pytest.importorskip("redis")

from engine.state.redis_alerts import RedisAlertRows  # noqa: E402
from engine.state.redis_store import SLACK_SECONDS, RedisStore  # noqa: E402

WATERMARK = "2026-05-07T10:00:00.000000Z"
NOW = 1778148000.0  # WATERMARK as epoch seconds


def alert(alert_id: str, rule: str = "r", opened: str = WATERMARK, kind: str = "detection"):
    return {
        "alert_id": alert_id,
        "rule_id": rule,
        "kind": kind,
        "severity": "low",
        "first_event_at": opened,
    }


def snapshot(client, prefix: str) -> dict[str, bytes]:
    """Every key of the prefix but the leases, dumped with its value."""
    names = {k.decode() for k in client.scan_iter(match=f"{prefix}*")}
    return {k: client.dump(k) for k in names if not k.startswith(f"{prefix}lease:")}


def test_the_watermark_constant_is_the_epoch_of_its_text():
    from engine.state.redis_store import epoch

    assert epoch(WATERMARK) == NOW


def test_a_commit_under_a_stolen_lease_applies_nothing(redis_client, redis_prefix):
    lease = f"{redis_prefix}lease:org-1"
    redis_client.set(lease, "mine")
    store = RedisStore(redis_client, redis_prefix, "org-1", lease=(lease, "mine"))
    store.put("ns", "k", 1)
    store.set_meta("checkpoint", "c1")
    store.commit()
    before = snapshot(redis_client, redis_prefix)

    redis_client.set(lease, "another worker's")
    store.put("ns", "k", 2)
    store.put("ns", "new", 3, expires=NOW)
    store.delete("ns", "k")
    store.set_meta("checkpoint", "c2")
    store.save_alert(alert("al_1"), notify=True)
    with pytest.raises(LeaseLost) as lost:
        store.commit()
    assert "'org-1'" in str(lost.value) and lease in str(lost.value)
    assert snapshot(redis_client, redis_prefix) == before

    assert store.lost
    trips = store.round_trips
    with pytest.raises(LeaseLost):
        store.commit()  # a lost lease is not asked about again
    assert store.round_trips == trips

    redis_client.delete(lease)  # expired: no holder at all
    expired = RedisStore(redis_client, redis_prefix, "org-1", lease=(lease, "mine"))
    expired.put("ns", "k", 4)
    with pytest.raises(LeaseLost):
        expired.commit()
    expired = RedisStore(redis_client, redis_prefix, "org-1", lease=(lease, "mine"))
    with pytest.raises(LeaseLost):
        expired.purge(NOW)
    store.close()  # drops what the lost lease could not write, without raising
    assert snapshot(redis_client, redis_prefix) == before
    other = RedisStore(redis_client, redis_prefix, "org-1")
    assert other.get("ns", "k") == 1 and other.get_meta("checkpoint") == "c1"


def test_partitions_keep_their_state_apart_and_share_the_alerts(redis_client, redis_prefix):
    a = RedisStore(redis_client, redis_prefix, "org-a")
    b = RedisStore(redis_client, redis_prefix, "org-b")
    a.put("ns", "k", "a's")
    b.put("ns", "k", "b's")
    b.put("ns", "only-b", 1)
    a.set_meta("watermark", "2026-05-07T12:00:00.000000Z")
    b.set_meta("watermark", "2026-05-07T09:00:00.000000Z")
    a.save_alert(alert("al_a"), notify=True)
    b.save_alert(alert("al_b"), notify=True)
    a.commit()
    b.commit()
    a, b = (
        RedisStore(redis_client, redis_prefix, "org-a"),
        RedisStore(redis_client, redis_prefix, "org-b"),
    )
    assert dict(a.items("ns")) == {"k": "a's"}
    assert dict(b.items("ns")) == {"k": "b's", "only-b": 1}
    assert a.get("ns", "only-b") is None
    assert a.get_meta("watermark") == "2026-05-07T12:00:00.000000Z"
    assert b.purge(NOW + 10**6) == 0 and a.get("ns", "k") == "a's"
    assert (
        {x["alert_id"] for x in a.alerts()}
        == {x["alert_id"] for x in b.alerts()}
        == {
            "al_a",
            "al_b",
        }
    )
    rows = RedisAlertRows(redis_client, redis_prefix)
    assert rows.partitions() == ["org-a", "org-b"]
    # digests and summaries never run ahead of the lagging organization
    assert rows.meta("watermark") == "2026-05-07T09:00:00.000000Z"
    assert rows.meta("nothing") is None
    with pytest.raises(ValueError, match="may not hold ':'"):
        RedisStore(redis_client, redis_prefix, "org:1")


def test_the_shared_watermark_counts_only_the_live_partitions(redis_client, redis_prefix):
    """The lowest watermark over the partitions held or lately committed: a replay's `*`
    or an organization no longer configured, done with for over an hour, holds no one's
    summaries back; one between two holders still counts."""
    import json

    def commit(partition: str, watermark: str) -> None:
        store = RedisStore(redis_client, redis_prefix, partition)
        store.set_meta("watermark", watermark)
        store.commit()

    def committed_at(partition: str) -> float:
        return json.loads(redis_client.hget(f"{redis_prefix}p:{partition}:meta", "committed_at"))

    def age(partition: str, seconds: float) -> None:
        """As if the partition's last commit had been `seconds` earlier."""
        at = committed_at(partition) - seconds
        redis_client.hset(f"{redis_prefix}p:{partition}:meta", "committed_at", json.dumps(at))

    commit("*", "2026-05-07T08:00:00.000000Z")  # a replay's
    commit("org-gone", "2026-05-07T09:00:00.000000Z")  # no longer configured
    commit("org-a", "2026-05-07T12:00:00.000000Z")
    commit("org-b", "2026-05-07T11:00:00.000000Z")
    seconds, micro = redis_client.time()  # the commit time is the server's
    assert abs(committed_at("org-b") - (seconds + micro / 1e6)) < 5
    rows = RedisAlertRows(redis_client, redis_prefix)
    # all four committed just now (a replay with no workers): all four count
    assert rows.meta("watermark") == "2026-05-07T08:00:00.000000Z"
    age("*", 3601)
    age("org-gone", 7200)
    assert rows.live_partitions() == {"org-a", "org-b"}
    assert rows.meta("watermark") == "2026-05-07T11:00:00.000000Z"
    # workers hold org-a and org-b, whose last commits are old too (quiet): they count
    for partition in ("org-a", "org-b"):
        redis_client.set(f"{redis_prefix}lease:{partition}", "w1/token", px=30_000)
        age(partition, 86_400)
    assert rows.live_partitions() == {"org-a", "org-b"}
    assert rows.meta("watermark") == "2026-05-07T11:00:00.000000Z"
    # org-b's worker stopped; its successor has not started: org-b still counts
    redis_client.delete(f"{redis_prefix}lease:org-b")
    age("org-b", -86_400)
    assert rows.meta("watermark") == "2026-05-07T11:00:00.000000Z"
    # every worker gone a day: the partitions of the last hour of commits (`*`, org-gone)
    redis_client.delete(f"{redis_prefix}lease:org-a")
    age("org-b", 2 * 86_400)
    assert rows.live_partitions() == {"*", "org-gone"}
    # a state written before commit times were kept, nothing held: every partition
    for partition in rows.partitions():
        redis_client.hdel(f"{redis_prefix}p:{partition}:meta", "committed_at")
    assert rows.meta("watermark") == "2026-05-07T08:00:00.000000Z"


def test_expiring_values_carry_a_ttl_from_the_partitions_event_time(redis_client, redis_prefix):
    store = RedisStore(redis_client, redis_prefix, "org-1")
    store.set_meta("watermark", WATERMARK)
    store.put("threshold", "soon", [1], expires=NOW + 600)
    store.put("threshold", "late", [2], expires=NOW + 3600)
    store.put("learned", "forever", True)
    store.commit()
    base = f"{redis_prefix}p:org-1:"
    slack = SLACK_SECONDS * 1000

    def ms(key):
        return redis_client.pttl(f"{base}{key}")

    assert 600_000 + slack - 5000 < ms("v:threshold:soon") <= 600_000 + slack
    assert 3_600_000 + slack - 5000 < ms("v:threshold:late") <= 3_600_000 + slack
    assert ms("v:learned:forever") == -1  # no expiry, no TTL
    # the index of a namespace lives as long as its longest-lived value
    assert 3_600_000 + slack - 5000 < ms("x:threshold") <= 3_600_000 + slack
    store.put("threshold", "soon", [1, 1])  # put again without an expiry: kept for good
    store.commit()
    assert ms("v:threshold:soon") == -1
    later = RedisStore(redis_client, redis_prefix, "org-1")
    assert dict(later.items("threshold")) == {"soon": [1, 1], "late": [2]}
    redis_client.delete(f"{base}v:threshold:late")  # as its TTL would: the index still has it
    gone = RedisStore(redis_client, redis_prefix, "org-1")
    assert gone.get("threshold", "late") is None
    assert dict(gone.items("threshold")) == {"soon": [1, 1]}
    assert gone.purge(NOW + 7200) == 1  # and the purge drops its index entry


def test_a_window_outlives_weeks_of_wall_clock_between_commits(redis_client, redis_prefix):
    """A replay kept open and continued weeks later (or an outage over a day) finds its
    windows: the TTL a value carries is its event-time lifetime plus 30 days."""
    store = RedisStore(redis_client, redis_prefix, "org-1")
    store.set_meta("watermark", WATERMARK)
    store.put("dedup", "window", [1], expires=NOW + 60)
    store.commit()
    left = redis_client.pttl(f"{redis_prefix}p:org-1:v:dedup:window") / 1000
    assert 29 * 86_400 < left <= 30 * 86_400 + 60


def test_a_commit_applies_all_or_nothing(redis_client, redis_prefix):
    store = RedisStore(redis_client, redis_prefix, "org-1")
    store.put("ns", "k", 1)
    store.commit()
    before = snapshot(redis_client, redis_prefix)
    # a key the commit must add to holds something else (another program's, a typo'd
    # prefix): found before the first write, so nothing is written
    redis_client.set(f"{redis_prefix}alerts:notify", "not a sorted set")
    store.put("ns", "k", 2)
    store.put("other", "x", 1, expires=NOW)
    store.set_meta("checkpoint", "c2")
    store.save_alert(alert("al_1"), notify=True)
    with pytest.raises(StateWriteError) as failed:
        store.commit()
    message = str(failed.value)
    assert "alerts:notify holds a string, not a zset" in message
    assert "127.0.0.1:" in message and "nothing after the last commit" in message
    after = snapshot(redis_client, redis_prefix)
    after.pop(f"{redis_prefix}alerts:notify")
    assert after == before


def test_alerts_come_in_opening_order_as_sqlites_do(redis_client, redis_prefix):
    store = RedisStore(redis_client, redis_prefix, "org-1")
    store.save_alert(alert("al_b", opened="2026-05-07T11:00:00.000000Z"), True)
    store.save_alert(alert("al_a", opened="2026-05-07T12:00:00.000000Z"), True)
    store.save_alert(alert("al_c", opened="2026-05-07T10:00:00.000000Z"), True)
    store.save_alert(alert("al_d", opened="2026-05-07T10:00:00.000000Z"), True)
    store.commit()
    assert [a["alert_id"] for a in store.alerts()] == ["al_c", "al_d", "al_b", "al_a"]


def test_round_trips_stay_few(redis_client, redis_prefix, monkeypatch):
    store = RedisStore(redis_client, redis_prefix, "org-1")
    store.put("ns", "stored", 1)
    store.put("ns", "also", 2)
    store.commit()
    assert store.round_trips == 1  # the commit's script
    fresh = RedisStore(redis_client, redis_prefix, "org-1")
    fresh.put("ns", "also", 3)  # its own write wins over what is read
    assert fresh.get("ns", "never") is None
    assert fresh.round_trips == 3  # which keys exist, then a small partition's values
    for _ in range(3):
        assert fresh.get("ns", "never-either") is None
        assert fresh.get("ns", "stored") == 1
        assert fresh.get("ns", "also") == 3
    assert fresh.round_trips == 3
    fresh.set_meta("watermark", WATERMARK)
    fresh.commit()
    fresh.commit()  # nothing to write: no round trip
    assert fresh.round_trips == 4

    monkeypatch.setattr("engine.state.redis_store.PREFETCH_KEYS", 1)  # a large partition
    large = RedisStore(redis_client, redis_prefix, "org-1")
    assert large.get("ns", "never") is None
    assert large.round_trips == 2  # which keys exist, no values
    for _ in range(3):
        assert large.get("ns", "stored") == 1
    assert large.round_trips == 3  # the one stored value read, fetched once


def test_the_outbox_reads_the_shared_alerts(redis_client, redis_prefix):
    a = RedisStore(redis_client, redis_prefix, "org-a")
    b = RedisStore(redis_client, redis_prefix, "org-b")
    a.save_alert(alert("al_x1", rule="r1", opened="2026-05-07T10:00:00.000000Z"), True)
    a.save_alert(alert("al_x2", rule="r2", opened="2026-05-07T12:00:00.000000Z"), False)
    a.commit()
    b.save_alert(alert("al_y1", rule="r1", opened="2026-05-07T11:00:00.000000Z"), True)
    b.save_alert(
        alert("al_y2", rule="r1", opened="2026-05-07T09:00:00.000000Z", kind="rule_error"), True
    )
    b.commit()
    a.save_alert({**alert("al_x2", rule="r2"), "event_count": 5}, True)  # owed now
    a.save_alert({**alert("al_x1", rule="r1"), "event_count": 9}, False)  # keeps its place
    a.commit()
    rows = RedisAlertRows(redis_client, redis_prefix)
    assert rows.present()
    owed = rows.notify_ids()
    assert [i for _, i in owed] == ["al_x1", "al_y1", "al_y2", "al_x2"]
    assert [p for p, _ in owed] == sorted(p for p, _ in owed)
    assert rows.notify_ids(after=owed[1][0], limit=1) == [owed[2]]
    assert rows.bodies(["al_x1", "nope", "al_x1"])["al_x1"]["event_count"] == 9
    assert set(rows.bodies(["al_x1", "nope"])) == {"al_x1"}
    assert rows.body("al_x2")["event_count"] == 5 and rows.body("nope") is None
    assert rows.ids_starting("al_x") == ["al_x1", "al_x2"]
    assert rows.ids_starting("al_", limit=3) == ["al_x1", "al_x2", "al_y1"]
    assert rows.ids_starting("al_%") == []
    assert [r["alert_id"] for r in rows.recent(2)] == ["al_x2", "al_y1"]
    assert [r["alert_id"] for r in rows.recent(5, rule="r1")] == ["al_y1", "al_x1", "al_y2"]
    assert rows.kinds() == {"detection": 3, "rule_error": 1}
    empty = RedisAlertRows(redis_client, redis_prefix + "empty:")
    assert empty.notify_ids() == [] and empty.recent(5) == [] and empty.meta("watermark") is None


def test_a_redis_that_goes_away_is_one_clear_error(tmp_path):
    from tests.conftest import start_redis_server

    server = start_redis_server(tmp_path / "redis")
    client = server.client(socket_timeout=2, socket_connect_timeout=2)
    store = RedisStore(client, "t:", "org-1")
    store.put("ns", "k", 1)
    store.commit()
    server.stop()
    store.put("ns", "k", 2)
    with pytest.raises(StateWriteError, match=r"Redis state at 127\.0\.0\.1:\d+/0 failed"):
        store.commit()
    assert store.get("ns", "k") == 2  # still pending: nothing was lost in this process
