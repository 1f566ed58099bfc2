"""Text for terminals and logs: receivers' answers and event text made one printable
line. (Times: `engine.activity.format_timestamp`.)"""

from __future__ import annotations

import unicodedata

MAX_REASON = 300


def clean_text(text: str, limit: int = MAX_REASON) -> str:
    """One line of printable text: receivers' answers go to terminals and logs."""
    out = []
    for ch in text:
        if ch in "\r\n\t":
            out.append(" ")
        elif ch.isprintable() and unicodedata.category(ch) != "Cf":
            out.append(ch)
    line = " ".join("".join(out).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
