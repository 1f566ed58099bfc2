"""The event object Panther rules receive, with panther_core's semantics.

Rules written for Panther rely on details of its `PantherEvent`, so this view copies them:

- keys are looked up exactly first, then without case (`event["TYPE"]` finds `type`);
- nested objects come back as read-only mappings and lists as read-only sequences, which
  are *not* `dict`/`list` instances (`isinstance(event.get("updates"), list)` is False in
  Panther too) but compare equal to lists;
- `deep_get` treats a null like a missing key and returns the default;
- `deep_walk` walks through lists and collects the values it finds (case-sensitive, as
  Panther's is).

Nothing here can change the activity: alerts quote it verbatim.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from engine.activity import Event, FrozenMapping

PANTHER_LOG_TYPE = "Anthropic.Activity"


def freeze(value: Any) -> Any:
    """Panther's `_ensure_immutable`: objects and arrays become read-only views."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, dict):
        return PantherMapping(value)
    if isinstance(value, list):
        return ImmutableList(value)
    return value


# The JSON scalars, returned as they are (checked first: most values read are strings).
_PLAIN = frozenset((str, int, float, bool, type(None)))
_MISSING: Any = object()


def _deep_copy(value: dict[str, Any] | list[Any]) -> Any:
    """`copy.deepcopy` of a fresh container, with its answer for a flat one (only
    scalars, which deepcopy returns as they are) computed without its machinery:
    `pantherflow_investigation` copies the `p_any_` lists of every event it sees."""
    items = value.values() if isinstance(value, dict) else value
    for item in items:
        if type(item) not in _PLAIN:
            return copy.deepcopy(value)
    return value.copy()


def thaw(value: Any) -> Any:
    """`json.dumps(default=thaw)`: the plain value behind a read-only view."""
    if isinstance(value, FrozenMapping):
        if isinstance(value, PantherEvent):
            value._settle()
        return value._data
    if isinstance(value, ImmutableList):
        return list(value._items)
    raise TypeError(f"object of type {type(value).__name__} is not JSON serializable")


def plain(value: Any) -> Any:
    """A deep, plain-JSON copy of anything a rule returned (views included)."""
    return json.loads(json.dumps(value, default=thaw, allow_nan=False))


class _CaseInsensitive:
    """Item access, `get`, `in` and `deep_get` as Panther's ImmutableCaseInsensitiveDict.

    Mixed into `FrozenMapping` subclasses, whose `_data` is the wrapped dict; `_keymap`
    (lower-cased key -> original key, first one wins) is built on the first miss only.
    A live event may add its `p_` fields in `_original_key`, so `_data` must be read
    again after it.
    """

    __slots__ = ()
    _data: dict[str, Any]
    _keymap: dict[str, str] | None

    def _settle(self) -> None:
        """Nothing to add: only a live `PantherEvent` completes its data lazily."""

    def _original_key(self, key: Any) -> Any:
        keymap = self._keymap
        if keymap is None:
            keymap = {}
            for original in self._data:
                if isinstance(original, str):
                    keymap.setdefault(original.lower(), original)
            self._keymap = keymap
        return keymap.get(key.lower()) if isinstance(key, str) else None

    def __getitem__(self, key: Any) -> Any:
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            original = self._original_key(key)
            if original is None:
                raise KeyError(key)
            value = self._data[original]
        return value if type(value) in _PLAIN else freeze(value)

    def get(self, key: Any, default: Any = None) -> Any:
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            original = self._original_key(key)
            if original is None:
                return default
            value = self._data[original]
        return value if type(value) in _PLAIN else freeze(value)

    def __contains__(self, key: object) -> bool:
        return key in self._data or self._original_key(key) is not None

    def deep_get(self, *keys: Any, default: Any = None) -> Any:
        """Walk nested mappings; `default` where a step is missing, not a mapping, or the
        result is null (panther_core's `reduce` over `get(key, default)`)."""
        if not keys:
            self._settle()
        value: Any = self._data
        for index, key in enumerate(keys):
            if type(value) is dict and key in value:
                value = value[key]
                continue
            # A miss: the slow path, through `get` (any case; a live event's p_ fields).
            node: Any = self if index == 0 else freeze(value)
            for step in keys[index:]:
                node = node.get(step, default) if isinstance(node, Mapping) else default
            return default if node is None else node
        return default if value is None else freeze(value)

    def to_dict(self) -> dict[str, Any]:
        """A deep copy the caller may change freely."""
        self._settle()
        return _deep_copy(self._data)

    def copy(self) -> dict[str, Any]:
        self._settle()
        return _deep_copy(self._data)

    def raw_view(self) -> Mapping[str, Any]:
        """The wrapped dict itself; treat it as read-only."""
        self._settle()
        return self._data


class PantherMapping(_CaseInsensitive, FrozenMapping):
    """A nested object of the event, read-only and case-insensitive."""

    __slots__ = ("_keymap",)

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._keymap = None

    def __repr__(self) -> str:
        # Panther's class name and layout: rules put nested values in titles and compare
        # their text (`str(event.get("audience"))`), so the text must be the same.
        return f"ImmutableCaseInsensitiveDict({self._data})"

    json_encoder = staticmethod(thaw)


class ImmutableList(Sequence[Any]):
    """A read-only array: equal to a list or tuple with the same items, not a list itself."""

    __slots__ = ("_items",)

    def __init__(self, items: Sequence[Any]) -> None:
        self._items = tuple(items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            # Panther returns a plain tuple of the items; a copy here, so that a rule
            # cannot change the activity through it.
            return copy.deepcopy(self._items[index])
        return freeze(self._items[index])

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return (freeze(item) for item in self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ImmutableList):
            return self._items == other._items
        if isinstance(other, list | tuple):
            return self._items == tuple(other)
        return False

    __hash__ = None  # type: ignore[assignment]  # as Panther's: unhashable

    def __repr__(self) -> str:
        return f"ImmutableList({self._items})"  # Panther's text: the items as a tuple

    def copy(self) -> list[Any]:
        return _deep_copy(list(self._items))

    as_list = copy


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        pass
    try:
        from dateutil import parser as dateparser
    except ImportError:  # pragma: no cover - dateutil is optional
        return None
    try:
        return dateparser.parse(text)
    except (ValueError, OverflowError):
        return None


def _empty_list(value: Any) -> bool:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return all(_empty_list(item) for item in value)
    return False


def _walk(obj: Any, keys: tuple[Any, ...], default: Any, return_val: str) -> Any:
    """panther_core's `deep_walk`, on the raw data."""
    if not keys:
        return default if obj is None or _empty_list(obj) else freeze(obj)
    if isinstance(obj, Mapping):
        return _walk(obj.get(keys[0], default), keys[1:], default, return_val)
    found: dict[Any, None] = {}
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        for item in obj:
            value = _walk(item, keys, default, return_val)
            if value is None:
                continue
            if isinstance(value, Sequence) and not isinstance(value, str):
                for sub_item in value:
                    found[sub_item] = None
            else:
                found[value] = None
    values = list(found)
    if not values:
        return default
    # Panther's quirk, kept: an unknown `return_val` returns the string "all".
    return {
        "first": values[0],
        "last": values[-1],
        "all": values[0] if len(values) == 1 else values,
    }.get(return_val, "all")


def with_p_fields(data: dict[str, Any], created_at: datetime) -> dict[str, Any]:
    """The activity plus the `p_` fields Panther's log pipeline adds (only where the
    activity does not carry them already): a new dict, the activity is not changed."""
    enriched = dict(data)
    enriched.setdefault("p_log_type", PANTHER_LOG_TYPE)
    enriched.setdefault("p_event_time", created_at.strftime("%Y-%m-%d %H:%M:%S.%f"))
    actor = data.get("actor")
    if isinstance(actor, dict):
        emails = [
            v
            for v in (actor.get("email_address"), actor.get("unauthenticated_email_address"))
            if isinstance(v, str) and v
        ]
        if emails and "p_any_emails" not in data:
            enriched["p_any_emails"] = list(dict.fromkeys(emails))
        address = actor.get("ip_address")
        if isinstance(address, str) and address and "p_any_ip_addresses" not in data:
            enriched["p_any_ip_addresses"] = [address]
    return enriched


class PantherEvent(_CaseInsensitive, Event):
    """What a Panther rule's functions receive: a read-only, case-insensitive mapping with
    `get`, `deep_get`, `deep_walk`, `udm`, `lookup` and `event_time_epoch`.

    A live event (`PantherEvent.live`) wraps the activity itself and adds the `p_` fields
    only when something asks for a key the activity lacks, or for the whole mapping
    (iteration, length, copies, JSON): most rules read `type` and a few actor fields, and
    never pay for the copy and the timestamp formatting."""

    __slots__ = ("_keymap", "_pending")

    def __init__(self, data: dict[str, Any], created_at: datetime | None = None) -> None:
        super().__init__(data, created_at)  # type: ignore[arg-type]
        self._keymap = None
        self._pending = False

    @classmethod
    def live(cls, data: dict[str, Any], created_at: datetime) -> PantherEvent:
        """The event as Panther's log pipeline delivers it: the activity plus the `p_`
        fields Panther adds (only where the activity does not carry them already)."""
        # Built field by field: this runs once per activity a Python rule sees.
        event = cls.__new__(cls)
        event._data = data
        event.created_at = created_at
        event._options = None
        event._keymap = None
        event._pending = True
        return event

    def _settle(self) -> None:
        if self._pending:
            self._pending = False
            self._data = with_p_fields(self._data, self.created_at)
            # The p_ keys come after the activity's own, so a key map built before keeps
            # every entry it had ("first one wins"); rebuilt on the next miss.
            self._keymap = None

    def _original_key(self, key: Any) -> Any:
        # Only a key that is a p_ field in some case can be one the activity lacks.
        if self._pending and isinstance(key, str) and key.lower().startswith("p_"):
            self._settle()
            if key in self._data:
                return key  # now an exact hit, which comes before any other case
        keymap = self._keymap
        if keymap is not None and type(key) is str:
            return keymap.get(key.lower())
        return _CaseInsensitive._original_key(self, key)

    def __iter__(self) -> Iterator[str]:
        self._settle()
        return iter(self._data)

    def __len__(self) -> int:
        self._settle()
        return len(self._data)

    def __repr__(self) -> str:
        self._settle()
        return super().__repr__()

    def search(self, expression: str, default: Any = None) -> Any:
        self._settle()
        return super().search(expression, default)

    def deep_walk(
        self, *keys: Any, default: Any = None, return_val: str = "all"
    ) -> Any | list[Any]:
        """Like `deep_get`, but also through lists: one value, or a list of the distinct
        values found (`return_val` "first" or "last" picks one)."""
        if not keys:
            self._settle()
        elif self._pending and isinstance(keys[0], str) and keys[0].startswith("p_"):
            self._settle()  # deep_walk is case-sensitive: only an exact p_ key is one
        return _walk(self._data, keys, default, return_val)

    def udm(self, *keys: Any, default: Any = None) -> Any:
        """Panther's `udm` without a data model: `p_udm.<keys>`, else the keys themselves."""
        if keys:
            result = self.deep_get("p_udm", *keys)
            if not result:
                result = self.deep_get(*keys)
            if result:
                return result
        return default

    def lookup(self, lookup_name: str, lookup_key: str) -> Any:
        """Lookup tables are not available here; tests mock them as Panther's do, under
        `_mocked_lookup_data_`."""
        return self.deep_get("_mocked_lookup_data_", lookup_name, lookup_key)

    def event_time_epoch(self, force_utc: bool = True) -> int:
        """Seconds since the epoch of `p_event_time` (UTC unless it names a zone); 0 when
        it is missing or unreadable, as in Panther. Live, every event has one; a test's
        `Log` without one gives 0 here as under panther_analysis_tool, not `created_at`."""
        self._settle()
        text = self._data.get("p_event_time")
        if isinstance(text, str) and text:
            moment = _parse_time(text)
            if moment is not None:
                if moment.tzinfo is None and force_utc:
                    moment = moment.replace(tzinfo=UTC)
                return int(moment.timestamp())
        return 0

    json_encoder = staticmethod(thaw)
