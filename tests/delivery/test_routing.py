"""Routing (filters, a rule's override, suppression, unknown names) and silences."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from types import SimpleNamespace

from engine.config import DestinationConfig
from engine.delivery.dispatcher import Dispatcher
from engine.delivery.outbox import Outbox
from engine.delivery.routing import route, unknown_rule_destinations
from tests.delivery.conftest import make_alert, save_alerts, slack, slack_like, webhook

URL = "https://hooks.example.com/services/x"


def state(index: int = 1, **changes) -> dict:
    return make_alert(index, **changes).to_state()


def test_filters_severity_rules_tags_and_kinds():
    destinations = {
        "all": slack(URL),
        "high": slack(URL, min_severity="high"),
        "sso": slack(URL, rule_ids=["anthropic.sso.*"], exclude_rule_ids=["*.noisy"]),
        "tagged": slack(URL, tags=["persistence"]),
        "not-evasion": slack(URL, exclude_tags=["defense-evasion"]),
        "errors": slack(URL, kinds=["rule_error"]),
    }
    assert route(state(severity="medium"), destinations).destinations == ["all", "sso"]
    assert route(state(severity="critical"), destinations).destinations == ["all", "high", "sso"]
    noisy = state(rule_id="anthropic.sso.noisy", severity="low")
    assert route(noisy, destinations).destinations == ["all"]
    keys = state(rule_id="anthropic.keys.created", tags=["persistence"], severity="info")
    assert route(keys, destinations).destinations == ["all", "tagged", "not-evasion"]
    error = state(kind="rule_error", severity="medium", tags=[])
    assert route(error, destinations).destinations == ["all", "sso", "not-evasion", "errors"]


def test_a_rules_destinations_override_filters_and_empty_suppresses():
    destinations = {"high": slack(URL, min_severity="high"), "low": slack(URL)}
    chosen = route(state(severity="info", destinations=["high"]), destinations)
    assert chosen.destinations == ["high"] and chosen.note == "routed by the rule"
    suppressed = route(state(destinations=[]), destinations)
    assert suppressed.destinations == [] and "suppressed" in suppressed.note


def test_unknown_names_are_never_silently_dropped():
    destinations = {"secops": slack(URL, min_severity="high")}
    partly = route(state(destinations=["secops", "typo-slack"]), destinations)
    assert partly.destinations == ["secops"] and partly.unknown == ["typo-slack"]
    only = route(state(destinations=["typo-slack"]), destinations)
    assert only.destinations == ["secops"]  # the default routing instead
    assert "typo-slack" in only.notice and "default routing" in only.notice


def test_unknown_destination_is_a_dead_letter_and_a_warning_in_the_message(db, clock, receivers):
    hook = receivers(slack_like)
    save_alerts(db, [make_alert(1, destinations=["typo-slack"])])
    with Dispatcher(db, {"secops": slack(hook.url)}, clock=clock, sleep=clock.sleep) as d:
        report = d.dispatch_pending()
    assert report.sent == 1 and report.dead == 1
    assert "typo-slack" in json.dumps(hook.requests[0].json())
    outbox = Outbox(db)
    try:
        (dead,) = outbox.by_status("dead", 10)
        assert dead.destination == "typo-slack"
        assert "not defined in the configuration" in dead.reason
    finally:
        outbox.close()


def test_suppressed_alerts_are_recorded_not_sent(db, clock, receivers):
    hook = receivers()
    save_alerts(db, [make_alert(1, destinations=[])])
    with Dispatcher(db, {"soar": webhook(hook.url)}, clock=clock, sleep=clock.sleep) as d:
        assert d.dispatch_pending().routed == 1
        assert d.dispatch_pending().routed == 0  # routed once, not re-examined
    assert hook.requests == []


def test_startup_check_names_the_rule_file():
    rule = SimpleNamespace(id="r1", path=Path("rules/r1.yml"), destinations=["nope"])
    problems = unknown_rule_destinations([rule], {"secops": DestinationConfig(type="console")})
    assert problems == [
        "rules/r1.yml: rule r1 names destination 'nope', which the configuration does not define"
    ]


# -- silences -------------------------------------------------------------------------


def dispatch(db, clock, destinations):
    with Dispatcher(db, destinations, clock=clock, sleep=clock.sleep, rng=random.Random(1)) as d:
        return d.dispatch_pending()


def test_a_silenced_rule_is_recorded_not_sent(db, clock, receivers):
    hook = receivers()
    outbox = Outbox(db)
    silence = outbox.add_silence(
        "anthropic.sso.*", None, clock(), clock() + 3600, "change window", "ana", clock()
    )
    outbox.close()
    save_alerts(db, [make_alert(1), make_alert(2, rule_id="anthropic.keys.created")])
    report = dispatch(db, clock, {"soar": webhook(hook.url)})
    assert report.silenced == 1 and report.sent == 1
    assert [r.json()["rule_id"] for r in hook.requests] == ["anthropic.keys.created"]
    with sqlite3.connect(db) as conn:
        status, reason = conn.execute(
            "SELECT status, reason FROM deliveries WHERE alert_id = ?", (make_alert(1).alert_id,)
        ).fetchone()
    assert status == "silenced" and silence.silence_id in reason and "change window" in reason


def test_a_dedup_key_silence_and_its_end(db, clock, receivers):
    hook = receivers()
    outbox = Outbox(db)
    outbox.add_silence(None, "org_1", clock(), clock() + 60, "known test org", "ana", clock())
    outbox.close()
    save_alerts(db, [make_alert(1), make_alert(2)])
    assert dispatch(db, clock, {"soar": webhook(hook.url)}).silenced == 1
    assert [r.json()["dedup_key"] for r in hook.requests] == ["org_2"]
    clock.sleep(61)
    save_alerts(db, [make_alert(3, dedup_key="org_1")])
    assert dispatch(db, clock, {"soar": webhook(hook.url)}).sent == 1


def test_a_silence_set_while_a_delivery_waits_to_retry_holds_it(db, clock, receivers):
    answers = iter([(503, "", {})])
    hook = receivers(lambda r: next(answers, (200, "ok", {})))
    save_alerts(db, [make_alert(1)])
    with Dispatcher(db, {"soar": webhook(hook.url)}, clock=clock, sleep=clock.sleep) as d:
        assert d.dispatch_pending(deadline=clock() + 0.5).retried == 1
        d.outbox.add_silence(
            "anthropic.sso.disabled", None, clock(), clock() + 600, "why", "ana", clock()
        )
        assert d.dispatch_pending().silenced == 1
    assert len(hook.requests) == 1


def test_lifting_and_listing_silences(db, clock):
    outbox = Outbox(db)
    try:
        kept = outbox.add_silence("r", None, clock(), clock() + 60, "a", "ana", clock())
        lifted = outbox.add_silence("r", "k", clock(), clock() + 60, "b", "ana", clock())
        assert outbox.lift_silence(lifted.silence_id, clock())
        assert not outbox.lift_silence(lifted.silence_id, clock())
        assert [s.silence_id for s in outbox.silences(clock())] == [kept.silence_id]
        assert len(outbox.silences(clock(), include_ended=True)) == 2
        assert outbox.silence_for("r", "k", clock()).silence_id == kept.silence_id
        assert outbox.silence_for("other", "k", clock()) is None
    finally:
        outbox.close()
