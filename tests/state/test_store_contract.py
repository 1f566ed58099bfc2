"""The `StateStore` contract (engine/state/store.py), one suite run on every backend: memory,
a real SQLite file and a real redis-server. What only one backend promises is tested in
tests/state/test_sqlite_store.py (its journal and lock) and tests/state/test_redis_store.py (the
lease fence, partitions, TTLs)."""

from __future__ import annotations

import pytest

from tests.conftest import at, moment, run_pipeline
from tests.test_correlation import THRESHOLD_RULE


def alert(alert_id: str = "al_1", **fields):
    return {
        "alert_id": alert_id,
        "rule_id": "r",
        "kind": "detection",
        "severity": "low",
        "first_event_at": "2026-05-07T10:00:00.000000Z",
        **fields,
    }


def test_reads_see_the_writes_not_yet_committed(backend):
    store = backend.open()
    store.put("ns", "a", 1)
    store.put("ns", "b", 2)
    store.commit()
    store.put("ns", "a", 10)
    store.delete("ns", "b")
    store.put("ns", "c", {"v": [3]})
    store.set_meta("checkpoint", {"cursor": "x"})
    assert store.get("ns", "a") == 10
    assert store.get("ns", "b") is None
    assert store.get("ns", "c") == {"v": [3]}
    assert store.get("other", "a") is None
    assert dict(store.items("ns")) == {"a": 10, "c": {"v": [3]}}
    assert store.get_meta("checkpoint") == {"cursor": "x"}


def test_what_was_committed_is_read_by_a_new_instance(backend):
    store = backend.open()
    store.put("threshold", "k1", [[1.5, "u1", {"id": "a"}]], expires=100.0)
    store.put("alert", "k2", {"alert_id": "al_1", "n": None, "ok": True})
    store.put("alert", "gone", 1)
    store.commit()
    store.delete("alert", "gone")
    store.set_meta("checkpoint", {"cursor": "abc", "at": "2026-05-07T10:00:00Z"})
    reopened = backend.reopen(store)  # closing commits the rest
    assert reopened.get("threshold", "k1") == [[1.5, "u1", {"id": "a"}]]
    assert reopened.get("alert", "k2") == {"alert_id": "al_1", "n": None, "ok": True}
    assert reopened.get("alert", "gone") is None
    assert reopened.get("alert", "nope") is None
    assert dict(reopened.items("alert")) == {"k2": {"alert_id": "al_1", "n": None, "ok": True}}
    assert dict(reopened.items("nothing")) == {}
    assert reopened.get_meta("checkpoint") == {"cursor": "abc", "at": "2026-05-07T10:00:00Z"}
    assert reopened.get_meta("nope") is None


def test_what_was_not_committed_is_lost_with_the_process(backend):
    store = backend.open()
    store.put("ns", "kept", 1)
    store.set_meta("checkpoint", "c1")
    store.save_alert(alert("al_kept"), notify=True)
    store.commit()
    store.put("ns", "kept", 2)
    store.put("ns", "new", 3)
    store.set_meta("checkpoint", "c2")
    store.save_alert(alert("al_new"), notify=True)
    backend.abandon(store)
    after = backend.open()
    assert after.get("ns", "kept") == 1
    assert after.get("ns", "new") is None
    assert after.get_meta("checkpoint") == "c1"
    assert [a["alert_id"] for a in after.alerts()] == ["al_kept"]


def test_items_prefer_pending_writes_over_committed_ones(backend):
    store = backend.open()
    for key in ("committed", "pending", "gone"):
        store.put("ns", key, "committed")
    store.put("elsewhere", "x", 1)
    store.commit()
    store.put("ns", "pending", "pending")
    store.put("ns", "new", "pending")
    store.delete("ns", "gone")
    assert dict(store.items("ns")) == {
        "committed": "committed",
        "pending": "pending",
        "new": "pending",
    }


def test_purge_drops_what_expired_before_the_event_time(backend):
    store = backend.open()
    store.put("ns", "old", 1, expires=5.0)
    store.put("ns", "edge", 2, expires=10.0)
    store.put("ns", "later", 3, expires=15.0)
    store.put("ns", "forever", 4)
    store.commit()
    store.put("ns", "pending_old", 5, expires=1.0)  # purge commits what is pending first
    assert store.purge(10.0) == 2
    assert dict(store.items("ns")) == {"edge": 2, "later": 3, "forever": 4}
    assert store.purge(10.0) == 0


def test_a_value_put_again_takes_its_new_expiry(backend):
    store = backend.open()
    store.put("ns", "k", 1, expires=5.0)
    store.commit()
    store.put("ns", "k", 2, expires=50.0)
    store.put("ns", "j", 1, expires=5.0)
    store.commit()
    store.put("ns", "j", 2)  # no expiry any more
    assert store.purge(20.0) == 0
    assert dict(store.items("ns")) == {"k": 2, "j": 2}


def test_a_notification_owed_stays_owed_when_the_alert_is_saved_again(backend):
    store = backend.open()
    store.save_alert({**alert("al_1"), "event_count": 1}, notify=True)
    store.save_alert({**alert("al_2"), "event_count": 1}, notify=False)
    store.commit()
    store.save_alert({**alert("al_1"), "event_count": 2}, notify=False)
    store.save_alert({**alert("al_2"), "event_count": 2}, notify=True)
    store.save_alert({**alert("al_3"), "event_count": 1}, notify=True)
    store.save_alert({**alert("al_3"), "event_count": 2}, notify=False)  # same commit
    store.commit()
    found = {a["alert_id"]: a for a in store.alerts()}
    assert {k: (a["event_count"], a["_notify"]) for k, a in found.items()} == {
        "al_1": (2, True),
        "al_2": (2, True),
        "al_3": (2, True),
    }
    store.save_alert({**alert("al_4"), "event_count": 1}, notify=False)
    store.commit()
    assert {a["alert_id"]: a["_notify"] for a in store.alerts()}["al_4"] is False


def test_meta_keeps_the_last_value_and_survives(backend):
    store = backend.open()
    assert store.get_meta("watermark") is None
    store.set_meta("watermark", "2026-05-07T10:00:00.000000Z")
    store.commit()
    store.set_meta("watermark", "2026-05-07T11:00:00.000000Z")
    store.set_meta("status", {"activities": 3, "errors": []})
    assert store.get_meta("watermark") == "2026-05-07T11:00:00.000000Z"
    reopened = backend.reopen(store)
    assert reopened.get_meta("watermark") == "2026-05-07T11:00:00.000000Z"
    assert reopened.get_meta("status") == {"activities": 3, "errors": []}


def test_a_threshold_counter_split_across_two_pipelines_fires_once(
    backend, rules_dir, make_activity
):
    rules_dir.write("threshold.yml", THRESHOLD_RULE)
    raws = [make_activity("login_failed", created_at=at(minutes=m)) for m in (0, 2, 4, 6)]
    store = backend.open()
    before = run_pipeline(rules_dir.load(), raws[:2], store=store, finish=False)
    assert before.changes == []
    store = backend.reopen(store)
    after = run_pipeline(rules_dir.load(), raws[2:], store=store, finish=False)
    assert [c.change for c in after.changes] == ["opened", "joined"]
    opened = after.opened[0]
    assert opened.opened_at == moment(minutes=4)
    assert opened.event_count == 3
    assert [e["id"] for e in opened.events] == ["activity_0001", "activity_0002", "activity_0003"]
    store = backend.reopen(store)
    (outboxed,) = list(store.alerts())
    assert outboxed["alert_id"] == opened.alert_id
    assert outboxed["event_count"] == 4
    assert outboxed["_notify"] is True


DEDUP_RULE = """
id: t.dedup
name: Login seen
severity: high
match:
  type: login
dedup:
  key: "{actor.user_id}"
  window: 1h
"""


def test_an_open_alert_survives_a_restart(backend, rules_dir, make_activity):
    rules_dir.write("dedup.yml", DEDUP_RULE)
    store = backend.open()
    first = run_pipeline(rules_dir.load(), [make_activity(created_at=at(0))], store, finish=False)
    assert [c.change for c in first.changes] == ["opened"]
    store = backend.reopen(store)
    later = [make_activity(created_at=at(minutes=30)), make_activity(created_at=at(minutes=61))]
    second = run_pipeline(rules_dir.load(), later, store)
    # the restart joined the open alert, then closed it and opened a new one at 11:01
    assert [(c.change, c.alert.alert_id == first.opened[0].alert_id) for c in second.changes] == [
        ("joined", True),
        ("closed", True),
        ("opened", False),
        ("closed", False),
    ]
    assert second.final[0]["event_count"] == 2
    assert second.final[1]["event_count"] == 1


@pytest.mark.parametrize("minutes", [[0, 1, 2, 3, 30, 31, 32, 90]])
def test_every_backend_gives_the_same_alerts(backend, rules_dir, make_activity, minutes):
    rules_dir.write("threshold.yml", THRESHOLD_RULE)
    rules_dir.write("dedup.yml", DEDUP_RULE)
    raws = [
        make_activity(kind, created_at=at(minutes=m))
        for m in minutes
        for kind in ("login_failed", "login")
    ]
    reference = run_pipeline(rules_dir.load(), raws).final
    store = backend.open()
    assert run_pipeline(rules_dir.load(), raws, store=store).final == reference
