"""A threshold alert raised after a crash is the alert an uninterrupted run raises.

The workers drill (benchmarks/redis_drill.py) once found a password-spraying alert whose
`indicators` lacked the first targeted account after a takeover: the window's first
sample activities, from which the alert takes its events and indicators, lived only in
the killed process's memory. Nothing here is specific to Redis: a `detect run` on SQLite
killed with SIGKILL right after a page's commit leaves the same state, which is what
closing the store without `suspend` leaves (everything was committed, the samples saved
by no one). Each cut point of the password-spraying fixture is tried.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.activity import parse_activity
from engine.runs import build
from engine.state.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
SPRAY = ROOT / "fixtures" / "anthropic" / "password_spray.jsonl"
RULE = ROOT / "rules" / "auth" / "password_spraying.yml"


def spray() -> list:
    lines = SPRAY.read_text(encoding="utf-8").splitlines()
    return [parse_activity(json.loads(line)) for line in lines if line.strip()]


def alerts(store: Any) -> dict[str, dict]:
    return {alert["alert_id"]: alert for alert in store.alerts()}


def test_a_threshold_alert_after_a_crash_equals_the_uninterrupted_runs(tmp_path, rules_dir):
    def opened(name: str) -> SqliteStore:
        return SqliteStore(tmp_path / f"{name}.db")

    crash_at_every_cut(rules_dir, opened)


def test_a_worker_taking_over_raises_the_uninterrupted_runs_alert(
    rules_dir, redis_client, redis_prefix
):
    """The same on Redis: the second store is the next holder's (its own cache)."""
    from engine.state.redis_store import RedisStore

    def opened(name: str) -> RedisStore:
        return RedisStore(redis_client, f"{redis_prefix}{name}:", "org_a")

    crash_at_every_cut(rules_dir, opened)


def crash_at_every_cut(rules_dir: Any, opened: Callable[[str], Any]) -> None:
    rules_dir.write("password_spraying.yml", RULE.read_text(encoding="utf-8"))
    ruleset = rules_dir.load()
    activities = spray()
    whole = opened("whole")
    build.pipeline(ruleset, whole, live=True).run(iter(activities))
    expected = alerts(whole)
    whole.close()
    assert len(expected) == 1
    (alert,) = expected.values()
    assert alert["event_count"] >= 5 and len(alert["indicators"]["emails"]) >= 5

    for cut in range(1, len(activities)):
        first = opened(f"cut{cut}")
        killed = build.pipeline(ruleset, first, live=True)
        for activity in activities[:cut]:
            killed.process(activity)
        killed.commit()  # the page's commit; the process dies right after it
        first.close()  # nothing is buffered any more: what SIGKILL would leave
        second = opened(f"cut{cut}")
        build.pipeline(ruleset, second, live=True).run(iter(activities[cut:]))
        found = alerts(second)
        second.close()
        assert found == expected, f"killed after activity {cut} of {len(activities)}"
