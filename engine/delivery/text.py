"""Text for terminals and logs: receivers' answers and event text made one printable
line, and wall-clock instants as the CLI and delivery reasons print them."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

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


def iso(epoch: float | None) -> str:
    """Wall-clock instants as the CLI and reasons print them."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
