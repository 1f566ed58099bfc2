"""Switching shipped rules off, or changing them, by id from the configuration
(`rule_overrides:` in detect.yaml) without copying their files: severity, enabled, the
dedup window, and entries added to named lists."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from engine.detection.functions import NamedList
from engine.detection.loader import RuleSet
from engine.detection.rule import LOG_TYPE
from engine.durations import parse_duration

SEVERITIES = ("info", "low", "medium", "high", "critical")


def _did_you_mean(word: str, known: list[str]) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def apply_overrides(ruleset: RuleSet, overrides: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Apply `overrides` (rule id → {severity, enabled, dedup_window, lists}) to `ruleset`
    in place; the problems found, one line each (`rule_overrides.<id>.<key>: ...`).
    Nothing is applied when there is a problem."""
    rules = {rule.id: rule for rule in ruleset.rules + ruleset.skipped}
    problems: list[str] = []
    plans: list[tuple[str, str, Any]] = []
    for rule_id, change in overrides.items():
        where = f"rule_overrides.{rule_id}"
        if rule_id not in rules:
            hint = _did_you_mean(rule_id, sorted(rules))
            problems.append(f"{where}: unknown rule id {rule_id!r}{hint}")
            continue
        for key, value in change.items():
            if value is None:
                continue
            if key == "severity":
                if str(value).lower() not in SEVERITIES:
                    problems.append(
                        f"{where}.severity: {value!r} is not one of {', '.join(SEVERITIES)}"
                    )
                    continue
                plans.append((rule_id, key, str(value).lower()))
            elif key == "dedup_window":
                try:
                    plans.append((rule_id, key, parse_duration(value)))
                except ValueError as exc:
                    problems.append(f"{where}.dedup_window: {exc}")
            elif key == "enabled":
                plans.append((rule_id, key, bool(value)))
            elif key == "lists":
                for name, entries in value.items():
                    if name not in ruleset.lists.lists:
                        hint = _did_you_mean(name, sorted(ruleset.lists.lists))
                        problems.append(f"{where}.lists: no named list {name!r}{hint}")
                    else:
                        plans.append((rule_id, key, (name, [str(e) for e in entries])))
            else:
                problems.append(f"{where}: unknown key {key!r}")
    if problems:
        return problems
    for rule_id, key, value in plans:
        rule = rules[rule_id]
        if key == "lists":
            name, entries = value
            old = ruleset.lists.lists[name]
            new = NamedList(name, [*sorted(old.strings), *entries])
            new.learned = old.learned
            ruleset.lists.lists[name] = new
        elif key == "enabled":
            _switch(ruleset, rule, value)
        else:
            setattr(rule, key, value)
    return problems


def _switch(ruleset: RuleSet, rule: Any, enabled: bool) -> None:
    """Move `rule` between the evaluated and the skipped rules."""
    active = any(r is rule for r in ruleset.rules)
    rule.enabled = enabled
    if not enabled and active:
        ruleset.rules[:] = [r for r in ruleset.rules if r is not rule]
        ruleset.skipped.append(rule)
        if hasattr(rule, "skip_reason"):
            rule.skip_reason = "rule_overrides: enabled: false"
    elif enabled and not active and LOG_TYPE in rule.log_types:
        ruleset.skipped[:] = [r for r in ruleset.skipped if r is not rule]
        ruleset.rules.append(rule)
