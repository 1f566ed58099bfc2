"""The alert's JSON form (DESIGN §6), stable alert ids, sample events, and rule errors
turned into `rule_error` alerts."""

from __future__ import annotations

import io
import json
import re

import pytest

from engine.runs.replay import ReplayOptions, replay
from tests.conftest import at, run_detect, run_pipeline, write_jsonl

ALERT_KEYS = [
    "schema",
    "alert_id",
    "kind",
    "rule_id",
    "rule_name",
    "severity",
    "title",
    "description",
    "runbook",
    "reference",
    "tags",
    "mitre",
    "dedup_key",
    "event_count",
    "first_event_at",
    "last_event_at",
    "organization_ids",
    "indicators",
    "context",
    "events",
]

SSO_RULE = """
id: anthropic.sso.disabled
name: SSO disabled for the organization
severity: high
description: Someone turned SSO off.
runbook: Call the admin.
reference: https://example.com/sso
tags: [defense-evasion, identity]
mitre: ["TA0005:T1562.001"]
match:
  type: org_sso_toggled
  enabled: false
title: "SSO disabled by {actor.email_address} from {actor.ip_address}"
dedup:
  key: "{organization_id}"
  window: 1h
context: [actor.ip_address, api_key_id, enabled]
"""


@pytest.fixture
def sso_rules(rules_dir):
    rules_dir.write("sso.yml", SSO_RULE)
    return rules_dir


def sso_off(make_activity, created_at, **fields):
    return make_activity("org_sso_toggled", created_at=created_at, enabled=False, **fields)


def test_alert_json_shape(cli, sso_rules, make_activity, tmp_path):
    first = sso_off(make_activity, "2026-05-07T10:00:00.000538123Z", extra={"kept": [1, None]})
    second = sso_off(
        make_activity,
        "2026-05-07T12:30:00+02:00",
        actor={
            "type": "user_actor",
            "email_address": "bob@example.com",
            "unauthenticated_email_address": "ana@example.com",
            "ip_address": "198.51.100.4",
            "user_id": "user_02",
        },
        organization_id="org_01",
    )
    ignored = make_activity("org_sso_toggled", created_at=at(minutes=31), enabled=True)
    feed = write_jsonl(tmp_path / "feed.jsonl", [first, second, ignored])
    code, out, err = cli("replay", str(feed), "--rules", str(sso_rules.path), "--format", "jsonl")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1
    alert = json.loads(lines[0])
    assert list(alert) == ALERT_KEYS
    assert re.fullmatch(r"al_[0-9a-f]{24}", alert["alert_id"])
    assert {k: v for k, v in alert.items() if k != "alert_id"} == {
        "schema": "detect.alert/v1",
        "kind": "detection",
        "rule_id": "anthropic.sso.disabled",
        "rule_name": "SSO disabled for the organization",
        "severity": "high",
        "title": "SSO disabled by ana@example.com from 192.0.2.7",
        "description": "Someone turned SSO off.",
        "runbook": "Call the admin.",
        "reference": "https://example.com/sso",
        "tags": ["defense-evasion", "identity"],
        "mitre": ["TA0005:T1562.001"],
        "dedup_key": "org_01",
        "event_count": 2,
        "first_event_at": "2026-05-07T10:00:00.000538Z",
        "last_event_at": "2026-05-07T10:30:00.000000Z",
        "organization_ids": ["org_01"],
        "indicators": {
            "emails": ["ana@example.com", "bob@example.com"],
            "ip_addresses": ["192.0.2.7", "198.51.100.4"],
            "actor_ids": ["user_01", "user_02"],
        },
        "context": {"actor.ip_address": "192.0.2.7", "api_key_id": None, "enabled": False},
        "events": [first, second],
    }
    assert "3 activities read · 0 rejected · 1 rules · 2 matches · 1 alert (1 high)" in err


def test_events_hold_at_most_ten_samples_verbatim(sso_rules, make_activity, tmp_path):
    raws = [
        sso_off(make_activity, f"2026-05-07T10:{m:02d}:00.123456789Z", note={"n": m, "x": None})
        for m in range(12)
    ]
    path = tmp_path / "feed.jsonl"
    # written with unusual spacing: the sample must be the parsed activity, key order kept
    path.write_text(
        "".join(json.dumps(r, indent=None, separators=(", ", ": ")) + "\n" for r in raws)
    )
    out = io.StringIO()
    replay([str(path)], sso_rules.load(), ReplayOptions(format="jsonl", quarantine=None), out=out)
    (alert,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert alert["event_count"] == 12
    assert len(alert["events"]) == 10
    assert alert["events"] == raws[:10]
    assert [list(e) for e in alert["events"]] == [list(r) for r in raws[:10]]
    assert alert["events"][0]["created_at"] == "2026-05-07T10:00:00.123456789Z"
    assert alert["last_event_at"] == "2026-05-07T10:11:00.123456Z"


@pytest.fixture
def mixed_feed(sso_rules, make_activity, tmp_path):
    raws = []
    for hour in range(3):
        for minute in (0, 20, 40):
            raws.append(sso_off(make_activity, at(hours=hour, minutes=minute + 5 * hour)))
            raws.append(
                sso_off(make_activity, at(hours=hour, minutes=minute), organization_id="org_02")
            )
    return write_jsonl(tmp_path / "feed.jsonl", raws)


def replay_jsonl(path, ruleset) -> list[str]:
    out = io.StringIO()
    replay([str(path)], ruleset, ReplayOptions(format="jsonl", quarantine=None), out=out)
    return out.getvalue().splitlines()


def test_alert_ids_are_stable_across_replays_in_one_process(sso_rules, mixed_feed):
    first = replay_jsonl(mixed_feed, sso_rules.load())
    second = replay_jsonl(mixed_feed, sso_rules.load())
    assert first == second
    ids = [json.loads(line)["alert_id"] for line in first]
    assert len(ids) == 6
    assert len(set(ids)) == 6


def test_alert_ids_are_stable_across_processes(sso_rules, mixed_feed, tmp_path):
    args = ("replay", str(mixed_feed), "--rules", str(sso_rules.path), "--format", "jsonl")
    runs = [run_detect(*args, "--no-quarantine", cwd=tmp_path) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0]
    assert runs[0].stdout == runs[1].stdout
    in_process = replay_jsonl(mixed_feed, sso_rules.load())
    assert [json.loads(line)["alert_id"] for line in runs[0].stdout.splitlines()] == [
        json.loads(line)["alert_id"] for line in in_process
    ]


def test_alert_id_depends_on_rule_key_and_opening_time(sso_rules, make_activity):
    ruleset = sso_rules.load()
    base = run_pipeline(ruleset, [sso_off(make_activity, at(0))]).final[0]["alert_id"]
    same_again = run_pipeline(ruleset, [sso_off(make_activity, at(0))]).final[0]["alert_id"]
    # the same instant written with another offset is the same opening time
    offset = run_pipeline(ruleset, [sso_off(make_activity, "2026-05-07T12:00:00+02:00")])
    later = run_pipeline(ruleset, [sso_off(make_activity, at(1))]).final[0]["alert_id"]
    other_key = run_pipeline(
        ruleset, [sso_off(make_activity, at(0), organization_id="org_09")]
    ).final[0]["alert_id"]
    assert same_again == base
    assert offset.final[0]["alert_id"] == base
    assert len({base, later, other_key}) == 3


# -- rule errors ---------------------------------------------------------------------------

FRAGILE_PY = """
def rule(event):
    # raises KeyError on activities without `details`
    return event["details"]["flag"] is True


def title(event):
    return "flag set by " + event.deep_get("actor", "email_address", default="someone")
"""


@pytest.fixture
def error_rules(rules_dir):
    rules_dir.write(
        "fragile.yml",
        """
        id: t.fragile
        name: Fragile Python rule
        severity: low
        match: {type: login}
        python: fragile.py
        dedup: {key: "{actor.user_id}"}
        """,
    )
    rules_dir.write("fragile.py", FRAGILE_PY)
    rules_dir.write(
        "steady.yml",
        """
        id: t.steady
        name: Steady rule
        severity: info
        match: {type: login}
        dedup: {key: "{id}"}
        """,
    )
    return rules_dir.load()


def test_a_raising_python_rule_produces_rule_error_alerts_per_hour(error_rules, make_activity):
    raws = [
        make_activity(created_at=at(minutes=0)),
        make_activity(created_at=at(minutes=10), details={"flag": True}),
        make_activity(created_at=at(minutes=20)),
        make_activity(created_at=at(minutes=59)),
        make_activity(created_at=at(minutes=60)),
    ]
    run = run_pipeline(error_rules, raws)
    assert run.stats.rule_errors == 4
    errors = [a for a in run.final if a["kind"] == "rule_error"]
    detections = [a for a in run.final if a["kind"] == "detection"]
    assert [(a["rule_id"], a["event_count"], a["first_event_at"]) for a in errors] == [
        ("t.fragile", 3, "2026-05-07T10:00:00.000000Z"),
        ("t.fragile", 1, "2026-05-07T11:00:00.000000Z"),
    ]
    first = errors[0]
    assert list(first) == ALERT_KEYS
    assert first["schema"] == "detect.alert/v1"
    assert first["severity"] == "medium"
    assert first["title"] == "Rule t.fragile raised KeyError: 'details'"
    assert first["context"]["error_type"] == "KeyError"
    assert first["context"]["error"] == "'details'"
    assert first["context"]["rule_file"].endswith("fragile.yml")
    assert [e["id"] for e in first["events"]] == ["activity_0001", "activity_0003", "activity_0004"]
    # other rules (and this rule, where it does not raise) still alert
    assert (
        sorted((a["rule_id"], a["title"]) for a in detections)
        == [
            ("t.fragile", "flag set by ana@example.com"),
        ]
        + [("t.steady", "Steady rule")] * 5
    )
    assert len(run.opened) == 2 + 6


def test_rule_error_location_points_into_the_rule_module(error_rules, make_activity):
    run = run_pipeline(error_rules, [make_activity(created_at=at(0))])
    (error,) = [a for a in run.final if a["kind"] == "rule_error"]
    assert error["context"]["location"].endswith("fragile.py:3")


def test_rule_errors_through_replay_do_not_stop_the_stream(
    cli, error_rules, make_activity, tmp_path
):
    raws = [make_activity(created_at=at(minutes=m)) for m in range(3)]
    feed = write_jsonl(tmp_path / "feed.jsonl", raws)
    code, out, err = cli(
        "replay", str(feed), "--rules", str(tmp_path / "rules"), "--format", "jsonl"
    )
    assert code == 0
    kinds = sorted(json.loads(line)["kind"] for line in out.splitlines())
    assert kinds == ["detection", "detection", "detection", "rule_error"]
    assert err.strip().endswith("3 rule errors")
