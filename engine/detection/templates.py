"""Title and dedup templates: text with `{jmespath}` holes.

Compiled once per rule; a hole whose value is missing or null renders as `<none>`, so a
title never fails at 3 a.m. because one activity lacked a field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import jmespath

from engine.detection.operators import MatchError, compile_path

MISSING = "<none>"


def render_value(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def split_template(template: str) -> list[str | tuple[str]]:
    """Literal text as `str`, holes as 1-tuples; `{{` and `}}` are literal braces."""
    parts: list[str | tuple[str]] = []
    text: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch in "{}" and template[i : i + 2] in ("{{", "}}"):
            text.append(ch)
            i += 2
            continue
        if ch == "}":
            raise MatchError(template, f"unmatched '}}' at position {i} in {template!r}")
        if ch == "{":
            end = template.find("}", i + 1)
            if end == -1:
                raise MatchError(template, f"unclosed '{{' at position {i} in {template!r}")
            path = template[i + 1 : end].strip()
            if not path:
                raise MatchError(template, f"empty '{{}}' at position {i} in {template!r}")
            if text:
                parts.append("".join(text))
                text = []
            parts.append((path,))
            i = end + 1
            continue
        text.append(ch)
        i += 1
    if text:
        parts.append("".join(text))
    return parts


def compile_template(
    template: str, options: jmespath.Options
) -> Callable[[Mapping[str, Any]], str]:
    """A function of the event data; raises `MatchError` for a malformed template."""
    pieces: list[str | Callable[[Mapping[str, Any]], Any]] = []
    for part in split_template(template):
        pieces.append(part if isinstance(part, str) else compile_path(part[0], options))
    if all(isinstance(p, str) for p in pieces):
        constant = "".join(pieces)  # type: ignore[arg-type]
        return lambda data: constant
    if len(pieces) == 1:
        # A dedup key is often one path ("{actor.user_id}"), rendered for every match a
        # threshold counts.
        (getter,) = pieces
        return lambda data: render_value(getter(data))  # type: ignore[operator]

    def render(data: Mapping[str, Any]) -> str:
        return "".join([p if isinstance(p, str) else render_value(p(data)) for p in pieces])

    return render
