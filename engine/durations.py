"""Durations as rule files and the configuration write them: `90s`, `10m`, `1h30m`, `90d`."""

from __future__ import annotations

import re
from datetime import timedelta

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
