"""PagerDuty Events API v2: a `trigger` per alert, `resolve` when it closes.

    POST https://events.pagerduty.com/v2/enqueue      (events.eu.pagerduty.com in the EU)
    {"routing_key": "…", "event_action": "trigger", "dedup_key": "<alert id>",
     "payload": {"summary", "source", "severity", "timestamp", "component", "group",
                 "class", "custom_details"}, "client", "links"}

`dedup_key` is the alert id, so a trigger sent twice (a retry after a crash) lands on the
same PagerDuty alert, and a `resolve` finds it. Severities map critical → critical,
high → error, medium → warning, low and info → info. `summary` is cut to PagerDuty's
1,024 characters, the event kept under its 512 KB.

The routing key is a secret: it is not in the stored payload (the outbox keeps payloads
in the state database) but spliced in at send time, and it is registered with the
redactor.

With `resolve_on_close: true`, when the alert's dedup window closes (the same moment
`summary_on_close` sends its final count) a `resolve` with the same `dedup_key` follows;
without it, `summary_on_close` re-sends the `trigger` with the final figures, which
PagerDuty folds into the open alert.

Answers: 202 accepted; 400 is permanent (a dead letter with PagerDuty's `errors`); 429
and 5xx are retried. PagerDuty sends no Retry-After and advises waiting: a 429 without
one waits at least 30 seconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from engine.config import DestinationConfig
from engine.delivery.alert_text import (
    TRUNCATION_NOTE,
    Clipper,
    context_facts,
    facts,
    fit,
    period,
    printable,
    runbook_steps,
    safe_url,
    title_of,
)
from engine.delivery.digest import DigestInfo, event_total, plural
from engine.delivery.json_channel import JsonChannel
from engine.delivery.transport import REDACTOR, Outcome

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
MAX_SUMMARY = 1024
MAX_BYTES = 500_000
# PagerDuty sends no Retry-After; its guidance is to wait before retrying a 429.
MIN_WAIT_AFTER_429 = 30.0
_RANK = ("info", "low", "medium", "high", "critical")


def severity_of(alert: Mapping[str, Any]) -> str:
    return SEVERITY.get(str(alert.get("severity", "")), "info")


def _summary(text: str) -> str:
    text = printable(text)
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"


def _trigger(alert: Mapping[str, Any], purpose: str, notice: str, clip: Clipper) -> dict:
    details: dict[str, Any] = {label: clip(value, 1000) for label, value in facts(alert)}
    if alert.get("description"):
        details["Description"] = clip(alert["description"], 4000, single_line=False)
    steps = runbook_steps(alert)
    if steps:
        details["First steps"] = [clip(step, 1000) for step in steps]
    context = context_facts(alert, limit=30)
    if context:
        details["Context"] = {clip(k, 200): clip(v, 2000) for k, v in context}
    details["Alert id"] = printable(alert.get("alert_id", ""))
    labels = [*(alert.get("tags") or []), *(alert.get("mitre") or [])]
    if labels:
        details["Tags"] = [clip(t, 200) for t in labels]
    if purpose == "closed":
        details["Status"] = "final count: the alert's dedup window has closed"
    if notice:
        details["Notice"] = clip(notice, 500)
    if clip.cut:
        details["Note"] = TRUNCATION_NOTE + "; see `detect alerts show`."
    orgs = [str(o) for o in alert.get("organization_ids") or []]
    payload: dict[str, Any] = {
        "summary": _summary(title_of(alert)),
        "source": clip(orgs[0] if orgs else "detect", 255),
        "severity": severity_of(alert),
        "component": clip(alert.get("rule_id", "detect"), 255),
        "group": clip(str(alert.get("rule_name") or alert.get("rule_id") or "detect"), 255),
        "class": clip(alert.get("kind", "detection"), 255),
        "custom_details": details,
    }
    if alert.get("first_event_at"):
        payload["timestamp"] = printable(alert["first_event_at"])
    event: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": str(alert.get("alert_id", "")),
        "payload": payload,
        "client": "detect",
    }
    link = safe_url(alert.get("reference"))
    if link:
        event["links"] = [{"href": link, "text": "Rule reference"}]
    return event


def build_event(
    alert: Mapping[str, Any], purpose: str = "opened", notice: str = "", resolve: bool = False
) -> dict[str, Any]:
    """The event without its routing key (added when it is sent)."""
    if purpose == "closed" and resolve:
        return {"event_action": "resolve", "dedup_key": str(alert.get("alert_id", ""))}
    return fit(lambda clip: _trigger(alert, purpose, notice, clip), MAX_BYTES)


def _digest_event(alerts: list[Mapping[str, Any]], info: DigestInfo, clip: Clipper) -> dict:
    worst = max((str(a.get("severity", "info")) for a in alerts), key=_rank, default="info")
    listed = [
        {
            "alert_id": printable(a.get("alert_id", "")),
            "severity": printable(a.get("severity", "")),
            "rule_id": clip(a.get("rule_id", ""), 200),
            "title": clip(title_of(a), 300),
            "event_count": a.get("event_count", 0),
        }
        for a in alerts
    ]
    details: dict[str, Any] = {
        "Period": f"{period(info)}",
        "Alerts": listed,
    }
    if info.early:
        details["Note"] = "sent before the period ended (shutdown or end of a replay)"
    summary = (
        f"Digest: {plural(len(alerts), 'alert')} below {info.below.upper()}, "
        f"{plural(event_total(alerts), 'event')}"
    )
    return {
        "event_action": "trigger",
        "dedup_key": info.digest_id,
        "payload": {
            "summary": summary,
            "source": "detect",
            "severity": SEVERITY.get(worst, "info"),
            "class": "digest",
            "custom_details": details,
        },
        "client": "detect",
    }


def _rank(severity: str) -> int:
    return _RANK.index(severity) if severity in _RANK else 0


class PagerDutyChannel(JsonChannel):
    content_type = "application/json"

    def __init__(self, name: str, config: DestinationConfig) -> None:
        assert config.routing_key is not None
        self._routing_key = config.routing_key.get_secret_value()
        REDACTOR.add(self._routing_key)
        super().__init__(name, config)

    def render(self, alert: Mapping[str, Any], purpose: str, notice: str) -> str:
        event = build_event(alert, purpose, notice, self.config.resolve_on_close)
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False)

    def render_digest(
        self, alerts: list[Mapping[str, Any]], info: DigestInfo
    ) -> list[tuple[str, list[str]]]:
        event = fit(lambda clip: _digest_event(alerts, info, clip), MAX_BYTES)
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        return [(text, [str(a.get("alert_id", "")) for a in alerts])]

    def body(self, payload: str) -> bytes:
        """The stored event with the routing key as its first member."""
        assert payload.startswith("{")
        key = json.dumps(self._routing_key)
        return ('{"routing_key":' + key + "," + payload[1:]).encode("utf-8")

    def send(self, payload: str, msg_id: str, timestamp: int, purpose: str) -> Outcome:
        outcome = super().send(payload, msg_id, timestamp, purpose)
        if outcome.status == 429 and outcome.retry_after is None:
            return Outcome(outcome.kind, outcome.reason, outcome.status, MIN_WAIT_AFTER_429)
        return outcome
