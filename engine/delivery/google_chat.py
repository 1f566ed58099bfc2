"""Google Chat incoming webhooks: one card (`cardsV2`) per alert, threaded per dedup key.

Card text (`textParagraph`, `decoratedText`) is Google Chat's HTML subset (`<b>`, `<a>`,
`<font>`), so every event-derived value is HTML-escaped (`&`, `<`, `>`) and shows as the
characters it is: `<a href=…>` or `<users/all>` never becomes a link or a mention. The
message `text` (the notification line, in Chat's own markup where `<users/all>` would
mention everyone) holds only the severity and the rule's name, with `<` and `>` removed.
The one link is a button to the rule's https reference.

Threads: every message about one dedup key carries the same `thread.threadKey` (a hash
of rule id and dedup key) and the URL asks for `messageReplyOption=
REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD`, so an alert, its closing summary and the next
alert of the same key land in one thread.

Size: Google Chat refuses messages over 32,000 bytes; cards are kept under 30,000 by
cutting long values, with a note. 429 and 5xx are retried.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
    severity_word,
    title_of,
)
from engine.delivery.digest import DigestInfo, plural
from engine.delivery.json_channel import JsonChannel

MAX_BYTES = 30_000
REPLY_OPTION = "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
DIGEST_ALERTS_PER_CARD = 40
_MARKUP = str.maketrans({c: None for c in "<>"})


def html(text: str) -> str:
    """Escape for Chat's HTML subset; newlines become `<br>`."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("\n", "<br>")


def thread_key(alert: Mapping[str, Any]) -> str:
    material = f"{alert.get('rule_id', '')}\x1f{alert.get('dedup_key', '')}"
    return "detect-" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


def _plain(text: str, limit: int) -> str:
    return printable(text).translate(_MARKUP)[:limit]


def _fact(label: str, value: str) -> dict[str, Any]:
    return {"decoratedText": {"topLabel": _plain(label, 80), "text": html(value), "wrapText": True}}


def _card(alert: Mapping[str, Any], purpose: str, notice: str, clip: Clipper) -> dict[str, Any]:
    closing = purpose == "closed"
    name = str(alert.get("rule_name") or alert.get("rule_id") or "alert")
    lead = f"{severity_word(alert)} · " + ("Final count · " if closing else "")
    head = [f"<b>{html(clip(title_of(alert), 300))}</b>"]
    if closing:
        head.append(
            "This alert kept growing after its notification; its dedup window has now closed."
        )
    if alert.get("description"):
        head.append(html(clip(alert["description"], 1200, single_line=False)))
    sections: list[dict[str, Any]] = [
        {"widgets": [{"textParagraph": {"text": "<br>".join(head)}}]},
        {
            "header": "Who, what, where",
            "widgets": [_fact(label, clip(value, 300)) for label, value in facts(alert)],
        },
    ]
    context = context_facts(alert)
    if context and not closing:
        widgets = [_fact(clip(k, 80), clip(v, 300)) for k, v in context]
        sections.append({"header": "Context", "widgets": widgets})
    steps = runbook_steps(alert)
    if steps and not closing:
        text = "<br>".join(html(clip(step, 500)) for step in steps)
        sections.append({"header": "First steps", "widgets": [{"textParagraph": {"text": text}}]})
    footer: list[dict[str, Any]] = []
    if notice:
        footer.append({"textParagraph": {"text": "⚠ " + html(clip(notice, 500))}})
    if clip.cut:
        footer.append(
            {"textParagraph": {"text": html(TRUNCATION_NOTE + "; see `detect alerts show`.")}}
        )
    link = safe_url(alert.get("reference"))
    if link:
        button = {"text": "Open reference", "onClick": {"openLink": {"url": link}}}
        footer.append({"buttonList": {"buttons": [button]}})
    if footer:
        sections.append({"widgets": footer})
    return {
        "text": _plain(f"{lead}{name}", 200),
        "cardsV2": [
            {
                "cardId": "detect-alert",
                "card": {
                    "header": {
                        "title": _plain(lead + name, 200),
                        "subtitle": _plain(f"Alert {alert.get('alert_id', '-')}", 100),
                    },
                    "sections": sections,
                },
            }
        ],
        "thread": {"threadKey": thread_key(alert)},
    }


def build_message(alert: Mapping[str, Any], purpose: str = "opened", notice: str = "") -> dict:
    return fit(lambda clip: _card(alert, purpose, notice, clip), MAX_BYTES)


def _digest(
    chunk: list[Mapping[str, Any]],
    info: DigestInfo,
    number: int,
    parts: int,
    total: int,
    clip: Clipper,
) -> dict[str, Any]:
    part = f" {number}/{parts}" if parts > 1 else ""
    head = f"Digest{part} · {plural(total, 'alert')} below {info.below.upper()}"
    widgets = []
    for alert in chunk:
        count = int(alert.get("event_count") or 0)
        widgets.append(
            {
                "decoratedText": {
                    "topLabel": _plain(f"{severity_word(alert)} · {plural(count, 'event')}", 80),
                    "text": html(clip(title_of(alert), 160)),
                    "bottomLabel": _plain(str(alert.get("alert_id", "-")), 60),
                    "wrapText": True,
                }
            }
        )
    note = "Details: detect alerts show ALERT_ID"
    if info.early:
        note = "Sent before the period ended (shutdown or end of a replay). " + note
    if clip.cut:
        note += ". " + TRUNCATION_NOTE
    sections: list[dict[str, Any]] = []
    if widgets:
        sections.append({"widgets": widgets})
    sections.append({"widgets": [{"textParagraph": {"text": html(note)}}]})
    return {
        "text": head,
        "cardsV2": [
            {
                "cardId": "detect-digest",
                "card": {
                    "header": {
                        "title": head,
                        "subtitle": f"{period(info)}",
                    },
                    "sections": sections,
                },
            }
        ],
        "thread": {"threadKey": "detect-" + info.digest_id},
    }


def render_digest(alerts: list[Mapping[str, Any]], info: DigestInfo) -> list[tuple[str, list[str]]]:
    size = DIGEST_ALERTS_PER_CARD
    chunks = [alerts[i : i + size] for i in range(0, len(alerts), size)] or [[]]
    out = []
    for number, chunk in enumerate(chunks, start=1):
        message = fit(
            lambda clip, c=chunk, n=number: _digest(c, info, n, len(chunks), len(alerts), clip),
            MAX_BYTES,
        )
        text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        out.append((text, [str(a.get("alert_id", "")) for a in chunk]))
    return out


def with_reply_option(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    if not any(k == "messageReplyOption" for k, _ in query):
        query.append(("messageReplyOption", REPLY_OPTION))
    return urlunsplit(parts._replace(query=urlencode(query)))


class GoogleChatChannel(JsonChannel):
    def target_url(self, config: DestinationConfig) -> str:
        assert config.url is not None
        return with_reply_option(config.url.get_secret_value())

    def render(self, alert: Mapping[str, Any], purpose: str, notice: str) -> str:
        message = build_message(alert, purpose, notice)
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)

    def render_digest(
        self, alerts: list[Mapping[str, Any]], info: DigestInfo
    ) -> list[tuple[str, list[str]]]:
        return render_digest(alerts, info)
