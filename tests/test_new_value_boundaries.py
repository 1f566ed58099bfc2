"""New values at their edges: a key's first value is learned silently, and a value is
forgotten exactly `forget` after it was last seen (not a moment earlier or later)."""

from __future__ import annotations

from tests.conftest import at, run_pipeline

RULE = """
id: t.new_address
name: New address
severity: medium
match:
  type: login
new_value:
  of: actor.ip_address
  per: actor.user_id
  forget: 10d
"""
FIRST_ALERTS = RULE + "  alert_on_first: true\n"
DAY = 24


def login(make_activity, address: str, **when):
    actor = {"type": "user_actor", "user_id": "u1", "ip_address": address}
    return make_activity("login", created_at=at(**when), actor=actor)


def opened(rules_dir, raws, rule=RULE):
    rules_dir.write("new.yml", rule)
    return [a.events[0]["actor"]["ip_address"] for a in run_pipeline(rules_dir.load(), raws).opened]


def test_a_keys_first_value_is_learned_silently(rules_dir, make_activity):
    assert opened(rules_dir, [login(make_activity, "192.0.2.1")]) == []


def test_a_keys_first_value_alerts_with_alert_on_first(rules_dir, make_activity):
    raws = [login(make_activity, "192.0.2.1")]
    assert opened(rules_dir, raws, FIRST_ALERTS) == ["192.0.2.1"]


def test_a_second_value_alerts_once_the_first_is_known(rules_dir, make_activity):
    raws = [login(make_activity, "192.0.2.1"), login(make_activity, "192.0.2.2", hours=1)]
    assert opened(rules_dir, raws) == ["192.0.2.2"]


def test_a_value_seen_again_just_before_forget_is_still_known(rules_dir, make_activity):
    raws = [
        login(make_activity, "192.0.2.1"),
        login(make_activity, "192.0.2.2", hours=5 * DAY),  # new: alerts
        login(make_activity, "192.0.2.1", hours=10 * DAY, seconds=-1),
    ]
    assert opened(rules_dir, raws) == ["192.0.2.2"]


def test_a_value_seen_again_exactly_forget_later_is_new_again(rules_dir, make_activity):
    raws = [
        login(make_activity, "192.0.2.1"),
        login(make_activity, "192.0.2.2", hours=5 * DAY),  # new: alerts, and stays known
        login(make_activity, "192.0.2.1", hours=10 * DAY),  # unseen for exactly `forget`
    ]
    assert opened(rules_dir, raws) == ["192.0.2.2", "192.0.2.1"]


def test_a_key_whose_values_all_expired_exactly_starts_over_silently(rules_dir, make_activity):
    raws = [
        login(make_activity, "192.0.2.1"),
        login(make_activity, "192.0.2.3", hours=10 * DAY),  # the only baseline is forgotten
    ]
    assert opened(rules_dir, raws) == []


def test_a_baseline_value_one_second_short_of_forget_still_counts(rules_dir, make_activity):
    raws = [
        login(make_activity, "192.0.2.1"),
        login(make_activity, "192.0.2.3", hours=10 * DAY, seconds=-1),
    ]
    assert opened(rules_dir, raws) == ["192.0.2.3"]
