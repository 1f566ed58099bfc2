"""What every chat, paging and mail destination shows of an alert, before escaping.

Teams, Google Chat, PagerDuty and email render the same content (severity, title, the
who/what/where facts, the runbook's first steps, a link) in their own markup; this module
picks that content out of the §6 alert as plain text, stripped of control and
bidirectional-override characters. Each destination escapes it for its own markup and
cuts it with a `Clipper`, which remembers whether anything was cut so the message can say
so. `fit` shrinks a message until it is under a service's size limit: an alert is never
dropped for being too big, only shortened, with a note.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from engine.activity import format_timestamp

SEVERITY_WORDS = {
    "critical": "CRITICAL",
    "high": "HIGH",
    "medium": "MEDIUM",
    "low": "LOW",
    "info": "INFO",
}
TRUNCATION_NOTE = "Some values were shortened to fit this service's message size limit"
# How much each pass of `fit` keeps of every clipped value.
SCALES = (1.0, 0.5, 0.25, 0.1, 0.04, 0.0)


def printable(value: Any, single_line: bool = True) -> str:
    """Text without control or format characters (bidi overrides can reorder what a
    reader sees); newlines survive only in multi-line values."""
    if value is None:
        text = "-"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    out = []
    for ch in text:
        if ch == "\n" and not single_line:
            out.append(ch)
        elif ch in "\r\n\t\v\f":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf") and ch != "\u200d":
            continue
        else:
            out.append(ch)
    return "".join(out)


class Clipper:
    """Cuts values to `limit * scale` characters (at least a few) and records a cut."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.cut = False

    def __call__(self, value: Any, limit: int, single_line: bool = True) -> str:
        text = printable(value, single_line)
        allowed = max(8, int(limit * self.scale))
        if len(text) <= allowed:
            return text
        self.cut = True
        return text[: allowed - 1] + "…"


def title_of(alert: Mapping[str, Any]) -> str:
    return str(alert.get("title") or alert.get("rule_name") or alert.get("rule_id") or "alert")


def severity_word(alert: Mapping[str, Any]) -> str:
    severity = str(alert.get("severity", "info"))
    return SEVERITY_WORDS.get(severity, printable(severity.upper())[:20])


def _event_values(alert: Mapping[str, Any], *path: str) -> list[str]:
    found: list[str] = []
    for event in alert.get("events") or []:
        value: Any = event
        for step in path:
            value = value.get(step) if isinstance(value, Mapping) else None
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value)
            if text and text not in found:
                found.append(text)
    return found


def _first(values: list[Any]) -> str:
    if not values:
        return "-"
    more = f" (+{len(values) - 1} more)" if len(values) > 1 else ""
    return printable(values[0]) + more


def facts(alert: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Who, what and where, as (label, value) pairs: labels are ours, values may be
    anything an event carried."""
    indicators = alert.get("indicators") or {}
    actors = list(indicators.get("emails") or []) or list(indicators.get("actor_ids") or [])
    if not actors:
        actors = _event_values(alert, "actor", "type")
    count = alert.get("event_count", 0)
    found = [
        ("Actor", _first(actors)),
        ("IP address", _first(list(indicators.get("ip_addresses") or []))),
        ("Organization", _first(list(alert.get("organization_ids") or []))),
        ("Activity type", _first(_event_values(alert, "type"))),
        ("Rule", printable(alert.get("rule_id", "-"))),
        ("Events", printable(count)),
        ("First event", printable(alert.get("first_event_at") or "-")),
        ("Last event", printable(alert.get("last_event_at") or "-")),
    ]
    agents = _event_values(alert, "actor", "user_agent")
    if agents:
        found.append(("User agent", _first(agents)))
    kind = str(alert.get("kind", "detection"))
    if kind != "detection":
        found.append(("Kind", printable(kind)))
    return found


def context_facts(alert: Mapping[str, Any], limit: int = 8) -> list[tuple[str, str]]:
    context = alert.get("context") or {}
    if not isinstance(context, Mapping):
        return []
    return [(printable(k), printable(v)) for k, v in list(context.items())[:limit]]


def runbook_steps(alert: Mapping[str, Any], steps: int = 3) -> list[str]:
    """The runbook's first non-empty lines: what to do first, not the whole page."""
    lines = [line.strip() for line in str(alert.get("runbook") or "").splitlines()]
    return [printable(line) for line in lines if line][:steps]


def safe_url(url: Any) -> str | None:
    """A rule's reference, only as a plain https URL with nothing that could break out
    of a link in any markup (quotes, brackets, spaces, pipes)."""
    if not isinstance(url, str) or len(url) > 500 or not url.startswith("https://"):
        return None
    if any(ch in url for ch in "<>|&\"'`()[]{} \\\n\r\t") or not url.isprintable():
        return None
    return url


def encoded_size(payload: Any) -> int:
    return len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def fit(build: Callable[[Clipper], Any], limit: int, size: Callable[[Any], int] = encoded_size):
    """The first rendering, from the roomiest down, whose size is within `limit` bytes.
    `build` must say so in the message when its clipper cut anything."""
    payload = None
    for scale in SCALES:
        payload = build(Clipper(scale))
        if size(payload) <= limit:
            return payload
    raise ValueError("the message does not fit the service's size limit even at its shortest")


def period(info: Any) -> str:
    """A digest's period as people read it: its two wall-clock instants, to the second."""
    start = format_timestamp(info.period_start, "seconds")
    return f"{start} to {format_timestamp(info.period_end, 'seconds')}"
