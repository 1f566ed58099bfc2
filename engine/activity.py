"""The activity model and the read-only view rules receive.

An activity is validated once, at the edge, and then carried as the original mapping: the
Compliance API adds types and fields without notice, so everything we do not check must
flow through untouched, and the alert's sample events must be the activity verbatim.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import jmespath
from pydantic import BaseModel, ConfigDict, field_validator

# RFC 3339 with an optional fraction of any length; we keep at most six digits because
# Python datetimes stop at microseconds and real records carry nanoseconds at times.
_TIMESTAMP = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})$"
)


_FAST_FORMS = frozenset((20, 24, 27))  # ...SSZ, ...SS.fffZ, ...SS.ffffffZ


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime (fractions cut to µs)."""
    if (
        len(text) in _FAST_FORMS
        and text[-1] == "Z"
        and text[10] == "T"
        and text[19] in ".Z"
        and text[:4].isdigit()
    ):
        # The API's own form; fromisoformat is ten times faster than the general path.
        try:
            return datetime.fromisoformat(text)  # reads `Z` as UTC since Python 3.11
        except ValueError:
            pass
    m = _TIMESTAMP.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp with a zone: {text!r}")
    date, clock, fraction, zone = m.groups()
    if zone in ("Z", "z"):
        zone = "+00:00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    micro = f".{(fraction or '0')[:6].ljust(6, '0')}"
    parsed = datetime.fromisoformat(f"{date}T{clock}{micro}{zone}")
    return parsed.astimezone(UTC)


def format_timestamp(moment: datetime) -> str:
    """The one textual form the engine writes: UTC, microseconds, `Z`."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat is several times faster than strftime, and alerts format four per write.
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class Actor(BaseModel):
    """Who did it: a union on `type` of which only `type` is required."""

    model_config = ConfigDict(extra="allow")

    type: str
    email_address: str | None = None
    user_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    api_key_id: str | None = None
    unauthenticated_email_address: str | None = None

    @field_validator("type")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value


class Activity(BaseModel):
    """One Compliance API activity; the fields Panther's schema names, the rest preserved."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    created_at: datetime
    type: str
    actor: Actor
    organization_id: str | None = None
    organization_uuid: str | None = None

    @field_validator("id", "type")
    @classmethod
    def _required_text(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("created_at", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> datetime:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("timestamp has no time zone")
            return value.astimezone(UTC)
        if not isinstance(value, str):
            raise ValueError("must be an RFC 3339 string")
        return parse_timestamp(value)


class ActivityRecord:
    """An activity as it flows through the pipeline: the mapping exactly as it arrived,
    plus the few fields the engine reads on every activity, already checked.

    The pydantic `Activity` model defines what a valid activity is; building a model for
    every activity would cost more than parsing its JSON, so `parse_activity` checks the
    same constraints by hand and asks the model only when something is off (for its
    precise error, or its verdict on an unusual input). Both use `parse_timestamp`.
    """

    __slots__ = ("created_at", "epoch", "id", "organization_id", "raw", "type")

    def __init__(self, raw: dict[str, Any], created_at: datetime) -> None:
        self.raw = raw
        self.created_at = created_at
        self.epoch: float = created_at.timestamp()  # windows compare these, not datetimes
        self.id: str = raw["id"]
        self.type: str = raw["type"]
        self.organization_id: str | None = raw.get("organization_id")

    @property
    def indicators(self) -> dict[str, list[str]]:
        return extract_indicators(self.raw)

    def model(self) -> Activity:
        """The typed pydantic model of this activity (extra fields included)."""
        return Activity.model_validate(self.raw)

    def __repr__(self) -> str:
        return f"ActivityRecord({self.id!r}, {self.type!r}, {format_timestamp(self.created_at)})"


_ACTOR_TEXT_FIELDS = tuple(name for name in Actor.model_fields if name != "type")


def _checked(obj: dict[str, Any]) -> ActivityRecord | None:
    """The record when `obj` obviously satisfies the model, else None (ask the model)."""
    get = obj.get
    ident = get("id")
    kind = get("type")
    actor = get("actor")
    created = get("created_at")
    if not (
        type(ident) is str
        and ident
        and type(kind) is str
        and kind
        and type(actor) is dict
        and type(created) is str
    ):
        return None
    actor_type = actor.get("type")
    if not (type(actor_type) is str and actor_type):
        return None
    for value in (get("organization_id"), get("organization_uuid")):
        if value is not None and type(value) is not str:
            return None
    for value in actor.values():
        if type(value) is not str:
            # Rare (a null address, a nested provider): check only the typed fields.
            for name in _ACTOR_TEXT_FIELDS:
                value = actor.get(name)
                if value is not None and type(value) is not str:
                    return None
            break
    try:
        moment = parse_timestamp(created)
    except ValueError:
        return None
    return ActivityRecord(obj, moment)


def parse_activity(obj: Any) -> ActivityRecord:
    """Validate one decoded JSON value as an activity; raises `pydantic.ValidationError`
    (or `TypeError` for a value that is not an object)."""
    if not isinstance(obj, dict):
        raise TypeError(f"an activity must be a JSON object, not {type(obj).__name__}")
    record = _checked(obj)
    if record is None:
        model = Activity.model_validate(obj)  # raises the precise error
        record = ActivityRecord(obj, model.created_at)
    return record


def describe_validation_error(exc: Exception) -> str:
    """One line naming each failing field, for quarantine records and replay reports."""
    errors = getattr(exc, "errors", None)
    if errors is None:
        return str(exc)
    parts = []
    for err in errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "<activity>"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


# Panther's Anthropic.Activity schema marks these paths as indicators.
_EMAIL_PATHS = (("actor", "email_address"), ("actor", "unauthenticated_email_address"))
_IP_PATHS = (("actor", "ip_address"),)
_ACTOR_ID_PATHS = (("actor", "user_id"),)


def _collect(data: Mapping[str, Any], paths: tuple[tuple[str, ...], ...]) -> list[str]:
    found: list[str] = []
    for path in paths:
        value: Any = data
        for step in path:
            value = value.get(step) if isinstance(value, Mapping) else None
        if isinstance(value, str) and value and value not in found:
            found.append(value)
    return found


def extract_indicators(data: Mapping[str, Any]) -> dict[str, list[str]]:
    return {
        "emails": _collect(data, _EMAIL_PATHS),
        "ip_addresses": _collect(data, _IP_PATHS),
        "actor_ids": _collect(data, _ACTOR_ID_PATHS),
    }


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return FrozenMapping(value)
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


class FrozenMapping(Mapping[str, Any]):
    """A read-only window on a dict: nested dicts and lists come back read-only too, so
    one rule cannot change what the next rule sees."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return _freeze(self._data[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def to_dict(self) -> dict[str, Any]:
        """A deep copy the caller may change freely."""
        return copy.deepcopy(self._data)


_SEARCH_CACHE: dict[str, jmespath.parser.ParsedResult] = {}


class Event(FrozenMapping):
    """What a Python rule receives: item access, `get`, `deep_get`, `search`, `created_at`."""

    __slots__ = ("_options", "created_at")

    def __init__(
        self, data: dict[str, Any], created_at: datetime, options: jmespath.Options | None = None
    ) -> None:
        super().__init__(data)
        self.created_at = created_at
        self._options = options

    @classmethod
    def of(cls, activity: ActivityRecord, options: jmespath.Options | None = None) -> Event:
        return cls(activity.raw, activity.created_at, options)

    def deep_get(self, *keys: str, default: Any = None) -> Any:
        """Walk nested mappings; `default` where a step is missing or null (Panther's rule)."""
        value: Any = self._data
        for key in keys:
            if not isinstance(value, dict):
                return default
            value = value.get(key)
            if value is None:
                return default
        return _freeze(value)

    def search(self, expression: str, default: Any = None) -> Any:
        """Evaluate a JMESPath expression (with the engine's extra functions)."""
        compiled = _SEARCH_CACHE.get(expression)
        if compiled is None:
            compiled = _SEARCH_CACHE[expression] = jmespath.compile(expression)
        result = compiled.search(self._data, options=self._options)
        return default if result is None else _freeze(result)
