"""PagerDuty Events API v2: trigger with dedup_key = alert id, severities, resolve on
close, the routing key kept out of the state database and every message."""

from __future__ import annotations

import sqlite3

import pytest
from pydantic import ValidationError

from tests.delivery.conftest import Request, grow, make_alert, save_alerts
from tests.delivery.destinations import (
    LONG,
    answer_json,
    deliveries,
    destination,
    hostile_alert,
    pagerduty_problem,
    run,
    strings,
)

KEY = "R0UTINGKEY0123456789abcdefABCDEF"


def pagerduty_like(request: Request):
    problem = pagerduty_problem(request, KEY)
    if problem:
        return answer_json(
            400,
            {"status": "invalid event", "message": "Event object is invalid", "errors": [problem]},
        )
    key = request.json().get("dedup_key")
    return answer_json(202, {"status": "success", "message": "Event processed", "dedup_key": key})


def pd(url: str, **options):
    return destination("pagerduty", url=url, routing_key=KEY, **options)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("critical", "critical"),
        ("high", "error"),
        ("medium", "warning"),
        ("low", "info"),
        ("info", "info"),
    ],
)
def test_trigger_matches_the_events_v2_schema(db, clock, receivers, severity, expected):
    hook = receivers(pagerduty_like)
    alert = make_alert(1, severity=severity, reference="https://example.com/rb")
    save_alerts(db, [alert])
    assert run(db, clock, {"pd": pd(hook.url)}).sent == 1
    (request,) = hook.requests
    event = request.json()
    assert list(event)[:2] == ["routing_key", "event_action"]
    assert event["event_action"] == "trigger" and event["dedup_key"] == alert.alert_id
    payload = event["payload"]
    assert payload["severity"] == expected
    assert payload["summary"] == alert.title
    assert payload["source"] == "org_01ABC" and payload["component"] == alert.rule_id
    assert payload["timestamp"] == "2026-05-07T10:00:01.000000Z"
    assert payload["custom_details"]["Actor"] == "ana1@example.com"
    assert payload["custom_details"]["First steps"] == [
        "1. Ask the admin why.",
        "2. Turn it back on.",
    ]
    assert event["links"] == [{"href": alert.reference, "text": "Rule reference"}]


def test_the_routing_key_is_never_stored_or_reported(db, clock, receivers):
    hook = receivers(lambda r: (400, f"bad key {KEY}", {}))
    save_alerts(db, [make_alert(1)])
    run(db, clock, {"pd": pd(hook.url)})
    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    assert KEY not in dump
    (row,) = deliveries(db)
    assert row[3] == "dead" and KEY not in row[4] and "[redacted]" in row[4]


def test_resolve_on_close_sends_resolve_with_the_same_dedup_key(db, clock, receivers):
    hook = receivers(pagerduty_like)
    alert, quiet = make_alert(1), make_alert(2)
    save_alerts(db, [alert, quiet])
    config = pd(hook.url, resolve_on_close=True)
    run(db, clock, {"pd": config})
    grow(db, alert, 3, watermark="2026-05-07T12:00:00.000000Z")
    run(db, clock, {"pd": config})
    events = [r.json() for r in hook.requests]
    resolves = [e for e in events if e["event_action"] == "resolve"]
    # Both closed (grown or not): each is resolved, under its trigger's dedup_key.
    assert sorted(e["dedup_key"] for e in resolves) == sorted([alert.alert_id, quiet.alert_id])
    assert all(set(e) == {"routing_key", "event_action", "dedup_key"} for e in resolves)


def test_hostile_and_huge_values_stay_json_and_fit(db, clock, receivers):
    hook = receivers(pagerduty_like)
    save_alerts(db, [hostile_alert(1, title="T" * 5000)])
    assert run(db, clock, {"pd": pd(hook.url)}).sent == 1
    event = hook.requests[0].json()
    assert len(event["payload"]["summary"]) == 1024
    assert all(LONG not in s for s in strings(event))
    assert event["payload"]["custom_details"]["Context"]["name"] == "Zoë 😀 名前"


def test_429_without_retry_after_waits_30_seconds(db, clock, receivers):
    answers = iter([answer_json(429, {"status": "throttle"})])
    hook = receivers(lambda r: next(answers, None) or pagerduty_like(r))
    save_alerts(db, [make_alert(1)])
    assert run(db, clock, {"pd": pd(hook.url)}).sent == 1
    first, second = hook.requests
    assert second.at - first.at >= 30 and first.body == second.body


def test_config_needs_a_routing_key_and_keeps_it_secret():
    with pytest.raises(ValidationError, match="routing_key"):
        destination("pagerduty")
    config = destination("pagerduty", routing_key=KEY)
    assert config.url.get_secret_value() == "https://events.pagerduty.com/v2/enqueue"
    assert KEY not in repr(config)
    with pytest.raises(ValidationError, match="only used by type: pagerduty"):
        destination("slack", url="https://hooks.slack.com/x", routing_key=KEY)
