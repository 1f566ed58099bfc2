"""`detect run`'s loop end to end: mock API over loopback, real rules, a real SQLite file."""

from __future__ import annotations

import io
import logging
from collections import Counter
from datetime import timedelta

import pytest

from engine.runs.live import Progress, build_runner
from engine.runs.replay import Quarantine
from engine.state.sqlite import SqliteStore
from engine.tools.mock_api import Faults, ScriptedResponse

from .conftest import (
    FakeClock,
    activity,
    db_alerts,
    db_meta,
    end_of,
    feed,
    make_config,
    replay_alerts,
    spaced,
    start_of,
)


def counts(alerts):
    return {alert_id: row["event_count"] for alert_id, row in alerts.items()}


def test_20k_activities_through_429s_5xx_and_duplicates_give_exactly_replays_alerts(
    start_mock, ruleset, tmp_path
):
    items = feed(20_000, seed=3)
    clock = FakeClock(end_of(items) + timedelta(minutes=5))
    mock = start_mock(
        items,
        clock=clock,
        faults=Faults(rate_limit=0.05, retry_after=2, server_errors=0.05, duplicates=0.05, seed=11),
    )
    config = make_config(
        tmp_path,
        mock.url,
        lookback="2d",
        page_size=500,
        max_requests_per_minute=300,
        max_retries=8,
    )
    store = SqliteStore(config.state.path)
    runner = build_runner(config, ruleset, store, clock=clock, sleep=clock.sleep)
    assert runner.run(once=True) == 0
    store.close()

    expected = replay_alerts(items, ruleset, tmp_path)
    assert len(expected) > 20
    assert counts(db_alerts(config.state.path)) == expected
    status = db_meta(config.state.path, "source")
    assert status["activities"] == 20_000
    assert status["duplicates"] > 0 and status["rejected"] == 0
    seen = Counter(r.status for r in mock.requests)
    assert seen[429] > 0 and sum(seen[s] for s in (500, 502, 503, 529)) > 0
    assert clock.sleeps.count(2.0) == seen[429]  # every 429 waited its retry-after
    times = sorted(r.at for r in mock.requests)
    for i, start in enumerate(times):  # the budget held through every retry
        assert sum(1 for t in times[i : i + 301] if t < start + 60) <= 300


class Crash(Exception):
    """The process dies here: nothing after this point happens, nothing pending is kept."""


def crashing_run(config, ruleset, clock, where, after):
    """Run until the `after`-th call of `where` (`process`: mid-page; `stage`: a page fully
    evaluated and staged, not yet committed), then die without committing."""
    store = SqliteStore(config.state.path)
    runner = build_runner(config, ruleset, store, clock=clock, sleep=clock.sleep)
    target = runner.pipeline if where == "process" else runner.poller
    original = getattr(target, where)
    calls = 0

    def dying(*args):
        nonlocal calls
        calls += 1
        if where == "stage":
            original(*args)
        if calls == after:
            raise Crash
        if where == "process":
            original(*args)

    setattr(target, where, dying)
    with pytest.raises(Crash):
        runner.run(once=True)
    # The process dies: its files close and its lock goes, and nothing more is written
    # (closing the store would commit the half page).
    store._db.close()
    store._lock.close()
    return store


def test_crashes_between_evaluation_and_commit_lose_nothing_and_double_nothing(
    start_mock, ruleset, tmp_path
):
    items = feed(6000, seed=5)
    clock = FakeClock(end_of(items) + timedelta(minutes=5))
    mock = start_mock(items, clock=clock)
    clean_config = make_config(tmp_path / "clean", mock.url, lookback="2d", page_size=250)
    (tmp_path / "clean").mkdir()
    clean = SqliteStore(clean_config.state.path)
    assert (
        build_runner(clean_config, ruleset, clean, clock=clock, sleep=clock.sleep).run(once=True)
        == 0
    )
    clean.close()

    config = make_config(tmp_path, mock.url, lookback="2d", page_size=250)
    abandoned = []
    for where, after in [
        ("process", 1),
        ("process", 700),
        ("stage", 1),
        ("process", 2400),
        ("stage", 4),
        ("process", 250),
        ("stage", 9),
    ]:
        abandoned.append(crashing_run(config, ruleset, clock, where, after))
        clock.advance(30)
    store = SqliteStore(config.state.path)
    assert build_runner(config, ruleset, store, clock=clock, sleep=clock.sleep).run(once=True) == 0
    store.close()

    assert db_alerts(config.state.path) == db_alerts(clean_config.state.path)
    assert counts(db_alerts(config.state.path)) == replay_alerts(items, ruleset, tmp_path)
    assert db_meta(config.state.path, "source")["activities"] == 6000


def test_after_commit_hooks_run_after_each_commit_and_see_it(start_mock, ruleset, tmp_path):
    items = spaced(900, start_of(feed(10)), timedelta(seconds=4))
    clock = FakeClock(end_of(items) + timedelta(minutes=5))
    mock = start_mock(items, clock=clock)
    config = make_config(tmp_path, mock.url, lookback="1h", page_size=100)
    store = SqliteStore(config.state.path)
    runner = build_runner(config, ruleset, store, clock=clock, sleep=clock.sleep)
    seen = []
    runner.after_commit.append(
        lambda: seen.append(
            (db_meta(config.state.path, "checkpoint"), runner.poller.checkpoint.to_json())
        )
    )
    runner.after_commit.insert(0, lambda: 1 / 0)  # a broken hook does not stop polling
    assert runner.run(once=True) == 0
    assert len(seen) >= 10
    assert all(on_disk == in_memory for on_disk, in_memory in seen)
    store.close()


def test_the_loop_polls_every_interval_until_stopped(start_mock, ruleset, tmp_path):
    base = start_of(feed(10))
    items = spaced(2000, base, timedelta(seconds=3))
    clock = FakeClock(base + timedelta(minutes=30))
    mock = start_mock(items, clock=clock)  # activities appear as the clock reaches them
    config = make_config(tmp_path, mock.url, lookback="1h", poll_interval="60s")
    store = SqliteStore(config.state.path)
    runner = build_runner(config, ruleset, store, clock=clock)
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        clock.advance(seconds)
        if len(sleeps) == 10:
            runner.request_stop()

    runner._sleep = sleep
    assert runner.run() == 0
    assert sleeps == [60.0] * 10
    status = db_meta(config.state.path, "source")
    upper = clock.datetime - timedelta(seconds=120)  # the tenth pass ran before the last sleep
    assert status["activities"] == sum(
        1 for a in items if a["created_at"] < upper.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )
    store.close()


def test_a_revoked_key_stops_polling_with_one_alert(start_mock, ruleset, tmp_path, caplog):
    items = feed(300, seed=2)
    clock = FakeClock(end_of(items) + timedelta(minutes=5))
    mock = start_mock(items, clock=clock)
    config = make_config(tmp_path, mock.url, lookback="2d")
    changes = []

    def run(once=True):
        store = SqliteStore(config.state.path)
        runner = build_runner(
            config, ruleset, store, sinks=[changes.append], clock=clock, sleep=clock.sleep
        )
        code = runner.run(once=once)
        store.close()
        return code

    assert run() == 0
    mock.api_key = "rotated-by-someone"
    with caplog.at_level(logging.ERROR):
        assert run() == 1
    assert "polling stopped: authentication_error (HTTP 401)" in caplog.text
    assert run(once=False) == 1  # the loop stops too, without sleeping
    health = [a for a in db_alerts(config.state.path).values() if a["kind"] == "source_health"]
    assert len(health) == 1 and health[0]["notify"] == 1
    assert health[0]["rule_id"] == "source_health.polling_failed"
    opened = [c.alert for c in changes if c.alert.kind == "source_health"]
    assert len(opened) == 1
    assert opened[0].title == "Polling the Compliance API stopped: authentication_error"
    assert opened[0].context["request_id"].startswith("req_")
    status = db_meta(config.state.path, "source")
    assert status["last_error"]["error_type"] == "authentication_error"
    assert status["last_error"]["request_id"] == mock.requests[-1].request_id


def test_a_bad_key_on_first_setup_fails_without_an_alert(start_mock, ruleset, tmp_path):
    clock = FakeClock(end_of(feed(10)))
    mock = start_mock(feed(10), clock=clock, api_key="the-right-one")
    config = make_config(tmp_path, mock.url)
    store = SqliteStore(config.state.path)
    assert build_runner(config, ruleset, store, clock=clock, sleep=clock.sleep).run() == 1
    store.close()
    assert db_alerts(config.state.path) == {}


def test_a_long_backfill_shows_progress(start_mock, ruleset, tmp_path, caplog):
    items = feed(3000, seed=4)
    clock = FakeClock(end_of(items) + timedelta(minutes=5))
    mock = start_mock(items, clock=clock)
    config = make_config(tmp_path, mock.url, lookback="3h", page_size=200)
    bar = io.StringIO()
    store = SqliteStore(config.state.path)
    runner = build_runner(
        config,
        ruleset,
        store,
        clock=clock,
        sleep=clock.sleep,
        progress=Progress(bar, tty=True, clock=clock),
    )
    runner.run(once=True)
    store.close()
    assert "\rcatching up [" in bar.getvalue() and "100%" in bar.getvalue()
    assert bar.getvalue().endswith("\n")
    store = SqliteStore(tmp_path / "second.db")
    config.state.path = tmp_path / "second.db"
    runner = build_runner(
        config,
        ruleset,
        store,
        clock=clock,
        sleep=clock.sleep,
        progress=Progress(io.StringIO(), tty=False, clock=clock, interval=0),
    )
    with caplog.at_level(logging.INFO, logger="engine.runs.live"):
        runner.run(once=True)
    store.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("catching up")]
    assert len(lines) >= 5 and "100%" in lines[-1]


def test_rejected_activities_are_quarantined_once(start_mock, ruleset, tmp_path):
    items = feed(200, seed=6)
    broken = activity("activity_broken", end_of(items) - timedelta(minutes=1))
    broken["actor"] = "not an object"
    clock = FakeClock(end_of(items) + timedelta(minutes=5))
    mock = start_mock([*items, broken], clock=clock)
    config = make_config(tmp_path, mock.url, lookback="2d")
    for _ in range(3):
        store = SqliteStore(config.state.path)
        quarantine = Quarantine(config.quarantine, io.StringIO())
        runner = build_runner(
            config, ruleset, store, on_rejected=quarantine, clock=clock, sleep=clock.sleep
        )
        assert runner.run(once=True) == 0
        quarantine.close()
        store.close()
        clock.advance(60)
    lines = config.quarantine.read_text().splitlines()
    assert len(lines) == 1 and "activity_broken" in lines[0]
    status = db_meta(config.state.path, "source")
    assert (status["activities"], status["rejected"]) == (200, 1)


def test_a_stop_during_a_backoff_ends_the_run_without_recording_a_failure(
    start_mock, ruleset, tmp_path
):
    items = feed(100, seed=1)
    clock = FakeClock(end_of(items) + timedelta(minutes=5))
    mock = start_mock(items, clock=clock)
    config = make_config(tmp_path, mock.url, lookback="2d")
    store = SqliteStore(config.state.path)

    def sleep(seconds):
        clock.sleep(seconds)
        runner.request_stop()

    runner = build_runner(config, ruleset, store, clock=clock, sleep=sleep)
    mock.script(ScriptedResponse(503))
    assert runner.run() == 0
    store.close()
    assert len(mock.requests) == 1
    status = db_meta(config.state.path, "source") or {}  # nothing was committed at all
    assert "last_error" not in status and "failing_since" not in status
