"""Digests: alerts below a severity batched into one message per period per destination.

The period is measured on the dispatcher's clock (wall-clock time, like everything else
in the outbox), not on event time: a digest is a promise about when people hear about
things, and a replay of last month should not turn into one digest per hour of last
month. Periods are aligned to multiples of `every` since 1970-01-01 UTC, so `1h` closes
on the hour and `1d` at midnight UTC, whatever moment the process started; an alert
belongs to the period in which it was routed. A restart therefore needs no state beyond
the delivery rows: the period of every waiting alert follows from its `queued_at`.

A period that closed while no dispatcher ran is sent, together with any later closed
ones, as one catch-up digest. A flush (end of `detect replay --deliver`, shutdown of
`detect run`) seals everything waiting, before its period ends: that digest says so.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.config import DestinationConfig

SEVERITIES = ("info", "low", "medium", "high", "critical")


@dataclass(frozen=True)
class DigestInfo:
    """What every rendering of one digest shows about it."""

    digest_id: str
    destination: str
    period_start: float
    period_end: float
    below: str
    # Sealed before its period ended (a flush at shutdown or at the end of a replay).
    early: bool = False


def new_digest_id() -> str:
    """Random, and stored with the message: every retry sends it under the same id."""
    return "dg_" + secrets.token_hex(12)


def part_key(digest_id: str, part: int, parts: int) -> str:
    """The key of one message of a digest: the digest id, numbered when it is split.
    Only `[A-Za-z0-9_-]`, since it becomes part of a signed `webhook-id`."""
    return digest_id if parts == 1 else f"{digest_id}-{part}of{parts}"


def period_start(moment: float, every: float) -> float:
    """The start of the period `moment` falls in (periods are half-open)."""
    return math.floor(moment / every) * every


def goes_to_digest(config: DestinationConfig | None, alert: Mapping[str, Any]) -> bool:
    """Whether a destination batches this alert: severity strictly below `below`. An
    unknown severity is never batched (it is not known to be routine)."""
    if config is None or config.digest is None:
        return False
    severity = str(alert.get("severity", ""))
    if severity not in SEVERITIES:
        return False
    return SEVERITIES.index(severity) < SEVERITIES.index(config.digest.below)


def by_rule(alerts: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """Alerts grouped by rule: the busiest rule first, then by rule id; within a rule,
    in the order they were routed."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for alert in alerts:
        groups.setdefault(str(alert.get("rule_id", "-")), []).append(alert)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


def event_total(alerts: Sequence[Mapping[str, Any]]) -> int:
    total = 0
    for alert in alerts:
        count = alert.get("event_count")
        total += count if isinstance(count, int) and not isinstance(count, bool) else 0
    return total


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
