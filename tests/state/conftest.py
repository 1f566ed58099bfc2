"""Fixtures of the state tests: the three state stores side by side for the contract
suite (memory, a real SQLite file, the session's real redis-server under a key prefix of
the test's own)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.state.store import MemoryStore, StateStore

MEMORY_IS_NOT_DURABLE = "memory holds nothing beyond its instance: no durability to test"


@dataclass
class Backend:
    """Opens stores over one storage: `reopen` closes a store and opens a new instance
    over what it committed; `abandon` drops one as a crash would (nothing more
    written)."""

    name: str
    factory: Callable[[], StateStore]
    durable: bool = True
    opened: list[StateStore] = field(default_factory=list)
    client: Any = None  # Redis only
    prefix: str = ""  # Redis only

    def open(self) -> StateStore:
        store = self.factory()
        self.opened.append(store)
        return store

    def reopen(self, store: StateStore) -> StateStore:
        if not self.durable:
            pytest.skip(MEMORY_IS_NOT_DURABLE)
        store.close()
        self.opened.remove(store)
        return self.open()

    def abandon(self, store: StateStore) -> None:
        """The process dies: the operating system closes its files and releases its lock;
        what was not committed is gone."""
        if not self.durable:
            pytest.skip(MEMORY_IS_NOT_DURABLE)
        self.opened.remove(store)
        if self.name == "sqlite":
            store._db.close()  # type: ignore[attr-defined]
            store._lock.close()  # type: ignore[attr-defined]

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    if request.param == "memory":
        made = Backend("memory", MemoryStore, durable=False)
    elif request.param == "sqlite":
        from engine.state.sqlite import SqliteStore

        made = Backend("sqlite", lambda: SqliteStore(tmp_path / "state.db"))
    else:
        from engine.state.redis_store import RedisStore

        client = request.getfixturevalue("redis_client")
        prefix = request.getfixturevalue("redis_prefix")
        made = Backend("redis", lambda: RedisStore(client, prefix), client=client, prefix=prefix)
    yield made
    made.close_all()
