"""Google Chat incoming webhook: a cardsV2 card, HTML-escaped event data, one thread per
dedup key, the 32,000-byte limit."""

from __future__ import annotations

from tests.delivery.conftest import Request, grow, make_alert, save_alerts
from tests.delivery.destinations import (
    CHAT_LIMIT,
    LONG,
    chat_html_texts,
    chat_problem,
    destination,
    hostile_alert,
    run,
    strings,
)

URL_QUERY = "?key=AIzaSyKEY&token=secretTOKENvalue123"


def chat_like(request: Request):
    problem = chat_problem(request)
    return (400, problem, {}) if problem else (200, '{"name": "spaces/AAA/messages/1"}', {})


def test_the_card_and_thread_match_the_documented_schema(db, clock, receivers):
    hook = receivers(chat_like)
    alert = make_alert(1, reference="https://example.com/runbooks/sso")
    save_alerts(db, [alert])
    report = run(db, clock, {"chat": destination("google_chat", url=hook.url + URL_QUERY)})
    assert report.sent == 1
    (request,) = hook.requests
    assert "key=AIzaSyKEY&token=secretTOKENvalue123" in request.path
    payload = request.json()
    card = payload["cardsV2"][0]["card"]
    assert card["header"] == {"title": "HIGH · SSO disabled", "subtitle": f"Alert {alert.alert_id}"}
    assert payload["text"] == "HIGH · SSO disabled"
    facts = {
        w["decoratedText"]["topLabel"]: w["decoratedText"]["text"]
        for section in card["sections"]
        for w in section["widgets"]
        if "decoratedText" in w
    }
    assert facts["Actor"] == "ana1@example.com" and facts["IP address"] == "192.0.2.7"
    assert "1. Ask the admin why.<br>2. Turn it back on." in chat_html_texts(payload)
    button = card["sections"][-1]["widgets"][-1]["buttonList"]["buttons"][0]
    assert button["onClick"]["openLink"]["url"] == alert.reference


def test_hostile_event_data_is_escaped_and_cut(db, clock, receivers):
    hook = receivers(chat_like)
    save_alerts(db, [hostile_alert(1)])
    run(db, clock, {"chat": destination("google_chat", url=hook.url)})
    (request,) = hook.requests
    assert chat_problem(request) is None and len(request.body) <= CHAT_LIMIT
    payload = request.json()
    html = " ".join(chat_html_texts(payload))
    for raw in ("<!channel>", "<at>", "<users/all>", "<b>bold", "<a href", "<img", "<script>"):
        assert raw not in html
    assert "&lt;!channel&gt;" in html and "&lt;users/all&gt;" in html
    assert "[Open runbook](http://evil.example/)" in html  # shown as text: no Markdown here
    assert "Zoë 😀 名前" in html
    assert all(LONG not in text for text in strings(payload))
    assert "shortened" in html
    assert "<" not in payload["text"] and "\u202e" not in request.body.decode()


def test_updates_of_one_alert_share_a_thread(db, clock, receivers):
    hook = receivers(chat_like)
    alert, other = make_alert(1), make_alert(2)
    save_alerts(db, [alert, other])
    config = destination("google_chat", url=hook.url, summary_on_close=True)
    run(db, clock, {"chat": config})
    grow(db, alert, 9, watermark="2026-05-07T12:00:00.000000Z")
    run(db, clock, {"chat": config})
    first, second, closing = hook.requests
    keys = [r.json()["thread"]["threadKey"] for r in (first, second, closing)]
    assert keys[0] == keys[2] != keys[1]
    assert "Final count" in closing.json()["cardsV2"][0]["card"]["header"]["title"]


def test_a_huge_alert_fits_the_limit(db, clock, receivers):
    hook = receivers(chat_like)
    context = {f"k{i}": "名" * 5000 for i in range(8)}
    save_alerts(db, [hostile_alert(1, title="😀" * 9000, context=context)])
    assert run(db, clock, {"chat": destination("google_chat", url=hook.url)}).sent == 1
    assert len(hook.requests[0].body) <= 30_000
