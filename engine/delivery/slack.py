"""Slack incoming webhooks: one Block Kit message per alert, safe with hostile event data.

Every value that can come from an activity (titles render event fields; emails, user
agents, context values are event data) is escaped for mrkdwn (`&`, `<`, `>`), stripped of
control and bidirectional-override characters, and cut to fit *after* escaping, so an
email of `<!channel>` or a user agent of `<http://evil|Open runbook>` shows as text and
never pings a channel or draws a spoofed link. Text objects carry `verbatim: true` so Slack
does not auto-link channel names or mentions either, and unfurling is off so an
attacker's URL is never fetched by Slack.

Limits honoured (reference/delivery.md): 50 blocks, a header of 150 characters, a
section of 3,000, ten fields of 2,000, ten context elements, and a total far under the
~12k characters at which Slack answers `msg_blocks_too_long`. A digest (`build_digest`)
keeps the same limits by splitting into numbered messages, with the same escaping.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.activity import format_timestamp
from engine.delivery.alert_text import printable
from engine.delivery.digest import DigestInfo

MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_SECTION = 3000
MAX_FIELDS = 10
MAX_FIELD = 2000
MAX_CONTEXT_ELEMENTS = 10
# Our own budget for all block text together: well under Slack's undocumented ~12k.
MAX_TOTAL = 9000

FIELD_LIMIT = 300
DESCRIPTION_LIMIT = 1200
RUNBOOK_LIMIT = 2000
CONTEXT_LIMIT = 1500
CONTEXT_ENTRIES = 12

BADGES = {
    "critical": ":rotating_light:",
    "high": ":red_circle:",
    "medium": ":large_orange_circle:",
    "low": ":large_yellow_circle:",
    "info": ":large_blue_circle:",
}
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape(value: Any, limit: int, single_line: bool = True) -> str:
    """`value` as mrkdwn-safe text at most `limit` characters long once escaped; an
    escape sequence is never cut in half."""
    text = value if isinstance(value, str) else _compact(value)
    text = printable(text, single_line)
    out: list[str] = []
    size = 0
    for index, ch in enumerate(text):
        piece = _ESCAPES.get(ch, ch)
        remaining = len(text) - index
        if size + len(piece) > limit or (size + len(piece) == limit and remaining > 1):
            while out and size + 1 > limit:
                size -= len(out.pop())
            out.append("…")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def _compact(value: Any) -> str:
    if value is None:
        return "-"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _first(values: list[Any], limit: int = FIELD_LIMIT) -> str:
    if not values:
        return "-"
    more = f" (+{len(values) - 1} more)" if len(values) > 1 else ""
    return escape(values[0], limit - len(more)) + more


def _event_values(events: list[Any], *path: str) -> list[str]:
    found: list[str] = []
    for event in events:
        value: Any = event
        for step in path:
            value = value.get(step) if isinstance(value, Mapping) else None
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value)
            if text and text not in found:
                found.append(text)
    return found


def _safe_link(url: Any, label: str) -> str | None:
    """A rule's reference as a link, only when nothing in it can break out of `<…|…>`."""
    if not isinstance(url, str) or len(url) > 500 or not url.startswith("https://"):
        return None
    if any(ch in url for ch in "<>|& \n\r\t") or not url.isprintable():
        return None
    return f"<{url}|{label}>"


def _fields(alert: Mapping[str, Any]) -> list[dict[str, Any]]:
    indicators = alert.get("indicators") or {}
    events = [e for e in alert.get("events") or [] if isinstance(e, Mapping)]
    actors = list(indicators.get("emails") or []) or list(indicators.get("actor_ids") or [])
    if not actors:
        actors = _event_values(events, "actor", "type")
    count = alert.get("event_count", 0)
    fields = [
        ("Actor", _first(actors)),
        ("IP address", _first(list(indicators.get("ip_addresses") or []))),
        ("Organization", _first(list(alert.get("organization_ids") or []))),
        ("Activity type", _first(_event_values(events, "type"))),
        ("Events", escape(count, 20)),
        ("First event", escape(alert.get("first_event_at") or "-", 40)),
        ("Last event", escape(alert.get("last_event_at") or "-", 40)),
    ]
    agents = _event_values(events, "actor", "user_agent")
    if agents:
        fields.append(("User agent", _first(agents, 200)))
    return [_mrkdwn(f"*{name}*\n{value}") for name, value in fields[:MAX_FIELDS]]


def _context_lines(context: Mapping[str, Any], alert_id: str) -> str:
    lines: list[str] = []
    size = 0
    items = list(context.items())
    for index, (key, value) in enumerate(items):
        line = f"*{escape(key, 80)}*: {escape(value, 150)}"
        if index >= CONTEXT_ENTRIES or size + len(line) + 1 > CONTEXT_LIMIT - 120:
            rest = len(items) - index
            lines.append(f"_… and {rest} more: `detect alerts show {escape(alert_id, 40)}`_")
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def _text_size(blocks: list[dict[str, Any]]) -> int:
    total = 0
    for block in blocks:
        if isinstance(block.get("text"), dict):
            total += len(block["text"]["text"])
        for item in block.get("fields", []) + block.get("elements", []):
            total += len(item.get("text", ""))
    return total


def build_message(
    alert: Mapping[str, Any], purpose: str = "opened", notice: str = ""
) -> dict[str, Any]:
    """The webhook payload for an alert (`opened`) or its closing summary (`closed`)."""
    severity = str(alert.get("severity", "info"))
    badge = BADGES.get(severity, ":white_circle:")
    alert_id = str(alert.get("alert_id", ""))
    title = alert.get("title") or alert.get("rule_name") or alert.get("rule_id") or "alert"
    count = alert.get("event_count", 0)
    closing = purpose == "closed"
    level = escape(severity.upper(), 20)
    lead = f"{badge} {level} · " + ("Final count · " if closing else "")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(lead + escape(title, MAX_HEADER - len(lead)))}
    ]
    if closing:
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(
                    f"This alert kept growing after its notification: *{escape(count, 20)} "
                    f"events* in total, the last at {escape(alert.get('last_event_at'), 40)}. "
                    "Its dedup window has now closed."
                ),
            }
        )
    parts = []
    full_title = escape(title, 1000)
    if len(full_title) > MAX_HEADER - len(lead):  # the header cut it: show it whole here
        parts.append(f"*{full_title}*")
    if alert.get("description"):
        parts.append(escape(alert["description"], DESCRIPTION_LIMIT, single_line=False))
    if parts:
        blocks.append({"type": "section", "text": _mrkdwn("\n".join(parts))})
    blocks.append({"type": "section", "fields": _fields(alert)})
    if not closing:
        context = alert.get("context") or {}
        if isinstance(context, Mapping) and context:
            blocks.append({"type": "section", "text": _mrkdwn(_context_lines(context, alert_id))})
        runbook = alert.get("runbook") or ""
        link = _safe_link(alert.get("reference"), "Reference")
        if runbook or link:
            text = "*Runbook*\n" + (
                escape(runbook, RUNBOOK_LIMIT, single_line=False) if runbook else "-"
            )
            if link:
                text += f"\n{link}"
            blocks.append({"type": "section", "text": _mrkdwn(text)})
    if notice:
        blocks.append({"type": "section", "text": _mrkdwn(":warning: " + escape(notice, 500))})
    kind = str(alert.get("kind", "detection"))
    meta = [
        f"Rule `{escape(alert.get('rule_id', '-'), 200)}`",
        f"Alert `{escape(alert_id, 60)}`",
    ]
    if kind != "detection":
        meta.append(escape(kind, 40))
    labels = [*(alert.get("tags") or []), *(alert.get("mitre") or [])]
    if labels:
        meta.append(escape(", ".join(str(t) for t in labels), 300))
    blocks.append({"type": "context", "elements": [_mrkdwn(" · ".join(meta))]})
    while _text_size(blocks) > MAX_TOTAL and len(blocks) > 3:
        # Cannot happen with the per-part limits above; kept so a future field cannot
        # push a message past Slack's total and have it refused outright.
        blocks.pop(-2)
    fallback = f"[{level}] " + ("Final count: " if closing else "")
    fallback += escape(title, 500)
    events = f"{escape(count, 20)} event{'' if count == 1 else 's'}"
    fallback += f" · {escape(alert.get('rule_id', '-'), 200)} · {events}"
    return {
        "text": fallback,
        "blocks": blocks[:MAX_BLOCKS],
        "unfurl_links": False,
        "unfurl_media": False,
    }


# -- digests ----------------------------------------------------------------------------

# A digest line's title is cut shorter than a header's: many lines share one message.
DIGEST_TITLE = 120
DIGEST_SUMMARY = 1500
# Room kept in every digest message for its header, context line and fallback.
_DIGEST_FRAME = 600


@dataclass
class _DigestMessage:
    sections: list[list[str]] = field(default_factory=list)
    alert_ids: list[str] = field(default_factory=list)
    size: int = 0
    shown: set[str] = field(default_factory=set)


class _DigestPacker:
    """Fills messages with sections of lines within Slack's limits: a rule's group opens
    a section with its heading (repeated, "continued", at the top of a later message),
    a full section opens another, and a full message opens the next message. A line
    never exceeds what an empty message holds, so every alert finds a place."""

    def __init__(self) -> None:
        self.messages = [_DigestMessage()]
        self._max_sections = MAX_BLOCKS - 2  # the header and the context line
        self._max_size = MAX_TOTAL - _DIGEST_FRAME

    def add_section(self, lines: list[str]) -> None:
        message = self.messages[-1]
        message.sections.append(lines)
        message.size += len("\n".join(lines))

    def add(self, group: str, heading: str, alert_id: str, line: str) -> None:
        message = self.messages[-1]
        if group in message.shown:
            section = message.sections[-1]
            grown = len("\n".join(section)) + 1 + len(line)
            if grown <= MAX_SECTION and message.size + 1 + len(line) <= self._max_size:
                section.append(line)
                message.size += 1 + len(line)
                message.alert_ids.append(alert_id)
                return
            if len(message.sections) < self._max_sections and (
                message.size + len(line) <= self._max_size
            ):
                self.add_section([line])
                message.alert_ids.append(alert_id)
                return
        elif len(message.sections) < self._max_sections and (
            message.size + len(heading) + 1 + len(line) <= self._max_size
        ):
            message.shown.add(group)
            self.add_section([heading, line])
            message.alert_ids.append(alert_id)
            return
        continued = any(group in m.shown for m in self.messages)
        self.messages.append(_DigestMessage())
        self.messages[-1].shown.add(group)
        self.add_section([heading + (" _(continued)_" if continued else ""), line])
        self.messages[-1].alert_ids.append(alert_id)


def _digest_line(alert: Mapping[str, Any]) -> str:
    severity = str(alert.get("severity", "info"))
    title = alert.get("title") or alert.get("rule_name") or alert.get("rule_id") or "alert"
    count = alert.get("event_count", 0)
    parts = [
        f"{BADGES.get(severity, ':white_circle:')} {escape(severity.upper(), 20)}",
        escape(title, DIGEST_TITLE),
        f"{escape(count, 20)} event{'' if count == 1 else 's'}",
        f"`{escape(alert.get('alert_id', '-'), 60)}`",
    ]
    kind = str(alert.get("kind", "detection"))
    if kind != "detection":
        parts.insert(2, escape(kind, 40))
    return "• " + " · ".join(parts)


def build_digest(
    alerts: list[Mapping[str, Any]], info: DigestInfo
) -> list[tuple[dict[str, Any], list[str]]]:
    """A digest as Slack messages, each with the ids of the alerts it lists: one
    message when everything fits, else numbered continuations ("Digest 2/3") — never a
    truncated list. Every event-derived value goes through `escape`, as in
    `build_message`."""
    from engine.delivery.digest import by_rule, event_total, plural

    groups = by_rule(alerts)
    packer = _DigestPacker()
    summary = ["*By rule*"]
    for index, (rule_id, members) in enumerate(groups):
        line = (
            f"• `{escape(rule_id, 200)}`: {plural(len(members), 'alert')}, "
            f"{plural(event_total(members), 'event')}"
        )
        if len("\n".join(summary)) + len(line) + 60 > DIGEST_SUMMARY:
            summary.append(f"• … and {len(groups) - index} more rules, listed below")
            break
        summary.append(line)
    if len(groups) > 1:
        packer.add_section(summary)
    for rule_id, members in groups:
        name = members[0].get("rule_name") or ""
        heading = f"*`{escape(rule_id, 200)}`*" + (f" · {escape(name, 150)}" if name else "")
        heading += f" · {plural(len(members), 'alert')}, {plural(event_total(members), 'event')}"
        for alert in members:
            packer.add(rule_id, heading, str(alert.get("alert_id", "")), _digest_line(alert))
    total = len(packer.messages)
    below = escape(info.below.upper(), 20)
    start = format_timestamp(info.period_start, "seconds")
    span = f"{start} to {format_timestamp(info.period_end, 'seconds')}"
    built = []
    for number, message in enumerate(packer.messages, start=1):
        part = f" {number}/{total}" if total > 1 else ""
        head = f":card_index_dividers: Digest{part} · {plural(len(alerts), 'alert')} below {below}"
        meta = [f"Period {span}", f"Digest `{escape(info.digest_id, 60)}`"]
        if info.early:
            meta.append("sent before the period ended (shutdown or end of a replay)")
        meta.append("details: `detect alerts show ALERT_ID`")
        blocks: list[dict[str, Any]] = [{"type": "header", "text": _plain(head[:MAX_HEADER])}]
        blocks += [
            {"type": "section", "text": _mrkdwn("\n".join(lines))} for lines in message.sections
        ]
        blocks.append({"type": "context", "elements": [_mrkdwn(" · ".join(meta))]})
        listed = f"{len(message.alert_ids)} of {len(alerts)}" if total > 1 else str(len(alerts))
        fallback = f"[DIGEST{part}] {listed} alert{'' if len(alerts) == 1 else 's'} below {below}"
        fallback += f", {span}"
        payload = {
            "text": fallback,
            "blocks": blocks,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        built.append((payload, message.alert_ids))
    return built
