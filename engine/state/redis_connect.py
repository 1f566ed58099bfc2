"""Connecting to the Redis that holds a shared state, and refusing one that could lose it.

`open_redis(settings)` takes `state.redis` of `detect.yaml` (engine/config.py,
`RedisSettings`; read here by its attributes, as this layer sits below the
configuration): redis:// or rediss:// (TLS, with an optional CA bundle), an ACL user and
password. The password is registered for redaction, and no message here quotes more of
the URL than host:port/db.

`check_redis_safety(client)` refuses a server that keeps the state only in memory (no
append-only file and no RDB save points) or that may evict keys when full (any
`maxmemory-policy` but `noeviction`): either would lose correlation state, the outbox or
a checkpoint without a word. It also refuses a Redis older than 7.0, which would reject
the store's scripts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from engine.errors import ConfigError
from engine.secrets import redact, register

if TYPE_CHECKING:
    from datetime import timedelta
    from pathlib import Path

    import redis
    from pydantic import SecretStr


class RedisSettingsLike(Protocol):
    """What `open_redis` reads of `engine.config.RedisSettings`."""

    url: str
    username: str | None
    password: SecretStr | None
    ca_file: Path | None
    timeout: timedelta


def server_of(url: str) -> str:
    """host:port/db of a Redis URL, without credentials or anything else."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError:
        return "the configured Redis"
    db = parts.path.strip("/") or "0"
    return f"{parts.hostname}:{port}/{db}"


def open_redis(settings: RedisSettingsLike) -> redis.Redis:
    """A client of the configured server, checked with a PING: a server that cannot be
    reached or refuses the credentials is a one-line `ConfigError` naming host:port."""
    try:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigError(
            "state.backend: redis needs the Redis client: pip install 'detect[redis]'"
        ) from None
    password = settings.password.get_secret_value() if settings.password else None
    if password:
        register([password])
    seconds = settings.timeout.total_seconds()
    options: dict[str, Any] = {
        "username": settings.username,
        "password": password,
        "socket_timeout": seconds,
        "socket_connect_timeout": seconds,
        "health_check_interval": 30,
        # A dropped connection is tried again three times within about half a second;
        # a server that stays away fails the command, and the run says so.
        "retry": Retry(ExponentialBackoff(cap=0.25, base=0.05), 3),
    }
    if settings.url.startswith("rediss://"):
        # The certificate must name the host of the URL: redis-py 5 checks only that a
        # trusted authority signed it unless told (6 and later check by default).
        options["ssl_check_hostname"] = True
    if settings.ca_file is not None:
        options["ssl_ca_certs"] = str(settings.ca_file)
    server = server_of(settings.url)
    try:
        client = redis.Redis.from_url(settings.url, **options)
    except ValueError:
        raise ConfigError(f"state.redis.url: not a Redis URL ({server})") from None
    try:
        client.ping()
    except redis.AuthenticationError as error:
        client.close()
        raise ConfigError(
            f"Redis at {server} refused the credentials of state.redis "
            f"(username/password): {redact(str(error))}"
        ) from None
    except redis.RedisError as error:
        client.close()
        raise ConfigError(f"cannot reach Redis at {server}: {redact(str(error))}") from None
    return client


_EVICTION_FIX = (
    "set `maxmemory-policy noeviction` (redis.conf, or CONFIG SET maxmemory-policy "
    "noeviction): a full Redis then refuses writes, and detect stops and says so"
)
_PERSISTENCE_FIX = (
    "turn on the append-only file: `appendonly yes` (redis.conf, or CONFIG SET appendonly "
    "yes), or at least RDB save points (`save 60 1000`)"
)


# The scripts declare themselves with `#!lua` (refused whole when the server is out of
# memory), which Redis understands from 7.0 on.
MIN_VERSION = (7, 0)


def too_old(version: str) -> bool:
    """Whether a `redis_version` is older than `MIN_VERSION` (unreadable: not refused)."""
    try:
        found = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return found < MIN_VERSION


def _settings(client: redis.Redis) -> tuple[bool | None, str]:
    """(persistent, maxmemory-policy) by CONFIG GET, else by INFO when an ACL forbids
    CONFIG; persistent is None when INFO cannot tell (no AOF, and save points are not in
    INFO)."""
    import redis

    try:
        found: dict[Any, Any] = {}
        for name in ("appendonly", "save", "maxmemory-policy"):
            found.update(client.config_get(name))
        values = {
            (k.decode() if isinstance(k, bytes) else k): (
                v.decode() if isinstance(v, bytes) else str(v)
            )
            for k, v in found.items()
        }
        persistent = values.get("appendonly") == "yes" or bool(values.get("save", "").strip())
        return persistent, values.get("maxmemory-policy", "")
    except redis.ResponseError:  # NOPERM, or CONFIG renamed away
        persistence = client.info("persistence")
        memory = client.info("memory")
        aof = str(persistence.get("aof_enabled", "0")) == "1"
        return (True if aof else None), str(memory.get("maxmemory_policy", ""))


def check_redis_safety(client: redis.Redis) -> None:
    """`ConfigError` when the server could lose state: no persistence, or an eviction
    policy; the message names the setting and how to fix it."""
    import redis

    from engine.state.redis_store import where

    server = where(client)
    try:
        persistent, policy = _settings(client)
        version = str(client.info("server").get("redis_version", ""))
    except redis.RedisError as error:
        raise ConfigError(
            f"cannot read the settings of Redis at {server}: {redact(str(error))}"
        ) from None
    problems = []
    if too_old(version):
        problems.append(
            f"it is Redis {version}, and detect's scripts need Redis "
            f"{'.'.join(map(str, MIN_VERSION))} or later: upgrade it"
        )
    if persistent is None:
        problems.append(
            "its persistence cannot be checked (CONFIG GET is not allowed to this user and "
            "the append-only file is off): allow `+config|get` to the user, or " + _PERSISTENCE_FIX
        )
    elif not persistent:
        problems.append(
            "it keeps everything only in memory (appendonly no, and no save points), so "
            "a restart loses the state: " + _PERSISTENCE_FIX
        )
    if policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy or 'unknown'}, which drops keys when memory is "
            "full (correlation state, alerts, checkpoints): " + _EVICTION_FIX
        )
    if problems:
        raise ConfigError(
            f"Redis at {server} is not safe for detect's state: " + "; and ".join(problems)
        )
