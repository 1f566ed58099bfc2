"""Microsoft Teams through a Workflows ("When a Teams webhook request is received")
webhook: one Adaptive Card per alert.

The envelope is the one Teams documents for incoming webhooks: `type: message` with one
attachment of `contentType: application/vnd.microsoft.card.adaptive` whose `content` is
the card (version 1.4, within the 1.5 Teams renders).

Hostile event data: `TextBlock` and `FactSet` always process Markdown, and backslash
escapes are not reliable in them, so no event-derived text is ever put there. Every value
that can come from an activity is a `TextRun` inside a `RichTextBlock`, the element the
Adaptive Card schema documents as not processing Markdown: `[Open runbook](http://evil)`
or `<!channel>` shows as those characters. Our own labels are the only text in
TextBlocks. The one link is an `Action.OpenUrl` to the rule's https reference.

Size: Teams refuses messages over about 28 KB; cards are kept under 26,000 bytes by
cutting long values (with a note on the card), never by dropping the alert. A Workflow
answers 202 with an empty body: every 2xx is success; 429 and 5xx are retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from engine.delivery.alert_text import (
    TRUNCATION_NOTE,
    Clipper,
    context_facts,
    facts,
    fit,
    period,
    runbook_steps,
    safe_url,
    severity_word,
    title_of,
)
from engine.delivery.digest import DigestInfo, plural
from engine.delivery.json_channel import JsonChannel

CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.4"
MAX_BYTES = 26_000
COLOURS = {"critical": "attention", "high": "attention", "medium": "warning"}
DIGEST_ALERTS_PER_CARD = 40


def _label(text: str, **style: Any) -> dict[str, Any]:
    """A TextBlock: our own fixed wording only (Markdown is processed here)."""
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _runs(*runs: dict[str, Any], **style: Any) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": list(runs), **style}


def _run(text: str, **style: Any) -> dict[str, Any]:
    """A TextRun: event data goes only here (Markdown is not processed)."""
    return {"type": "TextRun", "text": text, **style}


def _fact_line(label: str, value: str) -> dict[str, Any]:
    return _runs(_run(f"{label}: ", weight="Bolder"), _run(value), spacing="None")


def _envelope(body: list[dict[str, Any]], actions: list[dict[str, Any]]) -> dict[str, Any]:
    card: dict[str, Any] = {
        "$schema": SCHEMA,
        "type": "AdaptiveCard",
        "version": VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return {
        "type": "message",
        "attachments": [{"contentType": CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


def _card(alert: Mapping[str, Any], purpose: str, notice: str, clip: Clipper) -> dict[str, Any]:
    severity = str(alert.get("severity", "info"))
    colour = COLOURS.get(severity, "default")
    closing = purpose == "closed"
    lead = f"{severity_word(alert)} alert" + (" · final count" if closing else "")
    body: list[dict[str, Any]] = [
        _label(lead, weight="Bolder", color=colour, size="Small"),
        _runs(_run(clip(title_of(alert), 300), size="Large", weight="Bolder")),
    ]
    if closing:
        body.append(
            _label(
                "This alert kept growing after its notification; its dedup window has "
                "now closed. Final figures below."
            )
        )
    if alert.get("description"):
        body.append(_runs(_run(clip(alert["description"], 1200, single_line=False))))
    body.append(_label("Who, what, where", weight="Bolder", separator=True))
    body += [_fact_line(label, clip(value, 300)) for label, value in facts(alert)]
    context = context_facts(alert)
    if context and not closing:
        body.append(_label("Context", weight="Bolder", separator=True))
        body += [_fact_line(clip(k, 80), clip(v, 300)) for k, v in context]
    steps = runbook_steps(alert)
    if steps and not closing:
        body.append(_label("First steps", weight="Bolder", separator=True))
        body += [_runs(_run(clip(step, 500)), spacing="None") for step in steps]
    if notice:
        body.append(_runs(_run("⚠ " + clip(notice, 500), color="warning")))
    meta = f"Alert {clip(alert.get('alert_id', '-'), 60)}"
    labels = [*(alert.get("tags") or []), *(alert.get("mitre") or [])]
    if labels:
        meta += " · " + clip(", ".join(str(t) for t in labels), 300)
    body.append(_runs(_run(meta, isSubtle=True, size="Small"), separator=True))
    if clip.cut:
        body.append(_label(TRUNCATION_NOTE + "; see `detect alerts show`.", isSubtle=True))
    actions = []
    link = safe_url(alert.get("reference"))
    if link:
        actions.append({"type": "Action.OpenUrl", "title": "Open reference", "url": link})
    return _envelope(body, actions)


def build_card(alert: Mapping[str, Any], purpose: str = "opened", notice: str = "") -> dict:
    return fit(lambda clip: _card(alert, purpose, notice, clip), MAX_BYTES)


def render(alert: Mapping[str, Any], purpose: str, notice: str) -> str:
    return json.dumps(build_card(alert, purpose, notice), separators=(",", ":"), ensure_ascii=False)


def _digest_card(
    chunk: list[Mapping[str, Any]],
    info: DigestInfo,
    number: int,
    parts: int,
    total: int,
    clip: Clipper,
) -> dict[str, Any]:
    part = f" {number}/{parts}" if parts > 1 else ""
    head = f"Digest{part} · {plural(total, 'alert')} below {info.below.upper()}"
    body: list[dict[str, Any]] = [
        _label(head, weight="Bolder", size="Medium"),
        _label(
            f"Period {period(info)}",
            isSubtle=True,
        ),
    ]
    for alert in chunk:
        count = alert.get("event_count", 0)
        body.append(
            _runs(
                _run(f"{severity_word(alert)} ", weight="Bolder"),
                _run(clip(title_of(alert), 160)),
                _run(f" · {plural(int(count or 0), 'event')} · "),
                _run(clip(alert.get("alert_id", "-"), 60), isSubtle=True),
                spacing="None",
            )
        )
    note = "Details: detect alerts show ALERT_ID"
    if info.early:
        note = "Sent before the period ended (shutdown or end of a replay). " + note
    body.append(_label(note, isSubtle=True, separator=True))
    if clip.cut:
        body.append(_label(TRUNCATION_NOTE + ".", isSubtle=True))
    return _envelope(body, [])


def render_digest(alerts: list[Mapping[str, Any]], info: DigestInfo) -> list[tuple[str, list[str]]]:
    chunks = [
        alerts[i : i + DIGEST_ALERTS_PER_CARD]
        for i in range(0, len(alerts), DIGEST_ALERTS_PER_CARD)
    ] or [[]]
    out = []
    for number, chunk in enumerate(chunks, start=1):
        card = fit(
            lambda clip, c=chunk, n=number: _digest_card(
                c, info, n, len(chunks), len(alerts), clip
            ),
            MAX_BYTES,
        )
        text = json.dumps(card, separators=(",", ":"), ensure_ascii=False)
        out.append((text, [str(a.get("alert_id", "")) for a in chunk]))
    return out


class TeamsChannel(JsonChannel):
    def render(self, alert: Mapping[str, Any], purpose: str, notice: str) -> str:
        return render(alert, purpose, notice)

    def render_digest(
        self, alerts: list[Mapping[str, Any]], info: DigestInfo
    ) -> list[tuple[str, list[str]]]:
        return render_digest(alerts, info)
