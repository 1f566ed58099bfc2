"""Which destinations an alert goes to.

1. A rule that names destinations (`destinations: [a, b]` in its YAML, or a Python rule's
   `destinations(event)`) gets exactly those, whatever their filters say: the rule's
   author decided. `destinations: []` suppresses notification (the alert is still kept).
2. Otherwise every configured destination whose filters the alert passes: severity at
   least `min_severity`, kind in `kinds`, rule id matching one of `rule_ids` (glob
   patterns; empty = any) and none of `exclude_rule_ids`, a tag in `tags` (empty = any)
   and none in `exclude_tags`.

A name the configuration does not define is never dropped silently: it gets a dead
letter saying so (visible in `detect alerts list --dead`), and when none of the names a
rule gave exists the alert falls back to rule 2, with a warning in the message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from engine.config import DestinationConfig

SEVERITIES = ("info", "low", "medium", "high", "critical")


@dataclass(frozen=True)
class Route:
    destinations: list[str]
    unknown: list[str] = field(default_factory=list)
    # Why the alert went where it went, for `detect alerts show`.
    note: str = ""
    # A warning worth showing in the message itself.
    notice: str = ""


def _rank(severity: str) -> int:
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        return len(SEVERITIES)  # an unknown severity is not filtered out


def accepts(config: DestinationConfig, alert: Mapping[str, Any]) -> bool:
    """Whether a destination's filters let an alert through."""
    if _rank(str(alert.get("severity", ""))) < _rank(config.min_severity):
        return False
    if alert.get("kind", "detection") not in config.kinds:
        return False
    rule_id = str(alert.get("rule_id", ""))
    if config.rule_ids and not any(fnmatchcase(rule_id, p) for p in config.rule_ids):
        return False
    if any(fnmatchcase(rule_id, p) for p in config.exclude_rule_ids):
        return False
    tags = {str(t) for t in alert.get("tags") or []}
    if config.tags and not tags.intersection(config.tags):
        return False
    return not tags.intersection(config.exclude_tags)


def route(alert: Mapping[str, Any], destinations: Mapping[str, DestinationConfig]) -> Route:
    named = alert.get("_destinations")
    if named is None:
        chosen = [name for name, config in destinations.items() if accepts(config, alert)]
        note = "routed by the configuration" if chosen else "no destination's filters matched"
        return Route(chosen, note=note)
    names = list(dict.fromkeys(str(n) for n in named))
    if not names:
        return Route([], note="suppressed: the rule's destinations are []")
    known = [n for n in names if n in destinations]
    unknown = [n for n in names if n not in destinations]
    if not unknown:
        return Route(known, note="routed by the rule")
    listed = ", ".join(unknown)
    if known:
        return Route(
            known,
            unknown,
            note=f"routed by the rule; not configured: {listed}",
            notice=f"This rule also names destination(s) not in detect.yaml: {listed}.",
        )
    fallback = [name for name, config in destinations.items() if accepts(config, alert)]
    return Route(
        fallback,
        unknown,
        note=f"the rule names only unconfigured destination(s) ({listed}); "
        "routed by the configuration instead",
        notice=f"This rule names destination(s) not in detect.yaml ({listed}); "
        "delivered by the default routing instead. Fix the rule or the configuration.",
    )


def unknown_rule_destinations(
    rules: Iterable[Any], destinations: Mapping[str, DestinationConfig]
) -> list[str]:
    """Startup check for rules whose YAML names destinations the configuration lacks
    (a Python rule's `destinations(event)` can only be checked per alert)."""
    problems = []
    for rule in rules:
        for name in getattr(rule, "destinations", None) or []:
            if name not in destinations:
                problems.append(
                    f"{rule.path}: rule {rule.id} names destination {name!r}, "
                    f"which the configuration does not define"
                )
    return problems
