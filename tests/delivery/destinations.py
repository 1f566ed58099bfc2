"""Helpers for the destination tests: hostile alerts, each service's documented payload
schema as a receiver would check it, and a dispatcher run under the fake clock."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from engine.config import DestinationConfig
from engine.delivery.dispatcher import Dispatcher
from tests.delivery.conftest import FakeClock, Request, make_alert

LONG = "A" * 5000
HOSTILE_VALUES = [
    "<!channel>",
    "[Open runbook](http://evil.example/)",
    "<a href='http://evil.example/'>click</a><img src=x onerror=alert(1)>",
    "<at>everyone</at> <users/all>",
    "Zoë 😀 名前 \u202egnp.exe",
]


def hostile_alert(index: int = 1, **changes: Any):
    """Every field a reader sees carries something a renderer might act on."""
    events = [
        {
            "id": f"act_{index}",
            "type": "org_sso_toggled<script>",
            "actor": {
                "type": "user_actor",
                "email_address": "<!channel>@evil.example",
                "ip_address": "192.0.2.7",
                "user_agent": "[Open runbook](http://evil.example/) " + LONG,
            },
        }
    ]
    fields: dict[str, Any] = dict(
        title="SSO disabled by <!channel> [Open runbook](http://evil.example/) Zoë 😀 名前",
        description="<b>bold</b> & <a href='http://evil.example/'>x</a>\n" + LONG,
        runbook="1. Check [this](http://evil.example/) <!here>\n2. " + LONG + "\n3. Third\n4. Four",
        indicators={
            "emails": ["<!channel>@evil.example"],
            "ip_addresses": ["192.0.2.7"],
            "actor_ids": ["user_01"],
        },
        context={
            "note": "<at>everyone</at> <users/all> **bold** " + LONG,
            "name": "Zoë 😀 名前",
        },
        events=events,
        reference="https://example.com/runbooks/sso",
    )
    fields.update(changes)
    return make_alert(index, **fields)


def destination(kind: str, **options: Any) -> DestinationConfig:
    return DestinationConfig.model_validate({"type": kind, **options})


def run(db: Path, clock: FakeClock, destinations: dict, **kwargs: Any):
    with Dispatcher(
        db, destinations, clock=clock, sleep=clock.sleep, rng=random.Random(5), **kwargs
    ) as d:
        return d.dispatch_pending()


def deliveries(db: Path) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT alert_id, destination, purpose, status, reason FROM deliveries "
            "ORDER BY delivery_id"
        ).fetchall()


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


# -- Teams ---------------------------------------------------------------------------------

TEAMS_LIMIT = 28 * 1024
_TEAMS_ELEMENTS = {"TextBlock", "RichTextBlock", "FactSet", "ColumnSet", "Container"}


def teams_problem(request: Request) -> str | None:
    """What a Teams Workflow webhook would refuse (schema per the Teams docs)."""
    if len(request.body) > TEAMS_LIMIT:
        return "413 Request Entity Too Large"
    payload = request.json()
    if payload.get("type") != "message" or len(payload.get("attachments", [])) != 1:
        return "not a message with one attachment"
    attachment = payload["attachments"][0]
    if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
        return "bad contentType"
    card = attachment["content"]
    if card.get("type") != "AdaptiveCard" or card.get("version") not in (
        "1.2",
        "1.3",
        "1.4",
        "1.5",
    ):
        return "not an Adaptive Card of a version Teams renders"
    for element in card["body"]:
        if element["type"] not in _TEAMS_ELEMENTS:
            return f"unknown element {element['type']}"
        runs_ok = all(
            i["type"] == "TextRun" and isinstance(i["text"], str)
            for i in element.get("inlines", [])
        )
        if element["type"] == "RichTextBlock" and not runs_ok:
            return "RichTextBlock inlines must be TextRuns"
        if element["type"] == "TextBlock" and not isinstance(element.get("text"), str):
            return "TextBlock without text"
    for action in card.get("actions", []):
        if action["type"] not in ("Action.OpenUrl", "Action.ShowCard", "Action.ToggleVisibility"):
            return "incoming webhooks do not support " + action["type"]
    return None


def teams_markdown_texts(payload: dict) -> list[str]:
    """The texts Teams renders as Markdown (TextBlocks, facts)."""
    card = payload["attachments"][0]["content"]
    found = []
    for element in card["body"]:
        if element["type"] == "TextBlock":
            found.append(element["text"])
        if element["type"] == "FactSet":
            found += [f["title"] + f["value"] for f in element["facts"]]
    return found


def teams_runs(payload: dict) -> list[str]:
    card = payload["attachments"][0]["content"]
    return [
        run["text"]
        for element in card["body"]
        if element["type"] == "RichTextBlock"
        for run in element["inlines"]
    ]


# -- Google Chat ---------------------------------------------------------------------------

CHAT_LIMIT = 32_000
_WIDGETS = {"textParagraph", "decoratedText", "buttonList", "divider"}


def chat_problem(request: Request) -> str | None:
    if len(request.body) > CHAT_LIMIT:
        return "400 message too large"
    if "messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD" not in request.path:
        return "thread key ignored without messageReplyOption"
    payload = request.json()
    if not isinstance(payload.get("text", ""), str):
        return "text must be a string"
    cards = payload.get("cardsV2")
    if not isinstance(cards, list) or len(cards) != 1:
        return "cardsV2 must hold the card"
    card = cards[0]
    if not isinstance(card.get("cardId"), str) or "card" not in card:
        return "CardWithId needs cardId and card"
    if not card["card"]["header"].get("title"):
        return "a header needs a title"
    widgets = 0
    for section in card["card"]["sections"]:
        for widget in section["widgets"]:
            (kind,) = widget.keys()
            if kind not in _WIDGETS:
                return f"unknown widget {kind}"
            widgets += 1
    if widgets > 100:
        return "over 100 widgets"
    key = payload.get("thread", {}).get("threadKey")
    if not isinstance(key, str) or not 0 < len(key) <= 4000:
        return "bad threadKey"
    return None


def chat_html_texts(payload: dict) -> list[str]:
    card = payload["cardsV2"][0]["card"]
    found = []
    for section in card["sections"]:
        for widget in section["widgets"]:
            if "textParagraph" in widget:
                found.append(widget["textParagraph"]["text"])
            if "decoratedText" in widget:
                found.append(widget["decoratedText"]["text"])
    return found


# -- PagerDuty -----------------------------------------------------------------------------

PD_SEVERITIES = {"critical", "error", "warning", "info"}


def pagerduty_problem(request: Request, routing_key: str) -> str | None:
    """The Events API v2 schema (trigger and resolve)."""
    if len(request.body) > 512 * 1024:
        return "413"
    event = request.json()
    if event.get("routing_key") != routing_key:
        return "invalid routing key"
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        return "event_action"
    key = event.get("dedup_key")
    if action != "trigger" and not key:
        return "dedup_key is required for acknowledge/resolve"
    if key is not None and (not isinstance(key, str) or len(key) > 255):
        return "dedup_key max 255"
    if action == "trigger":
        payload = event.get("payload") or {}
        if not isinstance(payload.get("summary"), str) or not 0 < len(payload["summary"]) <= 1024:
            return "summary required, max 1024"
        if not payload.get("source"):
            return "source required"
        if payload.get("severity") not in PD_SEVERITIES:
            return "severity"
        details = payload.get("custom_details")
        if details is not None and not isinstance(details, dict):
            return "custom_details must be an object"
        for link in event.get("links", []):
            if "href" not in link:
                return "link without href"
    allowed = {
        "routing_key",
        "event_action",
        "dedup_key",
        "payload",
        "client",
        "client_url",
        "links",
        "images",
    }
    if set(event) - allowed:
        return f"unknown fields {sorted(set(event) - allowed)}"
    return None


def answer_json(status: int, body: dict, headers: dict | None = None):
    return status, json.dumps(body), headers or {}
