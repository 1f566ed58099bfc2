"""JSON Lines out: what the two activity generators (`engine/feedgen/`, `engine/orgsim/`)
write their feeds with."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol


class TextOut(Protocol):
    def write(self, text: str, /) -> Any: ...


def write_lines(handle: TextOut, items: Iterable[Any]) -> int:
    """Write each item as compact JSON on its own line (non-ASCII kept as it is), 4,096
    lines a write; returns how many were written."""
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    written = 0
    batch: list[str] = []
    for item in items:
        batch.append(encode(item))
        if len(batch) == 4096:
            handle.write("\n".join(batch) + "\n")
            written += len(batch)
            batch.clear()
    if batch:
        handle.write("\n".join(batch) + "\n")
        written += len(batch)
    return written
