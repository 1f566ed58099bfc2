"""Exact edges of delivery safety checks: the webhook timestamp tolerance, and the
characters that keep a rule's reference from becoming a Slack link."""

from __future__ import annotations

import json

import pytest

from engine.delivery.slack import build_message
from engine.delivery.webhook import sign, verify
from tests.delivery.conftest import SECRET, make_alert

STAMP = 1_700_000_000


def _headers(stamp: int = STAMP) -> tuple[dict[str, str], bytes]:
    body = b'{"alert_id": "a1"}'
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(SECRET, "msg_1", stamp, body),
    }, body


@pytest.mark.parametrize("offset", [-300, 300, 0])
def test_a_timestamp_exactly_at_the_tolerance_is_accepted(offset):
    headers, body = _headers()
    assert verify(SECRET, headers, body, now=STAMP + offset)


@pytest.mark.parametrize("offset", [-301, 301, -300.5, 300.5])
def test_a_timestamp_just_past_the_tolerance_is_refused(offset):
    headers, body = _headers()
    assert not verify(SECRET, headers, body, now=STAMP + offset)


def test_the_tolerance_is_the_callers():
    headers, body = _headers()
    assert verify(SECRET, headers, body, now=STAMP + 60, tolerance=60)
    assert not verify(SECRET, headers, body, now=STAMP + 61, tolerance=60)


@pytest.mark.parametrize("unsafe", ["|", "<", ">", "&", " ", "\n", "\t", "\r"])
def test_a_reference_with_one_link_breaking_character_is_not_linked(unsafe):
    reference = f"https://evil.example/a{unsafe}b"
    message = json.dumps(build_message(make_alert(1, reference=reference).to_state()))
    assert "<https://evil.example" not in message


def test_a_plain_https_reference_is_linked():
    reference = "https://example.com/runbooks/sso?x=1#step-2"
    message = json.dumps(build_message(make_alert(1, reference=reference).to_state()))
    assert f"<{reference}|" in message
