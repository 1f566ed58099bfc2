"""Which outbox a configuration means: the SQLite state file's (the default), or the
shared one on Redis when `state.backend` is `redis` (several workers, one outbox)."""

from __future__ import annotations

from engine.config import Config
from engine.delivery.outbox import Outbox, OutboxStore


def open_outbox(config: Config) -> OutboxStore:
    """The configured outbox, for a dispatcher or `detect alerts`; its `close()` releases
    what it opened (the file, or the Redis connection)."""
    state = config.state
    if state.backend == "redis" and state.redis is not None:
        from engine.delivery.redis_outbox import RedisOutbox
        from engine.state.redis_connect import open_redis

        return RedisOutbox(open_redis(state.redis), state.redis.key_prefix, owns_client=True)
    return Outbox(state.path)
