"""The alert: one JSON shape (`detect.alert/v1`) for the outbox, replay output and webhooks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic_core import from_json, to_json

from engine.activity import ActivityRecord, format_timestamp, parse_timestamp

SCHEMA = "detect.alert/v1"
MAX_SAMPLE_EVENTS = 10
MAX_INDICATORS = 50


def alert_id_for(rule_id: str, dedup_key: str, opened_at: datetime, scope: str = "") -> str:
    """Stable for (rule, key, opening time): a replay or a restart gets the same id.
    `scope` is the organization a worker on Redis correlates alone: two organizations'
    alerts with one dedup key and opening time are two alerts in the shared outbox, not
    one id written twice. Empty (a single process, which correlates across
    organizations) leaves the id what it always was."""
    material = f"{rule_id}\x1f{dedup_key}\x1f{format_timestamp(opened_at)}"
    if scope:
        material += f"\x1f{scope}"
    return "al_" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:24]


def json_safe(value: Any) -> Any:
    """`value` with every float that JSON cannot write (NaN, Infinity, -Infinity) as null;
    the same object when it holds none. Python's JSON reader accepts such values in an
    activity, but written back they are not JSON (`NaN`): every alert output (replay's
    JSON Lines, the outbox, signed webhook bodies) writes them as null, as the state file's
    encoder and a two-process replay's pipe already did."""
    try:
        return _safe(value)
    except RecursionError:  # nested deeper than Python's stack: pydantic-core's encoder
        try:
            return from_json(to_json(value, fallback=str, inf_nan_mode="null"))
        except ValueError:
            return value


def _safe(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if isinstance(value, float):
        return value if value - value == 0.0 else None  # NaN and ±inf give NaN here
    if isinstance(value, dict):
        changed = None
        for key, item in value.items():
            safe = _safe(item)
            if safe is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = safe
        return value if changed is None else changed
    if isinstance(value, list | tuple):
        items = [_safe(item) for item in value]
        if any(a is not b for a, b in zip(items, value, strict=True)):
            return items
    return value


def _merge(into: list[str], values: list[str]) -> None:
    for value in values:
        if value not in into and len(into) < MAX_INDICATORS:
            into.append(value)


@dataclass
class Alert:
    alert_id: str
    kind: str
    rule_id: str
    rule_name: str
    severity: str
    title: str
    dedup_key: str
    opened_at: datetime
    window_end: datetime
    description: str = ""
    runbook: str = ""
    reference: str = ""
    tags: list[str] = field(default_factory=list)
    mitre: list[str] = field(default_factory=list)
    event_count: int = 0
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None
    organization_ids: list[str] = field(default_factory=list)
    indicators: dict[str, list[str]] = field(
        default_factory=lambda: {"emails": [], "ip_addresses": [], "actor_ids": []}
    )
    context: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    destinations: list[str] | None = None
    # An anchored-threshold alert that has not reached its count: kept, never notified.
    pending: bool = False

    def __post_init__(self) -> None:
        self.context = json_safe(self.context)

    def add(self, activity: ActivityRecord) -> None:
        """Count an activity into the alert, keeping the first ten verbatim."""
        self.event_count += 1
        moment = activity.created_at
        if self.first_event_at is None or moment < self.first_event_at:
            self.first_event_at = moment
        if self.last_event_at is None or moment > self.last_event_at:
            self.last_event_at = moment
        if len(self.events) < MAX_SAMPLE_EVENTS:
            self.events.append(json_safe(activity.raw))
        org = activity.organization_id
        if org and org not in self.organization_ids:
            self.organization_ids.append(org)
        for kind, values in activity.indicators.items():
            _merge(self.indicators.setdefault(kind, []), values)

    def snapshot(self) -> Alert:
        """A copy that later joins do not change."""
        return replace(
            self,
            tags=list(self.tags),
            mitre=list(self.mitre),
            organization_ids=list(self.organization_ids),
            indicators={k: list(v) for k, v in self.indicators.items()},
            context=dict(self.context),
            events=list(self.events),
        )

    def to_dict(self) -> dict[str, Any]:
        """The public JSON form, keys in the documented order."""
        return {
            "schema": SCHEMA,
            "alert_id": self.alert_id,
            "kind": self.kind,
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "severity": self.severity,
            "title": self.title,
            "description": self.description,
            "runbook": self.runbook,
            "reference": self.reference,
            "tags": list(self.tags),
            "mitre": list(self.mitre),
            "dedup_key": self.dedup_key,
            "event_count": self.event_count,
            "first_event_at": _time(self.first_event_at),
            "last_event_at": _time(self.last_event_at),
            "organization_ids": list(self.organization_ids),
            "indicators": {k: list(v) for k, v in self.indicators.items()},
            "context": dict(self.context),
            "events": list(self.events),
        }

    def to_state(self) -> dict[str, Any]:
        """The public form plus what the correlator and router need to resume it."""
        state = self.to_dict()
        state["_opened_at"] = format_timestamp(self.opened_at)
        state["_window_end"] = format_timestamp(self.window_end)
        state["_destinations"] = self.destinations
        state["_pending"] = self.pending
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Alert:
        return cls(
            alert_id=state["alert_id"],
            kind=state["kind"],
            rule_id=state["rule_id"],
            rule_name=state["rule_name"],
            severity=state["severity"],
            title=state["title"],
            dedup_key=state["dedup_key"],
            opened_at=parse_timestamp(state["_opened_at"]),
            window_end=parse_timestamp(state["_window_end"]),
            description=state.get("description", ""),
            runbook=state.get("runbook", ""),
            reference=state.get("reference", ""),
            tags=list(state.get("tags", [])),
            mitre=list(state.get("mitre", [])),
            event_count=state.get("event_count", 0),
            first_event_at=_parse(state.get("first_event_at")),
            last_event_at=_parse(state.get("last_event_at")),
            organization_ids=list(state.get("organization_ids", [])),
            indicators={k: list(v) for k, v in state.get("indicators", {}).items()},
            context=dict(state.get("context", {})),
            events=list(state.get("events", [])),
            destinations=state.get("_destinations"),
            pending=state.get("_pending", False),
        )


def _time(moment: datetime | None) -> str | None:
    return format_timestamp(moment) if moment is not None else None


def _parse(text: str | None) -> datetime | None:
    return parse_timestamp(text) if text else None
