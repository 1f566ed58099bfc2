"""The Slack message: Block Kit within every limit, and hostile event text kept as text."""

from __future__ import annotations

import json
import re

from engine.delivery.slack import MAX_HEADER, build_message, escape
from tests.delivery.conftest import all_text, make_alert, slack_problem

HOSTILE_EMAIL = "<!channel>@evil.example"
HOSTILE_AGENT = "<http://evil.example/phish|Open runbook> " + "A" * 5000
# A raw `<` that starts a Slack control sequence: a mention, a link, a special command.
CONTROL = re.compile(r"<[!@#]|<https?:|<mailto:")


def hostile_alert():
    alert = make_alert(
        1,
        title="SSO disabled by <!channel> & <!here> from 東京 — Zoë 🚀 " + "x" * 400,
        description="<@U123> please look\n" * 200,
        runbook="Step <!subteam^S1> " * 500,
        reference="https://example.com/runbooks/sso",
        context={f"ctx.{i}": f"<!everyone> value {i} " + "v" * 300 for i in range(60)},
        indicators={
            "emails": [HOSTILE_EMAIL, "b@example.com"],
            "ip_addresses": ["192.0.2.7\n*Severity*: low"],
            "actor_ids": ["user_01"],
        },
        organization_ids=["org_<!channel>"],
    )
    alert.events[0]["actor"]["user_agent"] = HOSTILE_AGENT
    alert.events[0]["actor"]["email_address"] = HOSTILE_EMAIL
    alert.events[0]["type"] = "org_sso_toggled\u202e<evil>"
    return alert.to_state()


def test_hostile_values_render_as_text_within_every_slack_limit():
    message = build_message(hostile_alert())
    assert slack_problem(message) is None
    texts = all_text(message)
    for text in texts:
        # Our own reference link is the only `<https:` allowed, and only the rule's.
        stripped = text.replace("<https://example.com/runbooks/sso|Reference>", "")
        assert not CONTROL.search(stripped), text[:200]
    joined = "\n".join(texts)
    assert "&lt;!channel&gt;@evil.example" in joined
    assert "&lt;http://evil.example/phish|Open runbook&gt;" in joined
    assert "\u202e" not in joined
    assert "東京 — Zoë 🚀" in joined
    # The injected newline cannot forge a field of its own.
    assert "192.0.2.7 *Severity*: low" in joined
    header = message["blocks"][0]
    assert header["type"] == "header" and len(header["text"]["text"]) <= MAX_HEADER
    assert header["text"]["text"].endswith("…")
    # 60 context entries: the first ones shown, the rest pointed to.
    shown = re.search(r"and (\d+) more", joined)
    assert shown and 30 < int(shown.group(1)) < 60
    assert "detect alerts show al_" in joined
    assert len(json.dumps(message)) < 20000
    assert message["unfurl_links"] is False and message["unfurl_media"] is False
    for block in message["blocks"]:
        for item in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if item and item["type"] == "mrkdwn":
                assert item["verbatim"] is True


def test_the_expected_fields_are_all_there():
    message = build_message(make_alert(3).to_state())
    fields = next(b for b in message["blocks"] if "fields" in b)["fields"]
    names = [f["text"].split("\n")[0] for f in fields]
    assert names == [
        "*Actor*",
        "*IP address*",
        "*Organization*",
        "*Activity type*",
        "*Events*",
        "*First event*",
        "*Last event*",
        "*User agent*",
    ]
    assert "ana3@example.com" in fields[0]["text"]
    context = message["blocks"][-1]
    assert context["type"] == "context"
    assert "anthropic.sso.disabled" in context["elements"][0]["text"]
    assert f"al_{3:024x}" in context["elements"][0]["text"]
    assert message["text"].startswith("[HIGH] SSO disabled by ana3@example.com")
    assert "Runbook" in json.dumps(message)


def test_escape_never_cuts_an_entity_and_respects_the_limit():
    for limit in range(1, 30):
        for text in ("&&&&&&&&&&&&", "a<b>c&d" * 5, "plain text that is long enough"):
            out = escape(text, limit)
            assert len(out) <= limit
            assert not re.search(r"&(?!amp;|lt;|gt;)", out), out
            if len(out) < len(text):
                assert out.endswith("…")


def test_fallback_text_is_escaped_too():
    state = make_alert(1, title="<!channel> ping").to_state()
    message = build_message(state)
    assert "<!channel>" not in message["text"]
    assert "&lt;!channel&gt; ping" in message["text"]


def test_unsafe_reference_is_not_linked():
    state = make_alert(1, reference="https://evil.example/|Click here>").to_state()
    assert "<https://evil" not in json.dumps(build_message(state))
    state = make_alert(1, reference="javascript:alert(1)").to_state()
    assert "javascript" not in json.dumps(build_message(state))


def test_closing_summary_reports_the_final_count():
    alert = make_alert(1, event_count=42)
    message = build_message(alert.to_state(), purpose="closed")
    assert slack_problem(message) is None
    assert "Final count" in message["blocks"][0]["text"]["text"]
    assert "*42 events*" in json.dumps(message)
    assert message["text"].startswith("[HIGH] Final count:")


def test_routing_notice_is_shown():
    message = build_message(make_alert(1).to_state(), notice="names <!channel> unknown")
    assert ":warning: names &lt;!channel&gt; unknown" in json.dumps(message)


def test_a_strict_slack_receiver_accepts_a_burst_with_a_hostile_alert(db, clock, receivers):
    from engine.delivery.dispatcher import Dispatcher
    from tests.delivery.conftest import SlackLike, save_alerts, slack

    slack_like = SlackLike()
    hook = receivers(slack_like)
    hostile = make_alert(0)
    hostile.title = "SSO disabled by <!channel> from 東京"
    hostile.indicators["emails"] = [HOSTILE_EMAIL]
    hostile.events[0]["actor"]["user_agent"] = HOSTILE_AGENT
    save_alerts(db, [hostile, *[make_alert(i) for i in range(1, 30)]])
    with Dispatcher(db, {"secops": slack(hook.url)}, clock=clock, sleep=clock.sleep) as d:
        report = d.dispatch_pending()
    assert report.sent == 30 and slack_like.rate_limited == 0
    first = hook.requests[0].json()
    joined = "\n".join(all_text(first))
    assert "&lt;!channel&gt;" in joined and "<!channel>" not in joined
    assert "&lt;http://evil.example/phish|Open runbook&gt;" in joined
    assert "東京" in joined
