"""`state:` in detect.yaml: the SQLite path as before, `backend: redis` with its settings,
errors that name the file, line and key and never show a password; and `open_store`
choosing the backend from it."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import ConfigError
from engine.secrets import forget_all, redact
from tests.conftest import at


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "detect.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_a_path_only_state_is_still_sqlite(tmp_path):
    config = load_config(write(tmp_path, "state:\n  path: here/state.db\n"))
    assert config.state.backend == "sqlite"
    assert config.state.path == tmp_path / "here" / "state.db"
    assert config.state.redis is None


def test_redis_settings_load_with_the_password_from_the_environment(tmp_path):
    (tmp_path / "ca.pem").write_text("x", encoding="utf-8")
    path = write(
        tmp_path,
        """
        state:
          backend: redis
          redis:
            url: rediss://redis.internal:6380/2
            username: ${DETECT_REDIS_USERNAME}
            password: ${DETECT_REDIS_PASSWORD}
            ca_file: ca.pem
            key_prefix: "acme:"
            lease_ttl: 45s
        """,
    )
    forget_all()
    try:
        config = load_config(
            path, {"DETECT_REDIS_USERNAME": "detect", "DETECT_REDIS_PASSWORD": "pw-0123456789"}
        )
        redis = config.state.redis
        assert redis.url == "rediss://redis.internal:6380/2"
        assert redis.username == "detect"
        assert redis.password.get_secret_value() == "pw-0123456789"
        assert redis.ca_file == tmp_path / "ca.pem"
        assert redis.key_prefix == "acme:"
        assert redis.lease_ttl == timedelta(seconds=45)
        assert redis.timeout == timedelta(seconds=10)
        assert "pw-0123456789" not in repr(config)
        assert redact("auth pw-0123456789 failed") == "auth [redacted] failed"
    finally:
        forget_all()


@pytest.mark.parametrize(
    ("state", "line", "key", "message"),
    [
        ("backend: redis", 2, "state", "backend: redis needs `redis:` with at least a `url`"),
        (
            "redis:\n    url: redis://h:6379/0",
            2,
            "state",
            "`redis:` is only used with backend: redis",
        ),
        (
            "backend: redis\n  redis:\n    url: redis://user:hunter2-secret@h:6379/0",
            5,
            "state.redis.url",
            "`url` holds credentials: put them in `username` and `password`",
        ),
        (
            "backend: redis\n  redis:\n    url: redis://h:6379/0?password=hunter2",
            5,
            "state.redis.url",
            "`url` holds a query string (`?...`): put credentials in `username` and "
            "`password` (password: ${DETECT_REDIS_PASSWORD})",
        ),
        (
            "backend: redis\n  redis:\n    url: redis://h:6379/0?ssl_cert_reqs=none",
            5,
            "state.redis.url",
            "`url` holds a query string",
        ),
        (
            "backend: redis\n  redis:\n    url: http://h:6379/0",
            5,
            "state.redis.url",
            "`url` must be redis://HOST:PORT/DB (or rediss:// for TLS)",
        ),
        (
            "backend: redis\n  redis:\n    url: redis://h:6379/0\n    ca_file: ca.pem",
            4,
            "state.redis",
            "`ca_file` is only used with a rediss:// (TLS) url",
        ),
        (
            "backend: redis\n  redis:\n    url: redis://h:6379/0\n    key_prefix: 'a b'",
            6,
            "state.redis.key_prefix",
            "`key_prefix` may not hold spaces",
        ),
        (
            "backend: redis\n  redis:\n    url: redis://h:6379/0\n    lease_ttl: 1s",
            4,
            "state.redis",
            "`lease_ttl` must be at least 2s",
        ),
        (
            "backend: redis\n  redis:\n    url: redis://h:6379/0\n    passwd: x",
            6,
            "state.redis.passwd",
            "unknown key; allowed: url, username, password, ca_file, key_prefix, lease_ttl, "
            "timeout; did you mean 'password'?",
        ),
        ("backend: postgres", 3, "state.backend", "'postgres' is not one of sqlite, redis"),
    ],
)
def test_bad_state_settings_name_the_line_and_the_key(tmp_path, state, line, key, message):
    path = write(tmp_path, f"rules: [rules]\nstate:\n  {state}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    text = str(refused.value)
    assert text.startswith(f"{path}:{line}: [{key}] "), text
    assert message in text
    assert "hunter2" not in text and "ssl_cert_reqs" not in text


def test_open_store_picks_the_configured_backend(tmp_path, redis_server, redis_prefix):
    from engine.runs.build import open_store
    from engine.state.redis_store import RedisStore
    from engine.state.sqlite import SqliteStore
    from engine.state.store import MemoryStore

    sqlite = load_config(write(tmp_path, "state:\n  path: s.db\n"))
    store = open_store(sqlite.state.path, sqlite.state)
    assert isinstance(store, SqliteStore)
    store.close()
    assert isinstance(open_store(None), MemoryStore)
    path = write(
        tmp_path,
        f"state:\n  backend: redis\n  redis:\n    url: {redis_server}\n"
        f'    key_prefix: "{redis_prefix}"\n',
    )
    redis = load_config(path)
    store = open_store(redis.state.path, redis.state)
    assert isinstance(store, RedisStore)
    assert (store.prefix, store.partition) == (redis_prefix, "*")
    assert store.lease[0] == f"{redis_prefix}lease:*"  # fenced (test_redis_replay_lease.py)
    store.put("ns", "k", 1)
    store.close()  # commits, and closes the client it owns
    again = open_store(None, redis.state)
    assert again.get("ns", "k") == 1
    again.close()


def test_a_replay_delivers_from_redis_and_an_unsafe_redis_stops_it(
    tmp_path, cli, rules_dir, make_activity, redis_server, redis_prefix
):
    from tests.conftest import start_redis_server, write_jsonl
    from tests.state.test_store_contract import DEDUP_RULE

    rules_dir.write("dedup.yml", DEDUP_RULE)
    feed = write_jsonl(tmp_path / "feed.jsonl", [make_activity(created_at=at(0))])
    config = f"""
        rules: [rules]
        state:
          backend: redis
          redis:
            url: {redis_server}
            key_prefix: "{redis_prefix}"
        destinations:
          terminal: {{type: console}}
        """
    write(tmp_path, config)
    code, out, err = cli("replay", "--deliver", str(feed))
    assert code == 0, err
    assert "delivery: 1 sent" in err
    import redis

    from engine.state.redis_alerts import RedisAlertRows

    client = redis.Redis.from_url(redis_server)
    (alert,) = RedisAlertRows(client, redis_prefix).recent(5)
    assert alert["rule_id"] == "t.dedup" and alert["alert_id"] in out
    client.close()

    volatile = start_redis_server(tmp_path / "volatile", "--appendonly", "no")
    write(tmp_path, config.replace(redis_server, volatile.url))
    code, out, err = cli("replay", "--deliver", str(feed))
    volatile.stop()
    assert code == 2, err
    assert err.count("\n") == 1 and "appendonly yes" in err and "Traceback" not in err
