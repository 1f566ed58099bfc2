"""Templated webhooks: a JSON body from a template over the alert, values inserted as
JSON values (never as raw text), custom headers and the Standard Webhooks signature."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.delivery.conftest import SECRET, make_alert, save_alerts
from tests.delivery.destinations import LONG, destination, hostile_alert, run
from tests.delivery.test_webhook import receiver_verifies

JIRA = {
    "fields": {
        "project": {"key": "SEC"},
        "issuetype": {"name": "Task"},
        "summary": "[{severity}] {title}",
        "description": "{description}\n\nRunbook:\n{runbook}\n\nAlert {alert_id}",
        "labels": "{tags}",
        "customfield_10010": "{event_count}",
        "customfield_10011": "{missing.field}",
    }
}


def test_jira_body_from_the_template_with_typed_values(db, clock, receivers):
    hook = receivers(lambda r: (201, '{"id":"10000","key":"SEC-1"}', {}))
    alert = make_alert(1)
    save_alerts(db, [alert])
    config = destination(
        "templated_webhook",
        url=hook.url,
        template=JIRA,
        headers={"Authorization": "Basic dXNlcjp0b2tlbg=="},
        secret=SECRET,
    )
    assert run(db, clock, {"jira": config}).sent == 1
    (request,) = hook.requests
    fields = request.json()["fields"]
    assert fields["project"] == {"key": "SEC"}
    assert fields["summary"] == f"[high] {alert.title}"
    assert fields["description"].startswith("Single sign-on was turned off.\n\nRunbook:\n1. Ask")
    assert fields["labels"] == ["defense-evasion"]
    assert fields["customfield_10010"] == 1  # a number stays a number
    assert fields["customfield_10011"] is None
    assert request.headers["Authorization"] == "Basic dXNlcjp0b2tlbg=="
    assert request.headers["detect-event"] == "alert.opened"
    assert receiver_verifies(SECRET, request, clock())


def test_hostile_values_cannot_change_the_shape_of_the_body(db, clock, receivers):
    hook = receivers(lambda r: (204, "", {}))
    breakout = '", "admin": true, "x": "'
    alert = hostile_alert(1, title=breakout + "}</script>{{", dedup_key='"},{"evil":1')
    save_alerts(db, [alert])
    template = {
        "text": "{title}",
        "key": "{dedup_key}",
        "n": "{event_count}",
        "who": "{indicators.emails[0]}",
    }
    config = destination("templated_webhook", url=hook.url, template=template)
    assert run(db, clock, {"mm": config}).sent == 1
    body = hook.requests[0].json()
    assert set(body) == {"text", "key", "n", "who"}
    assert body["text"] == alert.title and body["key"] == '"},{"evil":1'
    assert body["who"] == "<!channel>@evil.example"
    assert "signature" not in str(hook.requests[0].headers).lower()


def test_discord_style_list_template_and_long_fields(db, clock, receivers):
    hook = receivers(lambda r: (204, "", {}))
    save_alerts(db, [hostile_alert(1)])
    template = {"content": "{severity}: {title}", "embeds": [{"description": "{description}"}]}
    config = destination("templated_webhook", url=hook.url, template=template)
    assert run(db, clock, {"discord": config}).sent == 1
    body = hook.requests[0].json()
    assert body["embeds"][0]["description"].endswith(LONG)  # the template decides; no cut
    assert "Zoë 😀 名前" in body["content"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs a `template`"),
        ({"template": {"a": "{unclosed"}}, "unclosed"),
        (
            {"template": {"a": "{title}"}, "smtp": {"host": "x", "from": "a@b", "to": ["c@d"]}},
            "only used by type: email",
        ),
    ],
)
def test_bad_templates_are_refused_at_load(options, message):
    with pytest.raises(ValidationError, match=message):
        destination("templated_webhook", url="https://example.com/hook", **options)
