"""The alerts side of an outbox, one implementation for both backends.

Each outbox reads the alerts its state store wrote through a reader over the same
storage (`AlertRows` over the state file, `RedisAlertRows` over the Redis); the five
reads the dispatcher and `detect alerts` make of them are the same on both, and live
here so the two outboxes cannot drift apart. What differs, how to find the alerts that
routing has not seen yet, stays each backend's `_unrouted_ids`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol


class AlertReader(Protocol):
    """The alerts a state store wrote, read only: `AlertRows` (engine/state/sqlite.py) or
    `RedisAlertRows` (engine/state/redis_alerts.py)."""

    def notify_ids(self, after: int = 0, limit: int = ...) -> list[tuple[int, str]]: ...
    def bodies(self, alert_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...
    def body(self, alert_id: str) -> dict[str, Any] | None: ...
    def ids_starting(self, prefix: str, limit: int = 5) -> list[str]: ...
    def recent(self, limit: int, rule: str | None = None) -> list[dict[str, Any]]: ...
    def meta(self, key: str) -> Any | None: ...


class OutboxAlerts(ABC):
    """The alert reads of `OutboxStore`, over `_alerts` (set by the outbox) and the
    outbox's own `_unrouted_ids`."""

    _alerts: AlertReader

    @abstractmethod
    def _unrouted_ids(self, limit: int) -> list[str]:
        """The alerts owed a notification that routing has not seen, in commit order,
        at most `limit`."""

    def unrouted_alerts(self, limit: int = 500) -> list[dict[str, Any]]:
        """New alerts owed a notification that routing has not seen, in commit order."""
        ids = self._unrouted_ids(limit)
        bodies = self._alerts.bodies(ids)
        return [bodies[alert_id] for alert_id in ids if alert_id in bodies]

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        return self._alerts.body(alert_id)

    def find_alert_ids(self, prefix: str) -> list[str]:
        return self._alerts.ids_starting(prefix, 5)

    def recent_alerts(self, limit: int, rule: str | None = None) -> list[dict[str, Any]]:
        return self._alerts.recent(limit, rule)

    def watermark(self) -> str | None:
        """Event time the pipeline has reached, RFC 3339: the state store's meta
        `watermark` (on Redis, the lowest of every partition's)."""
        return self._alerts.meta("watermark")
