"""Signed webhooks, checked the way a receiver checks them, and the destination options."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.config import DestinationConfig, load_config
from engine.delivery.dispatcher import Dispatcher
from engine.delivery.webhook import message_id, sign, verify
from engine.errors import ConfigError
from tests.delivery.conftest import SECRET, Request, make_alert, save_alerts, webhook


def receiver_verifies(secret: str, request: Request, now: float) -> bool:
    """Standard Webhooks verification written out as a receiver would, not via our code:
    decode the whsec_ key, HMAC-SHA256 over `id.timestamp.body` (the raw body bytes),
    base64, constant-time compare against each `v1,` entry, reject stale timestamps."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = request.headers["webhook-id"]
    timestamp = request.headers["webhook-timestamp"]
    if abs(now - int(timestamp)) > 300:
        return False
    signed = f"{msg_id}.{timestamp}.".encode() + request.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        version == "v1" and hmac.compare_digest(value, expected)
        for version, _, value in (
            entry.partition(",") for entry in request.headers["webhook-signature"].split()
        )
    )


def run(db, clock, destinations) -> None:
    with Dispatcher(db, destinations, clock=clock, sleep=clock.sleep, rng=random.Random(3)) as d:
        d.dispatch_pending()


def test_a_receiver_can_verify_every_request(db, clock, receivers):
    hook = receivers()
    alert = make_alert(1)
    save_alerts(db, [alert])
    config = webhook(hook.url, headers={"Authorization": "Bearer gateway-token-123"})
    run(db, clock, {"soar.main": config})
    (request,) = hook.requests
    assert receiver_verifies(SECRET, request, clock())
    assert request.headers["webhook-id"] == f"{alert.alert_id}_soar-main"
    assert "." not in request.headers["webhook-id"]
    assert request.headers["webhook-timestamp"] == str(int(clock()))
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == "Bearer gateway-token-123"
    assert request.headers["detect-event"] == "alert.opened"
    body = request.json()
    # Exactly the §6 alert, without the engine's private keys.
    assert body == alert.to_dict()
    assert list(body)[:3] == ["schema", "alert_id", "kind"]
    # Tampering is detected.
    forged = Request(request.at, request.real, request.path, request.headers, request.body + b" ")
    assert not receiver_verifies(SECRET, forged, clock())
    assert not receiver_verifies(SECRET, request, clock() + 301)


def test_rotation_signs_with_both_secrets(db, clock, receivers):
    hook = receivers()
    save_alerts(db, [make_alert(1)])
    old = "an-older-plain-secret-of-enough-length"
    run(db, clock, {"soar": webhook(hook.url, previous_secret=old)})
    (request,) = hook.requests
    assert len(request.headers["webhook-signature"].split()) == 2
    assert receiver_verifies(SECRET, request, clock())
    # A non-whsec secret is used as its UTF-8 bytes.
    key = old.encode()
    signed = (
        f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode()
        + request.body
    )
    digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert f"v1,{digest}" in request.headers["webhook-signature"].split()


def test_sign_and_verify_agree_and_reject_what_they_should():
    body = json.dumps({"a": 1}).encode()
    signature = sign(SECRET, "msg_1", 1_700_000_000, body)
    assert signature.startswith("v1,")
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": f"v1a,xyz {signature}",
    }
    assert verify(SECRET, headers, body, now=1_700_000_100)
    assert not verify(SECRET, headers, body + b"x", now=1_700_000_100)
    assert not verify(SECRET, headers, body, now=1_700_000_400)
    assert not verify("whsec_" + base64.b64encode(b"x" * 32).decode(), headers, body, 1.7e9)
    assert message_id("al_1", "soar.main", "closed") == "al_1_soar-main_closed"


def test_a_retry_keeps_the_id_and_body_and_re_signs(db, clock, receivers):
    answers = iter([(500, "", {})])
    hook = receivers(lambda r: next(answers, (200, "ok", {})))
    save_alerts(db, [make_alert(1)])
    run(db, clock, {"soar": webhook(hook.url)})
    first, second = hook.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]
    assert receiver_verifies(SECRET, first, first.at)
    assert receiver_verifies(SECRET, second, second.at)


# -- destination options --------------------------------------------------------------


def bad(**options) -> str:
    with pytest.raises(ValidationError) as error:
        DestinationConfig.model_validate(options)
    return str(error.value)


def test_https_is_required_except_on_loopback_or_when_allowed():
    assert "must use https" in bad(type="slack", url="http://hooks.example.com/x")
    for url in ("http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]/x"):
        DestinationConfig.model_validate({"type": "slack", "url": url})
    DestinationConfig.model_validate(
        {"type": "slack", "url": "http://hooks.internal/x", "allow_insecure_http": True}
    )
    assert "https" in bad(type="slack", url="ftp://example.com/x")
    assert "needs a `url`" in bad(type="slack")


def test_webhook_options_are_checked():
    url = "https://soar.example.com/hooks/detect"
    assert "needs a `secret`" in bad(type="webhook", url=url)
    assert "too short" in bad(type="webhook", url=url, secret="short")
    assert "base64" in bad(type="webhook", url=url, secret="whsec_***notbase64***")
    assert "set by the sender" in bad(
        type="webhook", url=url, secret=SECRET, headers={"webhook-signature": "x"}
    )
    assert "set by the sender" in bad(
        type="webhook", url=url, secret=SECRET, headers={"Content-Type": "text/plain"}
    )
    assert "line break" in bad(type="webhook", url=url, secret=SECRET, headers={"X-A": "a\r\nb"})
    assert "only used by type: webhook" in bad(type="slack", url=url, secret=SECRET)
    assert "not used by type: console" in bad(type="console", url=url)
    assert "Extra inputs are not permitted" in bad(type="slack", url=url, channel="#sec")
    assert "retry_max_delay" in bad(
        type="webhook", url=url, secret=SECRET, retry_initial_delay="1h", retry_max_delay="1m"
    )


def test_config_file_errors_never_quote_secrets(tmp_path: Path):
    path = tmp_path / "detect.yaml"
    path.write_text(
        "destinations:\n"
        "  soar:\n"
        "    type: webhook\n"
        "    url: http://soar.example.com/hooks/T0SECRETPATH\n"
        "    secret: ${HOOK_SECRET}\n"
        "    headers: {X-Api-Key: hdr-secret-value-999}\n"
        "    min_severity: loud\n"
    )
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={"HOOK_SECRET": "whsec_" + "A" * 44})
    message = str(error.value)
    assert "T0SECRETPATH" not in message and "hdr-secret-value-999" not in message
    assert "AAAAAAAA" not in message
    assert "detect.yaml" in message


def test_every_option_parses_from_yaml(tmp_path: Path):
    path = tmp_path / "detect.yaml"
    path.write_text(
        "destinations:\n"
        "  secops:\n"
        "    type: slack\n"
        "    url: ${SLACK_URL}\n"
        "    min_severity: HIGH\n"
        "    rule_ids: ['anthropic.sso.*']\n"
        "    exclude_rule_ids: [anthropic.sso.noisy]\n"
        "    tags: [defense-evasion]\n"
        "    exclude_tags: [test]\n"
        "    kinds: [detection]\n"
        "    timeout: 5s\n"
        "    give_up_after: 12h\n"
        "    retry_initial_delay: 1s\n"
        "    retry_max_delay: 5m\n"
        "    summary_on_close: true\n"
        "    max_messages_per_second: 0.5\n"
        "    max_burst: 2\n"
    )
    config = load_config(path, environ={"SLACK_URL": "https://hooks.slack.com/services/T/B/x"})
    secops = config.destinations["secops"]
    assert secops.min_severity == "high" and secops.give_up_after.total_seconds() == 43200
    assert secops.max_messages_per_second == 0.5 and secops.summary_on_close
    assert "hooks.slack.com" not in repr(config)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, "sent"),
        (204, "sent"),
        (301, "dead"),
        (400, "dead"),
        (401, "dead"),
        (403, "dead"),
        (404, "dead"),
        (408, "retry"),
        (410, "dead"),
        (422, "dead"),
        (429, "retry"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
    ],
)
def test_status_classification(status, kind):
    from engine.delivery.transport import classify

    assert classify(status, "reason", None).kind == kind


def test_retry_after_parsing():
    from engine.delivery.transport import parse_retry_after

    assert parse_retry_after("7", 0) == 7
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 40) == 60
    assert parse_retry_after("-5", 0) == 0
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after(None, 0) is None
