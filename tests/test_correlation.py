"""Dedup windows and thresholds, on event time (DESIGN §4, docs/architecture.md)."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime

import pytest

from engine.activity import parse_activity
from engine.pipeline import Pipeline
from engine.runs.replay import ReplayOptions, replay
from engine.state.store import MemoryStore
from tests.conftest import at, moment, run_pipeline, write_jsonl

DEDUP_RULE = """
id: t.dedup
name: Login seen
severity: high
match:
  type: login
title: "Login by {actor.user_id}"
dedup:
  key: "{actor.user_id}"
  window: 1h
"""

THRESHOLD_RULE = """
id: t.threshold
name: Repeated failures
severity: medium
match:
  type: login_failed
dedup:
  key: "{organization_id}"
  window: 1h
threshold:
  count: 3
  window: 10m
"""

DISTINCT_RULE = """
id: t.distinct
name: Password spraying
severity: high
match:
  type: login_failed
dedup:
  key: "{organization_id}"
threshold:
  count: 5
  window: 10m
  distinct: actor.user_id
"""


def user(user_id: str) -> dict:
    return {"type": "user_actor", "user_id": user_id, "email_address": f"{user_id}@example.com"}


@pytest.fixture
def dedup_rules(rules_dir):
    rules_dir.write("dedup.yml", DEDUP_RULE)
    return rules_dir.load()


@pytest.fixture
def threshold_rules(rules_dir):
    rules_dir.write("threshold.yml", THRESHOLD_RULE)
    return rules_dir.load()


def summary(final: list[dict]) -> list[tuple]:
    return [
        (a["dedup_key"], a["event_count"], a["first_event_at"], a["last_event_at"]) for a in final
    ]


# -- dedup -----------------------------------------------------------------------------


def test_second_match_inside_the_window_joins(dedup_rules, make_activity):
    run = run_pipeline(
        dedup_rules,
        [make_activity(created_at=at(0)), make_activity(created_at=at(minutes=30))],
    )
    assert len(run.opened) == 1
    assert summary(run.final) == [
        ("user_01", 2, "2026-05-07T10:00:00.000000Z", "2026-05-07T10:30:00.000000Z")
    ]
    assert [c.change for c in run.changes] == ["opened", "joined", "closed"]


def test_a_match_exactly_at_opening_plus_window_opens_a_new_alert(dedup_rules, make_activity):
    run = run_pipeline(
        dedup_rules,
        [make_activity(created_at=at(0)), make_activity(created_at=at(hours=1))],
    )
    assert len(run.opened) == 2
    assert summary(run.final) == [
        ("user_01", 1, "2026-05-07T10:00:00.000000Z", "2026-05-07T10:00:00.000000Z"),
        ("user_01", 1, "2026-05-07T11:00:00.000000Z", "2026-05-07T11:00:00.000000Z"),
    ]
    assert run.final[0]["alert_id"] != run.final[1]["alert_id"]


def test_a_match_one_microsecond_before_the_window_end_joins(dedup_rules, make_activity):
    run = run_pipeline(
        dedup_rules,
        [
            make_activity(created_at=at(0)),
            make_activity(created_at="2026-05-07T10:59:59.999999Z"),
        ],
    )
    assert summary(run.final) == [
        ("user_01", 2, "2026-05-07T10:00:00.000000Z", "2026-05-07T10:59:59.999999Z")
    ]


def test_the_window_is_measured_from_the_opening_not_the_last_join(dedup_rules, make_activity):
    times = [at(0), at(minutes=50), at(minutes=70)]
    run = run_pipeline(dedup_rules, [make_activity(created_at=t) for t in times])
    assert [(k, n) for k, n, _, _ in summary(run.final)] == [("user_01", 2), ("user_01", 1)]


def test_two_dedup_keys_interleaved_stay_separate(dedup_rules, make_activity):
    raws = [
        make_activity(created_at=at(minutes=0), actor=user("alice")),
        make_activity(created_at=at(minutes=1), actor=user("bob")),
        make_activity(created_at=at(minutes=2), actor=user("alice")),
        make_activity(created_at=at(minutes=3), actor=user("bob")),
        make_activity(created_at=at(minutes=4), actor=user("alice")),
        make_activity(created_at=at(minutes=61), actor=user("alice")),
    ]
    run = run_pipeline(dedup_rules, raws)
    assert [a.dedup_key for a in run.opened] == ["alice", "bob", "alice"]
    by_key = sorted((a["dedup_key"], a["event_count"], a["first_event_at"]) for a in run.final)
    assert by_key == [
        ("alice", 1, "2026-05-07T11:01:00.000000Z"),
        ("alice", 3, "2026-05-07T10:00:00.000000Z"),
        ("bob", 2, "2026-05-07T10:01:00.000000Z"),
    ]
    bob = next(a for a in run.final if a["dedup_key"] == "bob")
    assert [e["id"] for e in bob["events"]] == ["activity_0002", "activity_0004"]
    assert bob["title"] == "Login by bob"


def test_a_late_activity_before_the_opening_joins_the_open_alert(dedup_rules, make_activity):
    raws = [make_activity(created_at=at(minutes=10)), make_activity(created_at=at(minutes=5))]
    run = run_pipeline(dedup_rules, raws)
    assert len(run.opened) == 1
    assert summary(run.final) == [
        ("user_01", 2, "2026-05-07T10:05:00.000000Z", "2026-05-07T10:10:00.000000Z")
    ]


def test_out_of_order_input_through_the_reorder_buffer_equals_sorted_input(
    dedup_rules, make_activity, tmp_path
):
    people = ["alice", "bob", "carol"]
    raws = [
        make_activity(created_at=at(minutes=7 * i), actor=user(people[i % 3])) for i in range(30)
    ]
    shuffled = list(raws)
    random.Random(7).shuffle(shuffled)
    assert shuffled != raws
    outputs = []
    for name, ordering in (("sorted.jsonl", raws), ("shuffled.jsonl", shuffled)):
        out = io.StringIO()
        stats = replay(
            [str(write_jsonl(tmp_path / name, ordering))],
            dedup_rules,
            ReplayOptions(format="jsonl", quarantine=None),
            out=out,
            err=io.StringIO(),
        )
        assert stats.activities == 30
        outputs.append([json.loads(line) for line in out.getvalue().splitlines()])
    in_order, reordered = outputs
    assert reordered == in_order
    # each user logs in every 21 minutes over 3h23m: alerts open at 0, 63, 126, 189 min
    counts = sorted((a["dedup_key"], a["first_event_at"], a["event_count"]) for a in in_order)
    assert [c for c in counts if c[0] == "alice"] == [
        ("alice", "2026-05-07T10:00:00.000000Z", 3),
        ("alice", "2026-05-07T11:03:00.000000Z", 3),
        ("alice", "2026-05-07T12:06:00.000000Z", 3),
        ("alice", "2026-05-07T13:09:00.000000Z", 1),
    ]
    assert len(in_order) == 12


# -- threshold -------------------------------------------------------------------------


def failures(make_activity, minutes, actor=None, **fields):
    return [
        make_activity("login_failed", created_at=at(minutes=m), actor=actor, **fields)
        for m in minutes
    ]


def test_count_reached_exactly_at_window_end_does_not_fire(threshold_rules, make_activity):
    run = run_pipeline(threshold_rules, failures(make_activity, [0, 5, 10]))
    assert run.opened == []
    assert run.final == []
    assert run.stats.matches == 3


def test_count_reached_just_inside_the_window_fires(threshold_rules, make_activity):
    last = make_activity("login_failed", created_at="2026-05-07T10:09:59.999999Z")
    raws = [*failures(make_activity, [0, 5]), last]
    run = run_pipeline(threshold_rules, raws)
    assert len(run.opened) == 1
    assert run.final[0]["event_count"] == 3


def test_count_inside_the_window_fires_once_with_the_counted_events_first(
    threshold_rules, make_activity
):
    raws = failures(make_activity, [0, 1, 2, 3, 4])
    run = run_pipeline(threshold_rules, raws)
    assert len(run.opened) == 1
    opened = run.opened[0]
    # at opening: exactly the counted activities, oldest first
    assert opened.event_count == 3
    assert opened.events == raws[:3]
    assert opened.opened_at == moment(minutes=2)
    (final,) = run.final
    assert final["event_count"] == 5
    assert final["events"] == raws
    assert final["first_event_at"] == "2026-05-07T10:00:00.000000Z"
    assert final["last_event_at"] == "2026-05-07T10:04:00.000000Z"


def test_exactly_count_events_make_an_alert_of_count_events(threshold_rules, make_activity):
    raws = failures(make_activity, [0, 4, 8])
    run = run_pipeline(threshold_rules, raws)
    (final,) = run.final
    assert final["event_count"] == 3
    assert [e["id"] for e in final["events"]] == [r["id"] for r in raws]


def test_continued_activity_joins_then_opens_a_new_alert_after_the_dedup_window(
    threshold_rules, make_activity
):
    raws = failures(make_activity, range(90))  # one failure a minute for 90 minutes
    run = run_pipeline(threshold_rules, raws)
    assert [a.opened_at for a in run.opened] == [moment(minutes=2), moment(minutes=62)]
    first, second = run.final
    # 3 counted + the 59 of minutes 3..61 that joined
    assert first["event_count"] == 62
    assert first["last_event_at"] == "2026-05-07T11:01:00.000000Z"
    assert second["last_event_at"] == "2026-05-07T11:29:00.000000Z"
    assert first["alert_id"] != second["alert_id"]


def test_counters_are_kept_per_dedup_key(threshold_rules, make_activity):
    raws = failures(make_activity, [0, 1], organization_id="org_a") + failures(
        make_activity, [2, 3], organization_id="org_b"
    )
    assert run_pipeline(threshold_rules, raws).opened == []
    more = failures(make_activity, [4], organization_id="org_b")
    run = run_pipeline(threshold_rules, raws + more)
    assert [a.dedup_key for a in run.opened] == ["org_b"]


def test_late_events_are_still_counted(threshold_rules, make_activity):
    raws = failures(make_activity, [5, 6]) + failures(make_activity, [1])  # the last is late
    run = run_pipeline(threshold_rules, raws)
    assert len(run.opened) == 1
    (final,) = run.final
    assert final["event_count"] == 3
    assert final["first_event_at"] == "2026-05-07T10:01:00.000000Z"
    assert final["last_event_at"] == "2026-05-07T10:06:00.000000Z"


def test_a_late_event_older_than_the_window_is_not_counted(threshold_rules, make_activity):
    raws = failures(make_activity, [20, 21]) + failures(make_activity, [5])
    run = run_pipeline(threshold_rules, raws)
    assert run.opened == []


def test_distinct_counts_values_not_events(rules_dir, make_activity):
    rules_dir.write("distinct.yml", DISTINCT_RULE)
    ruleset = rules_dir.load()
    one_user = failures(make_activity, [0, 1, 2, 3, 4], actor=user("alice"))
    assert run_pipeline(ruleset, one_user).opened == []

    four_users = [
        make_activity("login_failed", created_at=at(minutes=m), actor=user(name))
        for m, name in enumerate(["u1", "u2", "u1", "u3", "u4", "u2", "u3"])
    ]
    assert run_pipeline(ruleset, four_users).opened == []

    five_users = [
        make_activity("login_failed", created_at=at(minutes=m), actor=user(f"u{m}"))
        for m in range(5)
    ]
    run = run_pipeline(ruleset, five_users)
    assert len(run.opened) == 1
    assert run.opened[0].opened_at == moment(minutes=4)
    (final,) = run.final
    assert final["event_count"] == 5
    assert final["indicators"]["actor_ids"] == ["u0", "u1", "u2", "u3", "u4"]


def test_distinct_values_must_fall_inside_one_window(rules_dir, make_activity):
    rules_dir.write("distinct.yml", DISTINCT_RULE)
    ruleset = rules_dir.load()
    spread = [
        make_activity("login_failed", created_at=at(minutes=m * 3), actor=user(f"u{m}"))
        for m in range(5)
    ]  # 0, 3, 6, 9, 12 minutes: never five within ten
    assert run_pipeline(ruleset, spread).opened == []


def test_a_late_activity_after_a_closed_window_joins_the_keys_current_alert(
    dedup_rules, make_activity
):
    raws = [
        make_activity(created_at=at(minutes=0)),
        make_activity(created_at=at(minutes=70)),  # closes the first alert, opens a second
        make_activity(created_at=at(minutes=30)),  # late: the first window stays closed
    ]
    run = run_pipeline(dedup_rules, raws)
    assert [c.change for c in run.changes] == ["opened", "closed", "opened", "joined", "closed"]
    assert summary(run.final) == [
        ("user_01", 1, "2026-05-07T10:00:00.000000Z", "2026-05-07T10:00:00.000000Z"),
        ("user_01", 2, "2026-05-07T10:30:00.000000Z", "2026-05-07T11:10:00.000000Z"),
    ]


def test_a_large_threshold_counts_every_activity_and_keeps_ten_samples(rules_dir, make_activity):
    rules_dir.write(
        "big.yml",
        THRESHOLD_RULE.replace("count: 3", "count: 40").replace("t.threshold", "t.big"),
    )
    raws = failures(make_activity, [m / 10 for m in range(45)])
    run = run_pipeline(rules_dir.load(), raws)
    (opened,) = run.opened
    assert opened.event_count == 40
    assert len(opened.events) == 10
    assert opened.events[:10] == raws[:10]  # the window's first activities
    (final,) = run.final
    assert final["event_count"] == 45
    assert final["first_event_at"] == "2026-05-07T10:00:00.000000Z"
    assert final["last_event_at"] == "2026-05-07T10:04:24.000000Z"


# -- new values ------------------------------------------------------------------------

NEW_ADDRESS_RULE = """
id: t.new_address
name: New address
severity: medium
match:
  type: login
new_value:
  of: actor.ip_address
  per: actor.user_id
  forget: 10d
  learn_from: all
"""


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, namespace, key):
        self.reads += 1
        return super().get(namespace, key)


def test_a_value_seen_lately_is_judged_without_reading_the_store(rules_dir, make_activity):
    rules_dir.write("new.yml", NEW_ADDRESS_RULE)
    office = {"type": "user_actor", "user_id": "u1", "ip_address": "192.0.2.1"}
    home = {**office, "ip_address": "198.51.100.7"}
    views = [
        make_activity("chat_viewed", created_at=at(minutes=m), actor=office) for m in range(200)
    ]
    # Hours on, the office address again (silent), then a new one (an alert); nine days
    # on the home address is still known; twelve days on, the office address, unseen for
    # more than `forget` while home stayed known, is new again.
    later = [
        make_activity("login", created_at=at(minutes=320), actor=office),
        make_activity("login", created_at=at(minutes=321), actor=home),
        make_activity("login", created_at=at(hours=9 * 24), actor=home),
        make_activity("login", created_at=at(hours=12 * 24), actor=office),
    ]
    store = CountingStore()
    run = run_pipeline(rules_dir.load(), views + later, store=store)
    assert [a.events[0]["actor"]["ip_address"] for a in run.opened] == [
        "198.51.100.7",
        "192.0.2.1",
    ]
    assert store.reads < 20  # not one per activity


def test_threshold_samples_read_from_lines_are_the_activities_verbatim(
    threshold_rules, make_activity, tmp_path
):
    raws = failures(make_activity, [0, 1, 2, 3])
    raws[1]["nested"] = {"b": [1, 2.5, None, True], "a": "é"}
    path = tmp_path / "feed.jsonl"
    # Lines as another writer might print them: spaced, keys in another order, CRLF.
    path.write_text(
        "".join(json.dumps(dict(reversed(r.items())), indent=None) + " \r\n" for r in raws),
        encoding="utf-8",
    )
    out = io.StringIO()
    replay(
        [str(path)],
        threshold_rules,
        ReplayOptions(format="jsonl", quarantine=None),
        out=out,
        err=io.StringIO(),
    )
    (alert,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert alert["events"] == raws
    assert alert["event_count"] == 4


PER_USER_THRESHOLD = """
id: t.per_user
name: Busy account
severity: medium
match:
  type: login_failed
dedup:
  key: "{actor.user_id}"
threshold:
  count: 5
  window: 10m
"""


def test_over_the_sample_cap_idle_windows_lose_their_samples_first(
    rules_dir, make_activity, monkeypatch
):
    monkeypatch.setattr("engine.correlation.correlator.MAX_HELD_SAMPLES", 30)
    rules_dir.write("per_user.yml", PER_USER_THRESHOLD)
    raws = []
    for minute in range(5):
        raws.append(make_activity("login_failed", created_at=at(minutes=minute), actor=user("x")))
        # Twenty people fail once each in that minute and are not heard from again.
        raws += [
            make_activity(
                "login_failed", created_at=at(minutes=minute, seconds=n + 1), actor=user(f"u{n}")
            )
            for n in range(minute * 20, minute * 20 + 20)
        ]
    run = run_pipeline(rules_dir.load(), raws)
    (alert,) = run.opened
    assert alert.dedup_key == "x"
    assert [e["actor"]["user_id"] for e in alert.events] == ["x"] * 5
    assert alert.events == [r for r in raws if r["actor"]["user_id"] == "x"]


def test_windows_that_slid_out_leave_memory_and_count_afresh(
    threshold_rules, make_activity, monkeypatch
):
    monkeypatch.setattr("engine.correlation.correlator.SWEEP_ABOVE", 0)
    changes: list = []
    pipeline = Pipeline(threshold_rules, MemoryStore(), [changes.append], commit_every=1)
    pipeline.run(parse_activity(raw) for raw in failures(make_activity, [0, 1]))
    assert len(pipeline.correlator._windows) == 1
    pipeline.process(parse_activity(make_activity("login", created_at=at(minutes=20))))
    assert pipeline.correlator._windows == {}  # swept: ten minutes past its newest entry
    pipeline.run(parse_activity(raw) for raw in failures(make_activity, [21, 22]))
    assert changes == []  # the two early failures are not counted again
    pipeline.run(parse_activity(raw) for raw in failures(make_activity, [23]))
    pipeline.finish()
    (opened,) = [c.alert for c in changes if c.change == "opened"]
    assert opened.event_count == 3
    assert opened.opened_at == moment(minutes=23)


def test_windows_left_behind_lose_their_samples_before_a_live_one(
    rules_dir, make_activity, monkeypatch
):
    monkeypatch.setattr("engine.correlation.correlator.MAX_HELD_SAMPLES", 40)
    rules_dir.write("per_user.yml", PER_USER_THRESHOLD)
    # Nine people reach 4 of 5 failures, then go quiet; a day later `x` reaches 5 among
    # one-off failures of others.
    raws = [
        make_activity("login_failed", created_at=at(minutes=m, seconds=n), actor=user(f"p{n}"))
        for n in range(9)
        for m in range(4)
    ]
    day = 24 * 60
    for minute in range(5):
        raws.append(
            make_activity("login_failed", created_at=at(minutes=day + minute), actor=user("x"))
        )
        raws += [
            make_activity(
                "login_failed",
                created_at=at(minutes=day + minute, seconds=n + 1),
                actor=user(f"u{minute}_{n}"),
            )
            for n in range(8)
        ]
    run = run_pipeline(rules_dir.load(), raws)
    (alert,) = run.opened
    assert alert.events == [r for r in raws if r["actor"]["user_id"] == "x"]


def test_two_thresholds_counting_one_activity_each_keep_their_sample(rules_dir, make_activity):
    rules_dir.write("per_user.yml", PER_USER_THRESHOLD)
    rules_dir.write(
        "short.yml",
        PER_USER_THRESHOLD.replace("t.per_user", "t.short").replace("window: 10m", "window: 2m"),
    )
    # The short window slides past the first failures (dropping its samples of them)
    # while the long one still counts them.
    raws = failures(make_activity, [0, 3, 6, 7, 8], actor=user("x"))
    run = run_pipeline(rules_dir.load(), raws)
    (alert,) = [a for a in run.opened if a.rule_id == "t.per_user"]
    assert alert.events == raws


def test_held_samples_stay_consistent_with_the_windows_under_pressure(
    rules_dir, make_activity, monkeypatch
):
    monkeypatch.setattr("engine.correlation.correlator.MAX_HELD_SAMPLES", 25)
    rules_dir.write("per_user.yml", PER_USER_THRESHOLD)
    rng = random.Random(4)
    raws = [
        make_activity(
            "login_failed", created_at=at(seconds=n * 7), actor=user(f"u{rng.randrange(30)}")
        )
        for n in range(600)
    ]
    pipeline = Pipeline(rules_dir.load(), MemoryStore(), [])
    for raw in raws:
        pipeline.process(parse_activity(raw))
        correlator = pipeline.correlator
        named = set()
        for key, window in correlator._windows.items():
            names = [e[2] for e in window.live() if e[2] is not None]
            assert window.held == len(names)
            if names:
                assert key in correlator._sampled
            named.update(names)
        assert set(correlator._samples) <= named
        assert len(correlator._samples) <= 25


@pytest.mark.parametrize("seed", range(4))
def test_the_seen_lately_memo_never_changes_an_answer(rules_dir, make_activity, seed):
    """The same random stream (late activities, a short `forget`) with the memo and
    without it: the same new-value alerts."""
    rules_dir.write("new.yml", NEW_ADDRESS_RULE.replace("forget: 10d", "forget: 2h"))
    rng = random.Random(seed)
    raws = []
    for n in range(800):
        minute = n * 1.5 - (rng.choice([0, 0, 0, 30, 200]) if n > 100 else 0)
        actor = {
            "type": "user_actor",
            "user_id": f"u{rng.randrange(3)}",
            "ip_address": f"192.0.2.{rng.randrange(4)}",
        }
        kind = rng.choice(["login", "chat_viewed", "chat_viewed"])
        raws.append(make_activity(kind, created_at=at(minutes=minute), actor=actor))

    def opened(ruleset):
        run = run_pipeline(ruleset, raws)
        return [(a.alert_id, a.event_count) for a in run.opened]

    with_memo = opened(rules_dir.load())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("engine.correlation.correlator.Correlator._note_seen_lately", lambda *a: None)
        without_memo = opened(rules_dir.load())
    assert with_memo == without_memo
    assert with_memo  # the stream does raise some


def test_a_value_the_store_forgot_is_forgotten_by_the_memo_too(rules_dir, make_activity):
    rules_dir.write("new.yml", NEW_ADDRESS_RULE.replace("forget: 10d", "forget: 2h"))
    a = {"type": "user_actor", "user_id": "u1", "ip_address": "192.0.2.1"}
    b = {**a, "ip_address": "192.0.2.2"}
    raws = [
        make_activity("chat_viewed", created_at=at(0), actor=a),
        # Two hours on, B: A is forgotten (B is learned silently, a new baseline).
        make_activity("chat_viewed", created_at=at(hours=2, seconds=1), actor=b),
        # Late: A, seconds after its first sighting, judged against what the store holds.
        make_activity("login", created_at=at(30), actor=a),
    ]

    def opened():
        run = run_pipeline(rules_dir.load(), raws)
        return [alert.events[0]["actor"]["ip_address"] for alert in run.opened]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("engine.correlation.correlator.Correlator._note_seen_lately", lambda *a: None)
        without_memo = opened()
    assert opened() == without_memo == ["192.0.2.1"]


def test_the_watermark_of_the_last_microsecond_of_year_9999_is_that_moment():
    from engine.correlation.correlator import Correlator

    correlator = Correlator(MemoryStore())
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    correlator.advance(last.timestamp())
    assert correlator.watermark == last
