"""Durations as rule files and the configuration write them (`90s`, `10m`, `1h30m`, `90d`),
and as titles, log lines and `detect status` print them."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_GROUP = re.compile(r"(\d+)([smhd])")
_WHOLE = re.compile(r"^(?:\d+[smhd])+$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raises `ValueError` naming the accepted form."""
    if not isinstance(text, str) or not _WHOLE.match(text.strip()):
        raise ValueError(f"{text!r} is not a duration like 90s, 10m, 1h30m or 7d")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _GROUP.findall(text))
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return timedelta(seconds=seconds)


def describe(span: timedelta) -> str:
    """`1d 2h`, `3h 5m`, `4m 10s`: the two largest units, for titles and log lines."""
    seconds = max(0, int(span.total_seconds()))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


def ago(now: datetime, moment: datetime | None) -> str:
    """`3h 5m ago`, `in 4m 10s`, or `-` when there is no moment."""
    if moment is None:
        return "-"
    span = now - moment
    if span < timedelta(0):
        return f"in {describe(-span)}"
    return f"{describe(span)} ago"
