"""Checking a rule document against `rules.schema.json`.

The schema is the single description of the rule format: editors use it for completion,
and the loader uses it here, so the two can never disagree. This module turns the
validator's errors into messages that name the line and the key a person must change.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from engine.errors import RuleProblem
from engine.resources import schema_path
from engine.yaml_lines import line_at


@cache
def validator() -> Draft202012Validator:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def _dotted(path: Any) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def _describe(error: ValidationError, document: Any, path: Path) -> list[RuleProblem]:
    where = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        known = ", ".join(sorted(allowed))
        return [
            RuleProblem(
                path,
                line_at(document, [*where, key]),
                _dotted([*where, key]),
                f"unknown key {key!r} (allowed here: {known})",
            )
            for key in extra
        ]
    if error.validator in ("anyOf", "oneOf") and error.context:
        required = [e for e in error.context if e.validator == "required"]
        if len(required) == len(error.context):
            names = ", ".join(dict.fromkeys(n for e in required for n in e.validator_value))
            message = f"needs one of: {names}"
            return [RuleProblem(path, line_at(document, where), _dotted(where), message)]
        deepest = best_match(error.context)
        if deepest is not None and list(deepest.absolute_path) != where:
            return _describe(deepest, document, path)
    message = error.message
    if error.validator == "not" and isinstance(error.validator_value, dict):
        message = error.validator_value.get("description", message)
    elif error.validator == "pattern" and "description" in error.schema:
        message = f"{error.instance!r} is not valid: {error.schema['description']}"
    if len(message) > 300:
        message = message[:300] + "…"
    return [RuleProblem(path, line_at(document, where), _dotted(where), message)]


def check_document(document: Any, path: Path) -> list[RuleProblem]:
    """Every schema problem of one rule document, ordered by line."""
    problems: list[RuleProblem] = []
    for error in validator().iter_errors(document):
        problems.extend(_describe(error, document, path))
    unique = {(p.line, p.key, p.message): p for p in problems}
    return sorted(unique.values(), key=lambda p: (p.line, p.key))
