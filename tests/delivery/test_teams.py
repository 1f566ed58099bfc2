"""Microsoft Teams Workflows webhook: the Adaptive Card as Teams documents it, hostile
event data inert, the 28 KB limit, digests."""

from __future__ import annotations

from datetime import timedelta

from tests.delivery.conftest import Request, make_alert, save_alerts
from tests.delivery.destinations import (
    HOSTILE_VALUES,
    LONG,
    TEAMS_LIMIT,
    deliveries,
    destination,
    hostile_alert,
    run,
    teams_markdown_texts,
    teams_problem,
    teams_runs,
)


def teams_like(request: Request):
    problem = teams_problem(request)
    return (400, problem, {}) if problem else (202, "", {})


def test_the_card_matches_the_documented_envelope(db, clock, receivers):
    hook = receivers(teams_like)
    alert = make_alert(1, reference="https://example.com/runbooks/sso")
    save_alerts(db, [alert])
    report = run(db, clock, {"teams": destination("teams", url=hook.url)})
    assert report.sent == 1 and report.dead == 0
    (request,) = hook.requests
    assert request.headers["Content-Type"].startswith("application/json")
    payload = request.json()
    card = payload["attachments"][0]["content"]
    assert payload["type"] == "message"
    assert payload["attachments"][0]["contentUrl"] is None
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["version"] == "1.4"
    assert card["body"][0] == {
        "type": "TextBlock",
        "text": "HIGH alert",
        "wrap": True,
        "weight": "Bolder",
        "color": "attention",
        "size": "Small",
    }
    runs = teams_runs(payload)
    assert alert.title in runs
    assert "ana1@example.com" in runs and "192.0.2.7" in runs and "org_01ABC" in runs
    assert "1. Ask the admin why." in runs and "2. Turn it back on." in runs
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "Open reference", "url": alert.reference}
    ]
    assert [d[3] for d in deliveries(db)] == ["sent"]


def test_hostile_event_data_is_only_ever_in_text_runs(db, clock, receivers):
    hook = receivers(teams_like)
    save_alerts(db, [hostile_alert(1, reference="javascript:alert(1)")])
    run(db, clock, {"teams": destination("teams", url=hook.url)})
    (request,) = hook.requests
    assert teams_problem(request) is None
    assert len(request.body) <= TEAMS_LIMIT
    payload = request.json()
    markdown = " ".join(teams_markdown_texts(payload))
    for marker in ("<!channel>", "evil.example", "<at>", "<users/all>", "<b>", "<a href", "**"):
        assert marker not in markdown
    runs = " ".join(teams_runs(payload))
    assert "SSO disabled by <!channel> [Open runbook](http://evil.example/) Zoë 😀 名前" in runs
    assert "<at>everyone</at> <users/all> **bold**" in runs
    assert "Zoë 😀 名前" in request.body.decode("utf-8")
    assert "\u202e" not in request.body.decode("utf-8")
    # 5,000-character values are cut, and the card says so.
    assert LONG not in runs
    assert any("shortened" in text for text in teams_markdown_texts(payload))
    # Only the https reference becomes a link; a javascript: one is left out.
    assert "actions" not in payload["attachments"][0]["content"]
    assert all(value not in str(payload.get("actions")) for value in HOSTILE_VALUES)


def test_a_huge_alert_is_cut_to_fit_and_still_sent(db, clock, receivers):
    hook = receivers(teams_like)
    context = {f"field_{i}_Zoë": "名" * 5000 for i in range(8)}
    alert = hostile_alert(1, title="名前" * 3000, context=context, runbook=("名" * 5000 + "\n") * 5)
    save_alerts(db, [alert])
    report = run(db, clock, {"teams": destination("teams", url=hook.url)})
    assert report.sent == 1
    (request,) = hook.requests
    assert len(request.body) <= 26_000 and teams_problem(request) is None


def test_a_digest_is_cards_under_the_limit_listing_every_alert_once(db, clock, receivers):
    hook = receivers(teams_like)
    alerts = [hostile_alert(i, severity="low") for i in range(90)]
    save_alerts(db, alerts)
    config = destination("teams", url=hook.url, digest={"below": "medium", "every": "1h"})
    clock.now += timedelta(hours=2).total_seconds()
    import random

    from engine.delivery.dispatcher import Dispatcher

    with Dispatcher(
        db, {"teams": config}, clock=clock, sleep=clock.sleep, rng=random.Random(1)
    ) as d:
        d.dispatch_pending(flush_digests=True)
    assert len(hook.requests) == 3  # 40 + 40 + 10
    listed = []
    for request in hook.requests:
        assert teams_problem(request) is None
        listed += [t for t in teams_runs(request.json()) if t.startswith("al_")]
    assert sorted(listed) == sorted(a.alert_id for a in alerts)
    assert {d[3] for d in deliveries(db)} == {"sent"}
