"""`learn_from: all` after a restart: the alerts are those of an uninterrupted run.

The evaluator does not hand a repeated value over to the correlator again within 1% of
`forget`, and only the process that handed it over remembers that. When the skip was
"within 1% of the last hand-over" while the stored last-seen time moved on "when 1%
stale", a run restarted between two sightings (a crash, a worker taking an organization
over) handed over a sighting the uninterrupted run skipped, stored a later last-seen time,
and so forgot the value later: below, the uninterrupted run alerts on corp.example 100
days after the invite of day 1.5, the restarted one did not. Both now count in spans of
event time (engine/detection/rule.py `LAST_SEEN_SLACK`), which no memory changes.
"""

from __future__ import annotations

from engine.activity import parse_activity
from engine.runs import build
from engine.state.sqlite import SqliteStore
from tests.conftest import at

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
DAY = 86_400


def feed(make_activity) -> list:
    def chat(days: float, email: str) -> dict:
        actor = {"type": "user_actor", "email_address": email, "user_id": "user_01"}
        return make_activity("chat", created_at=at(days * DAY), actor=actor)

    def invite(days: float, email: str) -> dict:
        return make_activity("invite", created_at=at(days * DAY), invited=email)

    raw = [
        chat(0, "ana@corp.example"),  # corp.example learned
        invite(1.5, "bo@corp.example"),  # the rule's own match: its last-seen moves on
        chat(2.2, "ana@corp.example"),  # handed over; stored as seen lately: no change
        chat(2.8, "ana@corp.example"),  # within a day of the last hand-over
        chat(101.0, "cy@other.example"),  # another domain: a baseline
        invite(101.6, "di@corp.example"),  # corp.example unseen for 100 days since 1.5
    ]
    return [parse_activity(a) for a in raw]


def alerts(store: SqliteStore) -> set[str]:
    return {a["alert_id"] for a in store.alerts() if a["kind"] == "detection"}


def test_a_restart_remembers_what_a_whole_run_remembers(tmp_path, rules_dir, make_activity):
    rules_dir.write("rule.yml", RULE)
    ruleset = rules_dir.load()
    activities = feed(make_activity)
    whole = SqliteStore(tmp_path / "whole.db")
    build.pipeline(ruleset, whole, live=True).run(iter(activities))
    expected = alerts(whole)
    whole.close()
    for cut in range(1, len(activities)):
        path = tmp_path / f"cut{cut}.db"
        first = SqliteStore(path)
        build.pipeline(ruleset, first, live=True).run(iter(activities[:cut]))
        first.close()
        second = SqliteStore(path)
        build.pipeline(ruleset, second, live=True).run(iter(activities[cut:]))
        found = alerts(second)
        second.close()
        assert found == expected, f"restarted after activity {cut}: {found} / {expected}"
