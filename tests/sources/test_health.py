"""Source health: silence and failing-polling alerts fire once per episode, survive
restarts without a second notification, and clear in the log."""

from __future__ import annotations

import logging
from datetime import timedelta

from engine.durations import describe
from engine.runs.live import build_runner
from engine.state.sqlite import SqliteStore
from engine.tools.mock_api import Faults

from .conftest import FakeClock, activity, db_alerts, db_meta, end_of, feed, make_config


def run_once(config, ruleset, clock, changes):
    """One `detect run --once` as a fresh process would do it (new store, new runner)."""
    store = SqliteStore(config.state.path)
    runner = build_runner(
        config, ruleset, store, sinks=[changes.append], clock=clock, sleep=clock.sleep
    )
    code = runner.run(once=True)
    store.close()
    return code


def health_alerts(config):
    return {k: v for k, v in db_alerts(config.state.path).items() if v["kind"] == "source_health"}


def test_silence_fires_once_survives_restarts_and_clears_in_the_log(
    start_mock, ruleset, tmp_path, caplog
):
    items = feed(200, seed=8)
    clock = FakeClock(end_of(items) + timedelta(hours=25))
    mock = start_mock(items, clock=clock)
    config = make_config(tmp_path, mock.url, lookback="3d", silence_alert_after="24h")
    changes = []
    for _ in range(3):
        assert run_once(config, ruleset, clock, changes) == 0
        clock.advance(600)
    alerts = health_alerts(config)
    assert len(alerts) == 1
    (first,) = alerts
    assert alerts[first]["rule_id"] == "source_health.silence" and alerts[first]["notify"] == 1
    opened = [c.alert for c in changes if c.alert.kind == "source_health"]
    assert len(opened) == 1
    assert opened[0].title.startswith("No activity from the Compliance API for 1d 1h")
    assert opened[0].severity == "medium"
    assert opened[0].to_dict()["first_event_at"]  # ordered in the outbox by detection time

    mock.add(activity("activity_fresh", clock.datetime - timedelta(minutes=3)))
    with caplog.at_level(logging.INFO, logger="engine.sources.health"):
        assert run_once(config, ruleset, clock, changes) == 0
    assert "activity is flowing again" in caplog.text and first in caplog.text
    assert "silence" not in (db_meta(config.state.path, "source_health") or {})

    clock.advance(25 * 3600)
    assert run_once(config, ruleset, clock, changes) == 0
    assert len(health_alerts(config)) == 2  # a new episode, a new alert


def test_a_source_that_never_delivered_goes_silent_from_its_first_poll(
    start_mock, ruleset, tmp_path
):
    clock = FakeClock(end_of(feed(10)))
    mock = start_mock([], clock=clock)
    config = make_config(tmp_path, mock.url, silence_alert_after="2h")
    changes = []
    assert run_once(config, ruleset, clock, changes) == 0
    assert health_alerts(config) == {}
    clock.advance(2 * 3600)
    assert run_once(config, ruleset, clock, changes) == 0
    (alert,) = [c.alert for c in changes]
    assert "no activity at all since watching began" in alert.title


def test_polling_that_keeps_failing_alerts_once_then_clears(start_mock, ruleset, tmp_path, caplog):
    items = feed(100, seed=1)
    clock = FakeClock(end_of(items) + timedelta(minutes=5))
    mock = start_mock(items, clock=clock, faults=Faults(server_errors=1.0, seed=3))
    config = make_config(
        tmp_path, mock.url, lookback="2d", max_retries=0, failure_alert_after="15m"
    )
    changes = []
    for _ in range(3):  # failing for 0, 5 and 10 minutes: not yet
        assert run_once(config, ruleset, clock, changes) == 1
        clock.advance(300)
    assert health_alerts(config) == {}
    status = db_meta(config.state.path, "source")
    assert status["failing_since"] and status["last_error"]["status"] in (500, 502, 503, 529)
    for _ in range(3):  # 15, 20, 25 minutes: one alert
        assert run_once(config, ruleset, clock, changes) == 1
        clock.advance(300)
    alerts = health_alerts(config)
    assert len(alerts) == 1
    assert next(iter(alerts.values()))["rule_id"] == "source_health.polling_failed"
    (alert,) = [c.alert for c in changes]
    assert alert.title.startswith("Polling the Compliance API has failed for 15m")
    assert alert.severity == "high" and not alert.context["polling_stopped"]

    mock.faults.server_errors = 0.0
    with caplog.at_level(logging.INFO, logger="engine.sources.health"):
        assert run_once(config, ruleset, clock, changes) == 0
    assert "polling works again" in caplog.text
    assert db_meta(config.state.path, "source_health") == {}
    status = db_meta(config.state.path, "source")
    assert "failing_since" not in status and status["activities"] == 100


def test_describe_spans():
    assert describe(timedelta(days=1, hours=2, minutes=3)) == "1d 2h"
    assert describe(timedelta(minutes=4, seconds=10)) == "4m 10s"
    assert describe(timedelta(seconds=0)) == "0s"
