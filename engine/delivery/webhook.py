"""Signed webhooks: the alert JSON of DESIGN §6, signed with the Standard Webhooks scheme.

Headers (standardwebhooks.com, spec 1.0):
- `webhook-id`: the alert id and the destination (plus `_closed` for a closing summary):
  the same on every attempt, so a receiver drops duplicates by it. No `.` in it, since
  the id is part of the signed `id.timestamp.body` string.
- `webhook-timestamp`: unix seconds of this attempt (receivers reject stale ones).
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, space-separated
  when a previous secret is still being rotated out.
The secret may be written `whsec_<base64>` (the spec's serialization; the key is the
decoded bytes) or as any other string (the key is its UTF-8 bytes).

A digest is one request with a `detect.digest/v1` body listing the alerts, under a
`webhook-id` of its own (`dg_…_<destination>_digest`), stable across retries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from engine.alerts import json_safe
from engine.config import signing_key
from engine.delivery.digest import DigestInfo

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")
EVENT_HEADER = "detect-event"


def public_alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The §6 alert without the engine's private `_` keys."""
    return {k: v for k, v in alert.items() if not k.startswith("_")}


def _json(value: Any) -> str:
    """Compact, ASCII-only JSON; a float JSON cannot write (NaN, Infinity) as null, so a
    receiver's strict parser always accepts what was signed."""
    try:
        return json.dumps(value, separators=(",", ":"), default=str, allow_nan=False)
    except ValueError:
        return json.dumps(json_safe(value), separators=(",", ":"), default=str, allow_nan=False)


def body_for(alert: Mapping[str, Any]) -> str:
    """The exact bytes (as text) that are sent and signed: compact, ASCII-only JSON."""
    return _json(public_alert(alert))


def message_id(alert_id: str, destination: str, purpose: str = "opened") -> str:
    base = f"{alert_id}_{_UNSAFE_ID.sub('-', destination)}"
    return base if purpose == "opened" else f"{base}_{purpose}"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature over `id.timestamp.body`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(
    secrets: list[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: float = 300,
) -> bool:
    """What a receiver does (and what docs/delivery.md shows): recompute, compare in
    constant time against each `v1` signature, and refuse stale or future timestamps."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    if not msg_id or not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        return False
    expected = sign(secret, msg_id, int(stamp), body).split(",", 1)[1]
    for candidate in lowered.get("webhook-signature", "").split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


# A webhook digest is one request; past this many alerts it is split into numbered
# parts (`part`, `parts`), so that no receiver has to accept an unbounded body.
DIGEST_MAX_ALERTS = 500
DIGEST_SCHEMA = "detect.digest/v1"


def digest_bodies(
    alerts: Sequence[Mapping[str, Any]], info: DigestInfo
) -> list[tuple[str, list[str]]]:
    """The digest as signed-webhook bodies (usually one), each with its alerts' ids:
    the §6 alert JSON of every alert, as a single alert's webhook would carry it."""
    from engine.activity import format_timestamp

    chunks = [
        list(alerts[start : start + DIGEST_MAX_ALERTS])
        for start in range(0, len(alerts), DIGEST_MAX_ALERTS)
    ] or [[]]
    bodies = []
    for number, chunk in enumerate(chunks, start=1):
        body = {
            "schema": DIGEST_SCHEMA,
            "digest_id": info.digest_id,
            "part": number,
            "parts": len(chunks),
            "period_start": format_timestamp(info.period_start, "seconds"),
            "period_end": format_timestamp(info.period_end, "seconds"),
            "early": info.early,
            "below": info.below,
            "alert_count": len(chunk),
            "alerts": [public_alert(a) for a in chunk],
        }
        text = _json(body)
        bodies.append((text, [str(a.get("alert_id", "")) for a in chunk]))
    return bodies
