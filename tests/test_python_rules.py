"""Python rules: `rule(event)` with its optional hooks, and `match` as a cheap pre-filter."""

from __future__ import annotations

import pytest

from tests.conftest import at, run_pipeline

HOOKS_PY = """
def rule(event):
    return event.deep_get("actor", "ip_address", default="").startswith("198.51.100.")


def title(event):
    who = event["actor"]["email_address"]
    return f"Key created by {who} from {event.search('actor.ip_address')}"


def dedup(event):
    return event.get("api_key_id", "no-key")


def severity(event):
    return "critical" if event.get("scopes") == ("admin",) else "default"


def context(event):
    domain = event.search("email_domain(actor.email_address)")
    return {"domain": domain, "at": event.created_at.isoformat()}


def runbook(event):
    return "Revoke " + event.get("api_key_id", "?")


def destinations(event):
    return ["secops", "soar"]
"""


@pytest.fixture
def hook_rules(rules_dir):
    rules_dir.write(
        "key.yml",
        """
        id: t.key
        name: API key from an unusual network
        severity: medium
        runbook: static runbook
        match:
          type: admin_api_key_created
        python: key_rule.py
        context: [api_key_id]
        """,
    )
    rules_dir.write("key_rule.py", HOOKS_PY)
    return rules_dir.load()


def key_created(make_activity, ip, **fields):
    actor = {"type": "user_actor", "email_address": "ana@example.com", "ip_address": ip}
    return make_activity("admin_api_key_created", created_at=at(0), actor=actor, **fields)


def test_python_hooks_fill_the_alert(hook_rules, make_activity):
    raws = [
        key_created(make_activity, "198.51.100.9", api_key_id="key_01", scopes=["admin"]),
        key_created(make_activity, "192.0.2.7", api_key_id="key_02"),
        key_created(make_activity, "198.51.100.10", api_key_id="key_03"),
    ]
    run = run_pipeline(hook_rules, raws)
    assert run.stats.rule_errors == 0
    first, second = run.opened
    assert first.title == "Key created by ana@example.com from 198.51.100.9"
    assert first.dedup_key == "key_01"
    assert first.severity == "critical"
    assert first.context == {
        "api_key_id": "key_01",
        "domain": "example.com",
        "at": "2026-05-07T10:00:00+00:00",
    }
    assert first.runbook == "Revoke key_01"
    assert first.destinations == ["secops", "soar"]
    assert (second.dedup_key, second.severity) == ("key_03", "medium")


def test_match_pre_filters_before_python_runs(rules_dir, make_activity):
    rules_dir.write(
        "boom.yml",
        "id: t.boom\nname: Boom\nseverity: low\nmatch: {type: login}\npython: boom.py\n",
    )
    rules_dir.write("boom.py", "def rule(event):\n    raise RuntimeError('called')\n")
    ruleset = rules_dir.load()
    quiet = run_pipeline(ruleset, [make_activity("logout"), make_activity("other")])
    assert quiet.changes == []
    assert quiet.stats.rule_errors == 0
    loud = run_pipeline(ruleset, [make_activity("login")])
    assert loud.stats.rule_errors == 1
    assert [a.kind for a in loud.opened] == ["rule_error"]


def test_a_bad_severity_from_a_hook_is_a_rule_error(rules_dir, make_activity):
    rules_dir.write("sev.yml", "id: t.sev\nname: Sev\nseverity: low\npython: sev.py\n")
    rules_dir.write(
        "sev.py",
        "def rule(event):\n    return True\n\n\ndef severity(event):\n    return 'urgent'\n",
    )
    run = run_pipeline(rules_dir.load(), [make_activity()])
    (alert,) = run.final
    assert alert["kind"] == "rule_error"
    assert alert["context"]["error_type"] == "ValueError"
    assert "severity() returned 'urgent'" in alert["context"]["error"]


def test_the_event_a_rule_gets_cannot_change_what_the_next_rule_sees(rules_dir, make_activity):
    rules_dir.write("a.yml", "id: t.a\nname: A\nseverity: low\npython: a.py\n")
    rules_dir.write(
        "a.py",
        "def rule(event):\n    event['actor']['ip_address'] = '10.0.0.1'\n    return True\n",
    )
    rules_dir.write(
        "b.yml", "id: t.b\nname: B\nseverity: low\nmatch: {actor.ip_address: 192.0.2.7}\n"
    )
    raw = make_activity()
    run = run_pipeline(rules_dir.load(), [raw])
    assert sorted((a["rule_id"], a["kind"]) for a in run.final) == [
        ("t.a", "rule_error"),
        ("t.b", "detection"),
    ]
    assert raw["actor"]["ip_address"] == "192.0.2.7"
