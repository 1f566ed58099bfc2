"""The two outbox backends side by side, for the tests that must hold on both: the SQLite
state file, and a real redis-server (the session's `redis_server`, tests/conftest.py).

A `Backend` commits alerts the way the correlator does (new ones owed a notification,
in commit order, through the backend's own state store) and opens outboxes over them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.alerts import Alert
from engine.delivery.outbox import Outbox, OutboxStore
from engine.delivery.redis_outbox import RedisOutbox
from tests.delivery.conftest import save_alerts


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def save_redis_alerts(url: str, prefix: str, alerts: list[Alert], watermark: str | None = None):
    """Commit alerts with `RedisStore`, as a worker's correlator does."""
    from engine.state.redis_store import RedisStore

    store = RedisStore(redis_client(url), prefix, close_client=True)
    for alert in alerts:
        store.save_alert(alert.to_state(), notify=True)
    if watermark is not None:
        store.set_meta("watermark", watermark)
    store.commit()
    store.close()


def open_redis_outbox(url: str, prefix: str) -> RedisOutbox:
    return RedisOutbox(redis_client(url), prefix, owns_client=True)


@dataclass
class Backend:
    name: str
    open: Callable[[], OutboxStore]
    save: Callable[..., None]


def sqlite_backend(db: Path) -> Backend:
    def save(alerts: list[Alert], watermark: str | None = None) -> None:
        save_alerts(db, alerts, watermark)

    return Backend("sqlite", lambda: Outbox(db), save)


def redis_backend(url: str, prefix: str) -> Backend:
    def save(alerts: list[Alert], watermark: str | None = None) -> None:
        save_redis_alerts(url, prefix, alerts, watermark)

    return Backend("redis", lambda: open_redis_outbox(url, prefix), save)
