"""Connecting to the configured Redis, and refusing one that could lose the state: real
redis-server processes started with the settings under test (no persistence, an
eviction policy, an ACL user without CONFIG, a password)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from engine.config import RedisSettings
from engine.errors import ConfigError
from engine.secrets import forget_all, redact
from engine.state.redis_connect import check_redis_safety, open_redis
from tests.conftest import start_redis_server

pytest.importorskip("redis")


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest):
    """A redis-server of the test's own, started with `request.param`'s settings."""
    started = start_redis_server(tmp_path / "redis", *request.param)
    yield started
    started.stop()


def settings(url: str, timeout: float = 2, **fields) -> RedisSettings:
    return RedisSettings(url=url, timeout=timedelta(seconds=timeout), **fields)


@pytest.mark.parametrize(
    "server",
    [(), ("--appendonly", "no", "--save", "60 1000")],
    ids=["aof", "rdb save points"],
    indirect=True,
)
def test_a_persistent_noeviction_redis_is_accepted(server):
    client = open_redis(settings(server.url))
    check_redis_safety(client)
    client.close()


@pytest.mark.parametrize("server", [("--appendonly", "no")], indirect=True)
def test_a_redis_without_persistence_is_refused_with_the_fix(server):
    with pytest.raises(ConfigError) as refused:
        check_redis_safety(server.client())
    message = str(refused.value)
    assert f"Redis at 127.0.0.1:{server.port}/0 is not safe" in message
    assert "appendonly no, and no save points" in message and "appendonly yes" in message
    assert "maxmemory-policy" not in message


@pytest.mark.parametrize(
    "server",
    [("--maxmemory-policy", "allkeys-lru"), ("--maxmemory-policy", "volatile-ttl")],
    ids=["allkeys-lru", "volatile-ttl"],
    indirect=True,
)
def test_an_evicting_redis_is_refused_with_the_fix(server, request):
    with pytest.raises(ConfigError) as refused:
        check_redis_safety(server.client())
    message = str(refused.value)
    assert f"maxmemory-policy is {request.node.callspec.id}," in message
    assert "maxmemory-policy noeviction" in message
    assert "appendonly" not in message


# An ACL user that may do everything but CONFIG (as managed services often have it).
ACL_WITHOUT_CONFIG = (
    "--user", "default", "on", "nopass", "~*", "&*", "+@all",
    "--user", "det", "on", ">s3cret-pass-word", "~*", "&*", "+@all", "-config",
)  # fmt: skip


@pytest.mark.parametrize(
    "server",
    [
        ACL_WITHOUT_CONFIG,
        (*ACL_WITHOUT_CONFIG, "--maxmemory-policy", "allkeys-random"),
        (*ACL_WITHOUT_CONFIG, "--appendonly", "no", "--save", "60 1000"),
    ],
    ids=["safe", "evicting", "rdb only"],
    indirect=True,
)
def test_without_config_get_the_checks_read_info(server, request):
    client = open_redis(settings(server.url, username="det", password="s3cret-pass-word"))
    case = request.node.callspec.id
    if case == "safe":
        check_redis_safety(client)  # AOF on, noeviction: both read from INFO
        return
    with pytest.raises(ConfigError) as refused:
        check_redis_safety(client)
    message = str(refused.value)
    if case == "evicting":
        assert "maxmemory-policy is allkeys-random" in message
    else:  # INFO does not show save points: say so, and how to let it be checked
        assert "persistence cannot be checked" in message and "+config|get" in message


@pytest.mark.parametrize(
    "server", [("--requirepass", "the-right-password-123")], ids=["password"], indirect=True
)
def test_credentials_are_used_and_a_refusal_never_shows_them(server):
    forget_all()
    try:
        good = open_redis(settings(server.url, password="the-right-password-123"))
        assert good.ping()
        good.close()
        assert "the-right-password-123" not in redact("x the-right-password-123 y")
        with pytest.raises(ConfigError) as refused:
            open_redis(settings(server.url, password="a-wrong-password-456"))
        message = str(refused.value)
        assert message.startswith(f"Redis at 127.0.0.1:{server.port}/0 refused the credentials")
        assert "a-wrong-password-456" not in message
    finally:
        forget_all()


def test_a_server_that_cannot_be_reached_is_one_line_naming_it(tmp_path):
    from tests.conftest import _free_port

    port = _free_port()
    with pytest.raises(ConfigError) as refused:
        open_redis(settings(f"redis://127.0.0.1:{port}/3"))
    message = str(refused.value)
    assert message.startswith(f"cannot reach Redis at 127.0.0.1:{port}/3:")
    assert "\n" not in message


def test_tls_with_the_configured_ca_and_refused_without_it(tmp_path):
    """rediss:// to a redis-server with a TLS port and a self-signed certificate for
    127.0.0.1: verified with `ca_file`, its name included (reached as localhost, it is
    refused); without `ca_file`, the system store refuses it in one line naming the
    server."""
    import shutil
    import subprocess

    from tests.conftest import _free_port

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed: no certificate for the TLS server")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    port = _free_port()
    tls = ["--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    server = start_redis_server(tmp_path / "redis", *tls, "--tls-auth-clients", "no")
    try:
        url = f"rediss://127.0.0.1:{port}/0"
        client = open_redis(settings(url, ca_file=cert))
        check_redis_safety(client)
        assert client.connection_pool.connection_class.__name__ == "SSLConnection"
        # the name is checked whatever the client's default (redis-py 5 checks none)
        assert client.connection_pool.connection_kwargs["ssl_check_hostname"] is True
        client.close()
        with pytest.raises(ConfigError) as misnamed:  # the certificate names 127.0.0.1 only
            open_redis(settings(f"rediss://localhost:{port}/0", ca_file=cert))
        assert str(misnamed.value).startswith(f"cannot reach Redis at localhost:{port}/0:")
        assert "hostname" in str(misnamed.value) or "match" in str(misnamed.value)
        with pytest.raises(ConfigError) as refused:
            open_redis(settings(url))
        message = str(refused.value)
        assert message.startswith(f"cannot reach Redis at 127.0.0.1:{port}/0:")
        assert "certificate" in message and "\n" not in message
    finally:
        server.stop()


def test_a_redis_older_than_7_is_refused_by_its_version():
    """Redis 6 rejects the store's `#!lua` scripts; no such server here, so the version
    rule is checked on its own (the servers above are 7.x and pass it)."""
    from engine.state.redis_connect import too_old

    assert too_old("6.2.14") and too_old("5.0.7")
    assert not too_old("7.0.15") and not too_old("7.2.4") and not too_old("8.0.0")
    assert not too_old("unknown")
