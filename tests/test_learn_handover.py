"""`learn_from: all`: the evaluator hands a repeated value to the correlator once per span
of 1% of `forget`, and the alerts are the same as if it handed every one over."""

from __future__ import annotations

from engine.activity import parse_activity
from engine.detection.evaluator import Evaluator
from tests.conftest import T0, at, run_pipeline

RULE = """
id: t.new_domain
name: invite to a domain new to the organization
severity: low
match: {type: invite}
new_value:
  of: email_domain(invited || actor.email_address)
  per: organization_id
  forget: 100d
  learn_from: all
dedup: {key: "{invited}"}
"""


def _chat(make_activity, seconds: float, email: str = "ana@corp.example") -> dict:
    actor = {"type": "user_actor", "email_address": email, "user_id": "user_01"}
    return make_activity("chat", created_at=at(seconds), actor=actor)


def test_a_value_seen_on_every_activity_is_handed_over_once_per_span(rules_dir, make_activity):
    rules_dir.write("rule.yml", RULE)
    evaluator = Evaluator(rules_dir.load())
    span = 100 * 86400 * 0.01  # 1% of forget: one day, cut from the epoch
    next_span = (T0.timestamp() // span + 1) * span - T0.timestamp()  # seconds from T0

    def handed(seconds: float) -> list:
        record = parse_activity(_chat(make_activity, seconds))
        return evaluator.learned(record, evaluator.evaluate(record)[0])

    assert len(handed(0)) == 1
    assert handed(60) == []  # the same member's domain a minute later: nothing new
    assert handed(next_span - 1) == []  # the span's last second: still nothing to move on
    assert len(handed(next_span)) == 1  # the next span: handed over again
    assert handed(next_span + span - 1) == []
    assert len(handed(30)) == 1  # a late activity is always handed over


def test_alerts_do_not_depend_on_the_hand_over(rules_dir, make_activity):
    rules_dir.write("rule.yml", RULE)
    ruleset = rules_dir.load()
    invite = {"type": "user_actor", "email_address": "ana@corp.example"}
    feed = [_chat(make_activity, s) for s in range(0, 3000, 10)]
    feed.append(
        make_activity("invite", created_at=at(3100), actor=invite, invited="x@corp.example")
    )
    feed.append(make_activity("invite", created_at=at(3200), actor=invite, invited="y@new.example"))
    feed += [_chat(make_activity, s, "bo@new.example") for s in range(3300, 3400, 10)]
    feed.append(make_activity("invite", created_at=at(3500), actor=invite, invited="z@new.example"))
    opened = run_pipeline(ruleset, feed).opened
    assert [a.dedup_key for a in opened] == ["y@new.example"]


TYPED = RULE.replace("learn_from: all", "learn_from: [chat_created, invite]")


def test_a_list_of_types_learns_from_those_types_only(rules_dir, make_activity):
    rules_dir.write("rule.yml", TYPED)
    evaluator = Evaluator(rules_dir.load())
    actor = {"type": "user_actor", "email_address": "bo@other.example"}
    viewed = parse_activity(make_activity("chat", created_at=at(0), actor=actor))
    created = parse_activity(make_activity("chat_created", created_at=at(1), actor=actor))
    assert evaluator.learned(viewed, []) == []
    assert [entry[1:] for entry in evaluator.learned(created, [])] == [("org_01", "other.example")]


def test_what_an_unlisted_type_shows_is_not_learned(rules_dir, make_activity):
    rules_dir.write("rule.yml", TYPED)
    ruleset = rules_dir.load()
    ana = {"type": "user_actor", "email_address": "ana@corp.example"}
    bo = {"type": "user_actor", "email_address": "bo@new.example"}
    feed = [
        make_activity("chat_created", created_at=at(0), actor=ana),
        make_activity("chat", created_at=at(10), actor=bo),  # not a listed type
        make_activity("invite", created_at=at(20), actor=ana, invited="x@new.example"),
        make_activity("chat_created", created_at=at(30), actor=bo),
        make_activity("invite", created_at=at(40), actor=ana, invited="y@third.example"),
    ]
    feed.append(make_activity("invite", created_at=at(50), actor=ana, invited="z@new.example"))
    opened = run_pipeline(ruleset, feed).opened
    assert [a.dedup_key for a in opened] == ["x@new.example", "y@third.example"]
