"""Alerts as text for people at a terminal: coloured there, plain anywhere else."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from engine.alerts import Alert

if TYPE_CHECKING:
    from engine.delivery.digest import DigestInfo

_COLOURS = {
    "critical": "\033[1;97;41m",
    "high": "\033[1;31m",
    "medium": "\033[1;33m",
    "low": "\033[1;36m",
    "info": "\033[1;37m",
}
_DIM = "\033[2m"
_RESET = "\033[0m"


def use_colour(stream: IO[str]) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def _clean(value: Any) -> str:
    """Event text may hold control characters: never let it drive the terminal."""
    text = str(value)
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _first(values: list[str]) -> str:
    if not values:
        return "-"
    more = f" (+{len(values) - 1})" if len(values) > 1 else ""
    return _clean(values[0]) + more


def format_alert(alert: Alert, colour: bool = False) -> str:
    data = alert.to_dict()
    severity = alert.severity.upper()
    badge = f"[{severity}]"
    if colour:
        badge = f"{_COLOURS.get(alert.severity, '')}{badge}{_RESET}"
    kind = "" if alert.kind == "detection" else f" ({alert.kind})"
    events = f"{alert.event_count} event{'s' if alert.event_count != 1 else ''}"
    span = data["first_event_at"] or "-"
    if data["last_event_at"] and data["last_event_at"] != data["first_event_at"]:
        span += f" .. {data['last_event_at']}"
    indicators = alert.indicators
    lines = [
        f"{badge} {_clean(alert.title)}{kind}",
        f"    rule     {alert.rule_id} · {events} · {span}",
        f"    who      {_first(indicators.get('emails', []))}"
        f"  ip {_first(indicators.get('ip_addresses', []))}"
        f"  actor {_first(indicators.get('actor_ids', []))}",
    ]
    if alert.organization_ids:
        lines.append(f"    org      {', '.join(_clean(o) for o in alert.organization_ids)}")
    for key, value in alert.context.items():
        lines.append(f"    {_clean(key)}: {_clean(value)[:200]}")
    alert_line = f"    alert    {alert.alert_id}"
    lines.append(f"{_DIM}{alert_line}{_RESET}" if colour else alert_line)
    return "\n".join(lines)


def format_digest(alerts: list[Mapping[str, Any]], info: DigestInfo, colour: bool = False) -> str:
    """A digest as one block of text: a heading, then each rule's alerts, one a line."""
    from engine.activity import format_timestamp
    from engine.delivery.digest import by_rule, event_total, plural

    heading = (
        f"[DIGEST] {plural(len(alerts), 'alert')} below {info.below.upper()} · "
        f"{format_timestamp(info.period_start, 'seconds')} .. "
        f"{format_timestamp(info.period_end, 'seconds')}"
        + (" (sent before the period ended)" if info.early else "")
    )
    lines = [f"\033[1m{heading}{_RESET}" if colour else heading]
    for rule_id, members in by_rule(alerts):
        lines.append(
            f"    {_clean(rule_id)} · {plural(len(members), 'alert')}, "
            f"{plural(event_total(members), 'event')}"
        )
        for alert in members:
            severity = str(alert.get("severity", "")).upper()
            count = alert.get("event_count", 0)
            lines.append(
                f"      [{_clean(severity)}] {_clean(alert.get('title', ''))[:200]} · "
                f"{_clean(count)} event{'' if count == 1 else 's'} · "
                f"{_clean(alert.get('alert_id', ''))}"
            )
    digest_line = f"    digest   {info.digest_id}"
    lines.append(f"{_DIM}{digest_line}{_RESET}" if colour else digest_line)
    return "\n".join(lines)


class ConsoleSink:
    """Prints each alert once: when it opens (a notification) or when it closes (final)."""

    def __init__(self, stream: IO[str] | None = None, on: str = "opened") -> None:
        self.stream = stream or sys.stdout
        self.on = on
        self.colour = use_colour(self.stream)

    def __call__(self, change) -> None:
        if change.change == self.on:
            print(format_alert(change.alert, self.colour), file=self.stream, flush=True)
