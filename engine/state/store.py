"""The state store protocol, and the in-memory backend used by tests and plain replays.

Correlation state is small JSON values under (namespace, key). Writes become durable only
at `commit()`, together with the outbox and the source checkpoint, so a crash between two
commits loses nothing that was acknowledged and repeats nothing that was notified.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any, Protocol


class StateStore(Protocol):
    """Values are JSON-like and passed by reference: a value handed to `put`, or returned
    by `get`, may change only on its way to being put again (read, change, put back)."""

    def get(self, namespace: str, key: str) -> Any | None: ...

    def put(self, namespace: str, key: str, value: Any, expires: float | None = None) -> None:
        """Store `value`; `expires` is an event-time epoch after which `purge` may drop it."""

    def delete(self, namespace: str, key: str) -> None: ...

    def items(self, namespace: str) -> Iterator[tuple[str, Any]]: ...

    def save_alert(self, alert: dict[str, Any], notify: bool) -> None:
        """Upsert an alert in the outbox; `notify` marks a new alert as owed a notification."""

    def alerts(self) -> Iterator[dict[str, Any]]: ...

    def get_meta(self, key: str) -> Any | None: ...

    def set_meta(self, key: str, value: Any) -> None: ...

    def purge(self, before: float) -> int:
        """Drop entries that expired before the event-time epoch `before`."""

    def commit(self) -> None: ...

    def idle(self, budget: float) -> float:
        """The caller has had `budget` seconds with nothing to do lately: housekeeping of
        about that cost that would otherwise wait for a later commit or the close may run
        now; returns the seconds it took. Does nothing while changes are pending (it must
        not write what is not committed)."""

    def after_fork(self) -> None:
        """Called in a child forked from the process that opened the store, which the
        child will not use: let go of what the child inherited that must end with the
        parent (the SQLite store's lock)."""

    def close(self) -> None: ...


class MemoryStore:
    """Everything in dicts. Values are kept by reference, not copied, as the protocol
    allows."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, tuple[Any, float | None]]] = {}
        self._alerts: dict[str, dict[str, Any]] = {}
        self._meta: dict[str, Any] = {}

    def get(self, namespace: str, key: str) -> Any | None:
        entry = self._data.get(namespace, {}).get(key)
        return entry[0] if entry else None

    def put(self, namespace: str, key: str, value: Any, expires: float | None = None) -> None:
        self._data.setdefault(namespace, {})[key] = (value, expires)

    def delete(self, namespace: str, key: str) -> None:
        self._data.get(namespace, {}).pop(key, None)

    def items(self, namespace: str) -> Iterator[tuple[str, Any]]:
        for key, (value, _) in list(self._data.get(namespace, {}).items()):
            yield key, value

    def save_alert(self, alert: dict[str, Any], notify: bool) -> None:
        previous = self._alerts.get(alert["alert_id"])
        owed = notify or bool(previous and previous.get("_notify"))
        self._alerts[alert["alert_id"]] = {**alert, "_notify": owed}

    def alerts(self) -> Iterator[dict[str, Any]]:
        yield from (dict(a) for a in self._alerts.values())

    def get_meta(self, key: str) -> Any | None:
        return copy.deepcopy(self._meta.get(key))

    def set_meta(self, key: str, value: Any) -> None:
        self._meta[key] = copy.deepcopy(value)

    def purge(self, before: float) -> int:
        dropped = 0
        for entries in self._data.values():
            for key in [k for k, (_, exp) in entries.items() if exp is not None and exp < before]:
                del entries[key]
                dropped += 1
        return dropped

    def commit(self) -> None:
        """Nothing to do: memory is as durable as it gets."""

    def idle(self, budget: float) -> float:
        """No housekeeping to do."""
        return 0.0

    def after_fork(self) -> None:
        """Nothing inherited to let go of."""

    def close(self) -> None:
        """Nothing to release."""


class ReadCache(dict[tuple[str, str], Any]):
    """The values a store read or wrote lately, at most `size`: past it the oldest tenth
    (in insertion order) is dropped at once, so memory stays bounded without an LRU's
    bookkeeping on every read. The SQLite and Redis stores each keep one."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def keep(self, name: tuple[str, str], value: Any) -> None:
        self[name] = value
        if len(self) > self.size:
            for old in list(itertools.islice(self, self.size // 10 + 1)):
                del self[old]
