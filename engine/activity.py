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
# Matched whole (`$` would let a trailing newline through) and on ASCII digits only.
_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})", re.ASCII
)


_FAST_FORMS = frozenset((20, 24, 27))  # ...SSZ, ...SS.fffZ, ...SS.ffffffZ
# The separators of those forms, every third character from the fifth: `fromisoformat`
# also reads ISO forms RFC 3339 does not allow (week dates, `10:00.5`, `100000`), so only
# text with RFC 3339's separators in place may skip the regular expression.
_FAST_SEPARATORS = frozenset(("--T::.", "--T::Z"))


# Activity times the engine accepts (`Activity` and `try_parse_activity` check them):
# windows and forgetting periods add up to years to an activity's time, and Python's
# datetimes end with the year 9999 (an activity at 9999-12-31T23:59:59Z raised
# OverflowError opening its alert). Both ends are far outside any real audit trail.
EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_EARLIEST_EPOCH = EARLIEST.timestamp()
_LATEST_EPOCH = LATEST.timestamp()


def _in_range(moment: datetime, text: str) -> datetime:
    if not EARLIEST <= moment < LATEST:
        raise ValueError(
            f"timestamp out of range: {text!r} (activities from the year 1000 up to 9000)"
        )
    return moment


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime (fractions cut to µs)."""
    if len(text) in _FAST_FORMS and text[-1] == "Z" and text[4:20:3] in _FAST_SEPARATORS:
        # The API's own form; fromisoformat is ten times faster than the general path.
        try:
            return datetime.fromisoformat(text)  # reads `Z` as UTC since Python 3.11
        except ValueError:
            pass
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp with a zone: {text!r}")
    date, clock, fraction, zone = m.groups()
    if zone in ("Z", "z"):
        zone = "+00:00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    micro = f".{(fraction or '0')[:6].ljust(6, '0')}"
    parsed = datetime.fromisoformat(f"{date}T{clock}{micro}{zone}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError(f"timestamp out of range: {text!r}") from exc


def format_timestamp(moment: datetime | float, timespec: str = "microseconds") -> str:
    """The one textual form the engine writes a time in: RFC 3339, UTC, `Z`. `moment` is
    a datetime or epoch seconds. `timespec` is the precision:

    - `"microseconds"` (activity and alert times, the state file): always six digits, so
      the strings sort and compare as the times do;
    - `"seconds"` (wall-clock instants people read: the CLI, delivery reasons, digests'
      periods): truncated to the second;
    - `"auto"` (the Compliance API's `created_at.*` query bounds): fractions only when
      there are any.
    """
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, tz=UTC)
    elif moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat is several times faster than strftime, and alerts format four per write.
    return moment.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


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
            try:
                return _in_range(value.astimezone(UTC), value.isoformat())
            except OverflowError as exc:
                raise ValueError(f"timestamp out of range: {value.isoformat()}") from exc
        if not isinstance(value, str):
            raise ValueError("must be an RFC 3339 string")
        return _in_range(parse_timestamp(value), value)


class ActivityRecord:
    """An activity as it flows through the pipeline: the mapping exactly as it arrived,
    plus the few fields the engine reads on every activity, already checked.

    The pydantic `Activity` model defines what a valid activity is; building a model for
    every activity would cost more than parsing its JSON, so `try_parse_activity` checks
    the same constraints by hand and `parse_activity` asks the model only when something
    is off (for its precise error, or its verdict on an unusual input). Both read
    timestamps as `parse_timestamp` does.
    """

    __slots__ = ("created_at", "epoch", "id", "organization_id", "raw", "text", "type")

    def __init__(
        self, raw: dict[str, Any], created_at: datetime, text: bytes | None = None
    ) -> None:
        self.raw = raw
        # The activity's JSON as read, when the reader had it on its own (a JSON Lines
        # line): what keeps a sample of it costs no encoding.
        self.text = text
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
_new_record = object.__new__
_fromisoformat = datetime.fromisoformat


def _actor_text_fields_valid(actor: dict[str, Any]) -> bool:
    """Whether each of the actor's typed text fields is a string or null."""
    for name in _ACTOR_TEXT_FIELDS:
        value = actor.get(name)
        if value is not None and type(value) is not str:
            return False
    return True


def try_parse_activity(obj: Any, text: bytes | None = None) -> ActivityRecord | None:
    """The record when `obj`, a decoded JSON value, plainly is a valid activity, else None
    (then `parse_activity` asks the model, or it is not an activity). Readers call this
    once per line, so it is written for the fewest steps; `text` is the line `obj` was
    decoded from, kept on the record. Not for dict subclasses: an item lookup could
    change them (`defaultdict`)."""
    try:
        ident = obj["id"]
        kind = obj["type"]
        actor = obj["actor"]
        created = obj["created_at"]
    except (KeyError, TypeError):  # TypeError: a list, string, number or null
        return None
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
    organization_id = obj.get("organization_id")
    if organization_id is not None and type(organization_id) is not str:
        return None
    organization_uuid = obj.get("organization_uuid")
    if organization_uuid is not None and type(organization_uuid) is not str:
        return None
    for value in actor.values():
        if type(value) is not str:
            # Rare (a null address, a nested provider): check only the typed fields.
            if not _actor_text_fields_valid(actor):
                return None
            break
    # `parse_timestamp`'s first case, inlined: the API writes microseconds and `Z`.
    if len(created) == 27 and created[4:20:3] == "--T::." and created[26] == "Z":
        try:
            moment = _fromisoformat(created)
        except ValueError:
            return None
    else:
        try:
            moment = parse_timestamp(created)
        except ValueError:
            return None
    epoch = moment.timestamp()
    if not _EARLIEST_EPOCH <= epoch < _LATEST_EPOCH:
        return None  # `parse_activity` asks the model, which says why
    # The slots set directly: the same record `ActivityRecord(obj, moment)` builds, from
    # the values at hand and without a call to `__init__`.
    record = _new_record(ActivityRecord)
    record.raw = obj
    record.created_at = moment
    record.epoch = epoch
    record.id = ident
    record.type = kind
    record.organization_id = organization_id
    record.text = text
    return record


def parse_activity(obj: Any) -> ActivityRecord:
    """Validate one decoded JSON value as an activity; raises `pydantic.ValidationError`
    (or `TypeError` for a value that is not an object)."""
    if not isinstance(obj, dict):
        raise TypeError(f"an activity must be a JSON object, not {type(obj).__name__}")
    record = try_parse_activity(obj) if type(obj) is dict else None
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

    def unfrozen(self) -> dict[str, Any]:
        """The dict itself, without a copy, for an adapter that gives rules its own
        read-only view of it (Panther's event): the caller must not change it."""
        return self._data


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
