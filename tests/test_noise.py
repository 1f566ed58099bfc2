"""`detect noise`: per-rule alert volume, the benign/attack split and recall from labels."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engine.noise.collect import COUNTED, LEARNED, OPENED, SUPPRESSED, load_labels, measure
from engine.noise.report import build_report
from engine.resources import bundled_rules_dir, demo_feed_path
from engine.runs.replay import ReplayOptions, replay
from tests.conftest import at, write_jsonl

SINGLE = """
id: t.single
name: SSO turned off
severity: high
match: {type: org_sso_toggled}
title: "SSO toggled in {organization_id}"
dedup: {key: "{organization_id}", window: 1h}
"""
BURST = """
id: t.burst
name: Failed sign-ins
severity: medium
match: {type: sso_login_failed}
title: "3+ failures from {actor.ip_address}"
dedup: {key: "{actor.ip_address}", window: 1h}
threshold: {count: 3, window: 10m}
"""
EXPORT = """
id: t.export
name: Data export
severity: low
match: {type: org_data_export_started}
dedup: {key: "{organization_id}"}
"""
LEARN = """
id: t.learn
name: Learn admins
severity: info
alert: false
match: {type: claude_user_role_updated, user_email: {exists: true}}
learn:
  - list: admins
    add: user_email
"""
SEQUENCE = """
id: t.sequence
name: Promoted, then a key
severity: high
sequence:
  within: 1h
  steps:
    - match: {type: claude_user_role_updated}
      by: user_id
    - match: {type: admin_api_key_created}
      by: actor.user_id
dedup: {key: "{actor.user_id}"}
"""


@pytest.fixture
def rules(rules_dir):
    rules_dir.write("single.yml", SINGLE)
    rules_dir.write("burst.yml", BURST)
    rules_dir.write("export.yml", EXPORT)
    rules_dir.write("learn.yml", LEARN)
    rules_dir.add_list("admins", [])
    return rules_dir


def failed(make_activity, seconds, ip):
    return make_activity(
        "sso_login_failed",
        created_at=at(seconds),
        actor={"type": "unauthenticated_user_actor", "ip_address": ip},
    )


@pytest.fixture
def feed(make_activity):
    """Twenty activities; `ids[name]` names the interesting ones."""
    a = make_activity
    acts = {
        "s1": a("org_sso_toggled", created_at=at(0), organization_id="org_01"),
        "s2": a("org_sso_toggled", created_at=at(60), organization_id="org_02"),
        "s1_join": a("org_sso_toggled", created_at=at(120), organization_id="org_01"),
        "s3_attack": a("org_sso_toggled", created_at=at(300), organization_id="org_03"),
        "b1_a": failed(a, 400, "198.51.100.9"),
        "b1_b": failed(a, 410, "198.51.100.9"),
        "b1_c": failed(a, 420, "198.51.100.9"),
        "b2_a": failed(a, 500, "192.0.2.7"),
        "b2_b": failed(a, 510, "192.0.2.7"),
        "b2_c": failed(a, 520, "192.0.2.7"),
        "miss_a": failed(a, 600, "203.0.113.5"),
        "miss_b": failed(a, 610, "203.0.113.5"),
        "learned": a("claude_user_role_updated", created_at=at(700), user_email="eve@example.com"),
        "export": a("org_data_export_started", created_at=at(800), organization_id="org_03"),
        "s4": a("org_sso_toggled", created_at=at(hours=2), organization_id="org_01"),
    }
    for n in range(5):  # match nothing
        acts[f"quiet{n}"] = a("login", created_at=at(900 + n))
    return acts


def label(instance, kind, activities, key=None, description=""):
    return {
        "instance": instance,
        "kind": kind,
        "organization_id": "org_03",
        "activity_ids": activities,
        "key_activity_id": key,
        "started_at": at(0),
        "description": description or f"{kind} attack",
    }


@pytest.fixture
def labels(feed, tmp_path):
    f = {name: act["id"] for name, act in feed.items()}
    lines = [
        label("atk-00001", "sso_off", [f["s3_attack"]], f["s3_attack"]),
        label("atk-00002", "brute_force", [f["b1_a"], f["b1_b"], f["b1_c"]], f["b1_a"]),
        label("atk-00003", "brute_force", [f["miss_a"], f["miss_b"]], f["miss_a"], "slow guess"),
        label("atk-00004", "recon", [f["learned"]]),
        label("atk-00005", "export", [f["export"], "activity_not_in_feed"], f["export"]),
    ]
    return write_jsonl(tmp_path / "labels.jsonl", lines)


@pytest.fixture
def feed_file(feed, tmp_path):
    return write_jsonl(tmp_path / "feed.jsonl", feed.values())


def rows(report):
    return {row["id"]: row for row in report["rules"]}


def test_per_rule_counts_rates_and_top_keys_without_labels(rules, feed_file):
    measured = measure([str(feed_file)], rules.load())
    report = build_report(measured, top=1)
    assert report["activities"] == 20
    assert report["alerts"] == 7  # 4 single, 2 threshold, 1 export
    assert report["alerts_medium_or_above"] == 6
    assert report["alerts_high_or_critical"] == 4
    by_id = rows(report)
    assert [r["id"] for r in report["rules"]] == ["t.single", "t.burst", "t.export"]
    single = by_id["t.single"]
    assert single["alerts"] == 4
    assert single["alerts_per_100k"] == 4 * 100_000 / 20
    assert single["alerts_by_severity"] == {"high": 4}
    assert single["matches"] == 5
    assert single["top_keys"] == [{"value": "org_01", "count": 2}]  # top 1 only
    assert single["distinct_keys"] == 3
    assert single["top_titles"] == [{"value": "SSO toggled in org_01", "count": 2}]
    assert by_id["t.burst"]["alerts"] == 2
    assert by_id["t.burst"]["kind"] == "threshold"
    assert [r["id"] for r in report["silent_rules"]] == []
    assert report["learning_rules"] == ["t.learn"]
    assert report["labels"] is None and report["recall"] is None
    assert "tune t.single first" in report["next"][0]


def test_recall_caught_at_key_and_the_benign_split(rules, feed, feed_file, labels):
    measured = measure([str(feed_file)], rules.load(), load_labels(labels))
    report = build_report(measured)
    recall = report["recall"]
    assert (recall["instances"], recall["caught"], recall["recall"]) == (5, 3, 60.0)
    assert (recall["keyed"], recall["caught_at_key"]) == (4, 3)
    kinds = {k["kind"]: k for k in recall["by_kind"]}
    assert kinds["brute_force"] == {
        "kind": "brute_force",
        "instances": 2,
        "caught": 1,
        "keyed": 2,
        "caught_at_key": 1,  # the first failure, counted into the alert the third opened
        "recall": 50.0,
        "recall_at_key": 50.0,
    }
    assert kinds["recon"]["caught_at_key"] is None  # no key activity in that kind
    assert kinds["sso_off"]["caught_at_key"] == 1
    missed = {m["instance"]: m for m in recall["missed"]}
    assert set(missed) == {"atk-00003", "atk-00004"}
    assert missed["atk-00003"]["description"] == "slow guess"
    assert missed["atk-00003"]["matched_without_alert"] == {"t.burst": [SUPPRESSED]}
    assert missed["atk-00004"]["matched_without_alert"] == {"t.learn": [LEARNED]}
    by_rule = {r["id"]: r for r in recall["by_rule"]}
    assert by_rule["t.burst"]["kinds_caught"] == {"brute_force": 1}
    assert by_rule["t.export"]["caught_only"] == 1

    labels_block = report["labels"]
    assert labels_block["labelled_activities"] == 9  # one of them is not in the feed
    assert labels_block["labelled_activities_read"] == 8
    assert labels_block["benign_activities"] == 12
    assert (labels_block["attack_alerts"], labels_block["benign_alerts"]) == (3, 4)
    by_id = rows(report)
    single = by_id["t.single"]
    assert (single["alerts"], single["attack_alerts"], single["benign_alerts"]) == (4, 1, 3)
    assert single["benign_alerts_per_100k"] == 25_000.0  # 3 per 12 benign activities
    assert single["top_benign_keys"][0] == {"value": "org_01", "count": 2}
    assert all(k["value"] != "org_03" for k in single["top_benign_keys"])
    burst = by_id["t.burst"]
    assert (burst["attack_alerts"], burst["benign_alerts"]) == (1, 1)
    assert burst["benign_alerts_per_100k"] == round(100_000 / 12, 2)
    assert burst["top_benign_keys"] == [{"value": "192.0.2.7", "count": 1}]
    # A rule that matched only inside a labelled instance raised no benign alert.
    export = by_id["t.export"]
    assert (export["alerts"], export["benign_alerts"], export["benign_alerts_per_100k"]) == (
        1,
        0,
        0.0,
    )
    # Loudest first is by benign alerts.
    assert [r["id"] for r in report["rules"]] == ["t.single", "t.burst", "t.export"]

    outcomes = {(r[0], r[1]): r[2] for r in measured.log.records}
    assert outcomes[("t.burst", feed["b1_a"]["id"])] == COUNTED
    assert outcomes[("t.burst", feed["b1_c"]["id"])] == OPENED
    assert outcomes[("t.burst", feed["miss_a"]["id"])] == SUPPRESSED


def test_a_threshold_alert_opened_by_benign_activity_counts_attack_activity(
    rules, make_activity, tmp_path
):
    acts = [failed(make_activity, s, "198.51.100.1") for s in (0, 10, 20)]
    feed = write_jsonl(tmp_path / "f.jsonl", acts)
    labels = write_jsonl(tmp_path / "l.jsonl", [label("atk-1", "brute", [acts[0]["id"]])])
    report = build_report(measure([str(feed)], rules.load(), load_labels(labels)))
    assert report["recall"]["caught"] == 1
    assert rows(report)["t.burst"]["attack_alerts"] == 1
    assert rows(report)["t.burst"]["benign_alerts"] == 0


def test_a_sequence_alert_counts_its_earlier_steps(rules_dir, make_activity, tmp_path):
    rules_dir.write("sequence.yml", SEQUENCE)
    promoted = make_activity("claude_user_role_updated", created_at=at(0), user_id="user_9")
    key = make_activity(
        "admin_api_key_created",
        created_at=at(60),
        actor={"type": "user_actor", "user_id": "user_9", "ip_address": "192.0.2.1"},
    )
    feed = write_jsonl(tmp_path / "f.jsonl", [promoted, key])
    labels = write_jsonl(
        tmp_path / "l.jsonl",
        [label("atk-1", "escalation", [promoted["id"], key["id"]], promoted["id"])],
    )
    measured = measure([str(feed)], rules_dir.load(), load_labels(labels))
    report = build_report(measured)
    assert report["recall"]["caught_at_key"] == 1
    assert {(r[1], r[2]) for r in measured.log.records} == {
        (promoted["id"], COUNTED),
        (key["id"], OPENED),
    }


def test_json_text_and_markdown_from_the_cli(cli, rules, feed_file, labels):
    code, out, _ = cli(
        "noise",
        str(feed_file),
        "--rules",
        str(rules.path),
        "--labels",
        str(labels),
        "--format",
        "json",
    )
    assert code == 0
    report = json.loads(out)
    assert report["schema"] == "detect.noise/v1"
    assert report["recall"]["caught"] == 3
    assert [r["id"] for r in report["rules"]] == ["t.single", "t.burst", "t.export"]

    code, out, _ = cli(
        "noise",
        str(feed_file),
        "--rules",
        str(rules.path),
        "--labels",
        str(labels),
        "--format",
        "markdown",
    )
    assert code == 0
    lines = out.splitlines()
    header = lines.index(
        "| rule | severity | alerts per 100k benign activities | kinds caught "
        "| recall contribution |"
    )
    table = lines[header + 2 :]
    assert table[0] == "| `t.single` | high | 25000.00 | sso_off ×1 | 1 of 5 (20.0%), 1 alone |"
    assert "| `t.export` | low | 0.00 | export ×1 | 1 of 5 (20.0%), 1 alone |" in table

    code, out, _ = cli("noise", str(feed_file), "--rules", str(rules.path), "--labels", str(labels))
    assert code == 0
    assert out.startswith("20 activities read · 0 rejected · 4 rules loaded · 7 alerts")
    assert "3 of 5 attack instances caught (60.0%)" in out
    assert "next: tune t.single first: 3 benign alerts" in out
    assert "atk-00003  brute_force  slow guess  [t.burst matched (suppressed)]" in out

    code, out, _ = cli("noise", str(feed_file), "--rules", str(rules.path), "--format", "markdown")
    assert "| `t.burst` | medium | 2 | 10000.00 |" in out


def test_silent_rules_are_counted_and_listed_with_all(cli, rules, make_activity, tmp_path):
    feed = write_jsonl(tmp_path / "f.jsonl", [make_activity("login")])
    code, out, _ = cli("noise", str(feed), "--rules", str(rules.path))
    assert code == 0
    assert "silent: 3 alerting rules raised nothing (--all lists them)" in out
    assert "t.burst" not in out
    code, out, _ = cli("noise", str(feed), "--rules", str(rules.path), "--all")
    assert "  t.burst  (medium, threshold)" in out


def test_exit_codes(cli, rules, rules_dir, feed_file, tmp_path):
    assert cli("noise", str(tmp_path / "missing.jsonl"), "--rules", str(rules.path))[0] == 1
    bad_labels = tmp_path / "bad.jsonl"
    bad_labels.write_text('{"instance": "x"}\n')
    code, _, err = cli(
        "noise", str(feed_file), "--rules", str(rules.path), "--labels", str(bad_labels)
    )
    assert code == 1 and "bad.jsonl:1" in err
    assert cli("noise", str(feed_file), "--rules", str(rules.path), "--top", "0")[0] == 2
    rules_dir.write("broken.yml", "id: t.broken\nseverity: loud\n")
    assert cli("noise", str(feed_file), "--rules", str(rules.path))[0] == 2


def test_the_demo_feed_counts_what_replay_raises(tmp_path):
    from engine.rule_formats import load_rules

    ruleset = load_rules([bundled_rules_dir()])
    out = io.StringIO()
    options = ReplayOptions(format="jsonl", quarantine=None, processes=1)
    replay([str(demo_feed_path())], ruleset, options, out=out, err=io.StringIO())
    replayed = [json.loads(line) for line in out.getvalue().splitlines()]

    ruleset = load_rules([bundled_rules_dir()])
    report = build_report(measure([str(demo_feed_path())], ruleset))
    detections = [a for a in replayed if a["kind"] == "detection"]
    assert report["alerts"] == len(detections) > 0
    assert sum(r["alerts"] for r in report["rules"]) == len(detections)
    per_rule: dict[str, int] = {}
    for alert in detections:
        per_rule[alert["rule_id"]] = per_rule.get(alert["rule_id"], 0) + 1
    assert {r["id"]: r["alerts"] for r in report["rules"]} == per_rule
    assert report["alerts_high_or_critical"] == sum(
        a["severity"] in ("high", "critical") for a in detections
    )
    # Labelling every activity of the demo: every alert touches a labelled one.
    ids = [json.loads(line)["id"] for line in Path(demo_feed_path()).read_text().splitlines()]
    labels = write_jsonl(tmp_path / "l.jsonl", [label("atk-all", "everything", ids)])
    report = build_report(
        measure([str(demo_feed_path())], load_rules([bundled_rules_dir()]), load_labels(labels))
    )
    assert report["labels"]["benign_alerts"] == 0
    assert report["labels"]["attack_alerts"] == len(detections)
    assert report["recall"]["caught"] == 1
