"""`detect bench --redis URL`: the Redis the pipeline's state goes to in the Redis runs.

The URL may carry an ACL user and password (`redis://user:secret@host:6379/0`): they
become the settings' `username` and `password` (registered for redaction), and nothing
printed names more than host:port/db. The children get the URL in their environment
(`URL_VARIABLE`), not on their command line, where `ps` would show it.

Each run writes under a key prefix of its own (`fresh_prefix`), as partition `*` opened
as a replay opens it (`build.open_redis_store`: its lease taken, so every commit is
fenced as a worker's is), and deletes its keys afterwards (`drop_keys`), so runs start
from an empty state, as the SQLite runs start from a new file, and leave nothing behind.
"""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError

if TYPE_CHECKING:
    from engine.config import RedisSettings

URL_VARIABLE = "DETECT_BENCH_REDIS_URL"
PREFIX_ROOT = "detect-bench:"


def redis_settings(url: str, prefix: str = PREFIX_ROOT) -> RedisSettings:
    """`state.redis` settings for `url`, its credentials moved out of it; a URL that is
    not a Redis URL is a `ConfigError` naming the option, never quoting the URL."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    from pydantic import SecretStr, ValidationError

    from engine.config import RedisSettings, describe_error
    from engine.secrets import register

    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        raise ConfigError("--redis: not a valid URL, e.g. redis://127.0.0.1:6379/0") from None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if password:
        register([password])
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address, bracketed again in the rebuilt URL
    netloc = host if port is None else f"{host}:{port}"
    # The query stays, for the settings to refuse (redis-py reads options from it).
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    try:
        return RedisSettings(
            url=bare,
            username=username,
            password=SecretStr(password) if password else None,
            key_prefix=prefix,
        )
    except ValidationError as error:
        raise ConfigError(f"--redis: {describe_error(error.errors()[0])}") from None


def check_server(url: str) -> str:
    """Connect and refuse a server that could lose state (`check_redis_safety`), before
    any run: one line, exit 2. Returns the server as host:port/db, for the report."""
    from engine.state.redis_connect import check_redis_safety, open_redis, server_of

    settings = redis_settings(url)
    client = open_redis(settings)
    try:
        check_redis_safety(client)
    finally:
        client.close()
    return server_of(settings.url)


def fresh_prefix() -> str:
    """A key prefix no other run uses: `detect-bench:{pid}-{random}:`."""
    return f"{PREFIX_ROOT}{os.getpid()}-{secrets.token_hex(4)}:"


def drop_keys(client: Any, prefix: str) -> int:
    """Delete every key under `prefix` (SCAN, then UNLINK in batches); how many."""
    pattern = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"
    dropped = 0
    batch: list[Any] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) == 1000:
            dropped += client.unlink(*batch)
            batch.clear()
    if batch:
        dropped += client.unlink(*batch)
    return dropped
