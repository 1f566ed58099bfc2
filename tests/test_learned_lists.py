"""Learned lists: rules teach named lists what the feed shows, durably."""

from __future__ import annotations

from engine.state.sqlite import SqliteStore
from tests.conftest import at, run_pipeline

TEACH = """
id: t.teach
name: promoted
severity: info
alert: false
match: {type: role_updated, role: admin}
learn: [{list: admins, add: email}]
"""
FORGET = """
id: t.forget
name: demoted
severity: info
alert: false
match: {type: role_updated, role: user}
learn: [{list: admins, remove: email}]
"""
WATCH = """
id: t.watch
name: admin signed in
severity: high
match: {type: login, actor.email_address: {in_list: admins}}
dedup: {key: "{id}"}
"""


def _rules(rules_dir, *extra: tuple[str, str]):
    rules_dir.add_list("admins", ["static@example.com"])
    for name, text in (("teach.yml", TEACH), ("forget.yml", FORGET), ("watch.yml", WATCH)):
        rules_dir.write(name, text)
    for name, text in extra:
        rules_dir.write(name, text)
    return rules_dir.load()


def _role(make_activity, minute, email, role):
    return make_activity("role_updated", created_at=at(minutes=minute), email=email, role=role)


def _login(make_activity, minute, email):
    actor = {"type": "user_actor", "email_address": email}
    return make_activity("login", created_at=at(minutes=minute), actor=actor)


def test_promotion_teaches_and_demotion_unteaches(rules_dir, make_activity):
    ruleset = _rules(rules_dir)
    raws = [
        _login(make_activity, 0, "Bo@example.com"),
        _role(make_activity, 1, "bo@example.com", "admin"),
        _login(make_activity, 2, "BO@example.com"),
        _role(make_activity, 3, "bo@example.com", "user"),
        _login(make_activity, 4, "bo@example.com"),
        _login(make_activity, 5, "static@example.com"),
    ]
    run = run_pipeline(ruleset, raws)
    assert [a.events[0]["actor"]["email_address"] for a in run.opened] == [
        "BO@example.com",
        "static@example.com",
    ]
    assert {a.rule_id for a in run.opened} == {"t.watch"}  # `alert: false` rules stay quiet


def test_what_was_learned_survives_a_restart(rules_dir, make_activity, tmp_path):
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    run_pipeline(
        _rules(rules_dir),
        [_role(make_activity, 0, "cy@example.com", "admin")],
        store=store,
        finish=False,
    )
    store.close()
    store = SqliteStore(path)
    run = run_pipeline(rules_dir.load(), [_login(make_activity, 1, "cy@example.com")], store=store)
    store.close()
    assert len(run.opened) == 1


def test_a_learn_path_that_fails_is_a_rule_error(rules_dir, make_activity):
    broken = """
    id: t.broken
    name: broken teacher
    severity: info
    alert: false
    match: {type: role_updated}
    learn: [{list: admins, add: "lower(role)"}]
    """
    ruleset = _rules(rules_dir, ("broken.yml", broken))
    run = run_pipeline(ruleset, [_role(make_activity, 0, "dee@example.com", 7)])
    assert [(a.kind, a.rule_id) for a in run.opened] == [("rule_error", "t.broken")]
