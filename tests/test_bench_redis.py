"""`detect bench --redis URL`: the pipeline with its state on a real redis-server, next to
the SQLite runs of the same bench, with the store's round trips; no password printed,
no keys left behind."""

from __future__ import annotations

import re

import pytest

from engine.bench.redis_target import PREFIX_ROOT, redis_settings
from engine.errors import ConfigError
from engine.feedgen import generate, write_jsonl
from engine.secrets import forget_all, redact


def test_the_url_s_credentials_become_settings_and_are_never_quoted():
    forget_all()
    try:
        settings = redis_settings("redis://ops:pa%40ss-w0rd-long@10.0.0.5:6380/2", "p:")
        assert settings.url == "redis://10.0.0.5:6380/2"
        assert settings.username == "ops"
        assert settings.password.get_secret_value() == "pa@ss-w0rd-long"
        assert settings.key_prefix == "p:"
        assert "pa@ss" not in redact("it was pa@ss-w0rd-long")
    finally:
        forget_all()
    with pytest.raises(ConfigError) as bad:
        redis_settings("https://ops:hunter2-secret@example.com/0")
    assert "hunter2" not in str(bad.value) and str(bad.value).startswith("--redis:")
    with pytest.raises(ConfigError, match="query string") as bad:
        redis_settings("redis://10.0.0.5:6380/0?password=in-the-query")
    assert "in-the-query" not in str(bad.value)


def test_bench_on_redis_prints_round_trips_and_the_ratio_to_sqlite(
    tmp_path, cli, redis_server, redis_client
):
    feed = tmp_path / "feed.jsonl"
    write_jsonl(feed, generate(1000, seed=3))
    # The session's server has no password: its `default` user takes any.
    url = redis_server.replace("redis://", "redis://default:bench-s3cret-pw@")
    code, out, err = cli(
        "bench", "--file", str(feed), "--repeat", "1", "--processes", "1", "--redis", url
    )
    assert code == 0, err
    assert "bench-s3cret-pw" not in out + err
    assert re.search(r"^full pipeline, SQLite\s+[\d,]+", out, re.M)
    assert re.search(r"^full pipeline, Redis\s+[\d,]+", out, re.M)
    ratio = re.search(r"of the json\.loads floor, ([\d.]+) of the SQLite pipeline\n", out)
    assert ratio is not None and float(ratio.group(1)) > 0, out
    cpu = re.search(r"CPU: ([\d.]+) µs per activity here \+ ([\d.]+) in the Redis server", out)
    assert cpu is not None and float(cpu.group(1)) > 0 and float(cpu.group(2)) > 0, out
    trips = re.search(r"([\d,]+) round trips \(([\d.]+) per activity\), ([\d,]+) keys", out)
    assert trips is not None, out
    # About one per commit of 1,000 activities, plus the partition's first reads.
    assert 0 < int(trips.group(1).replace(",", "")) < 1000
    assert 0 < float(trips.group(2)) < 1
    assert int(trips.group(3).replace(",", "")) > 0
    assert "DIFFER" not in out  # the same alerts as on SQLite
    assert list(redis_client.scan_iter(match=f"{PREFIX_ROOT}*")) == []


def test_an_unsafe_redis_stops_the_bench_before_it_runs(tmp_path, cli, rules_dir):
    from tests.conftest import start_redis_server
    from tests.state.test_store_contract import DEDUP_RULE

    rules_dir.write("dedup.yml", DEDUP_RULE)

    volatile = start_redis_server(tmp_path / "volatile", "--appendonly", "no")
    try:
        code, out, err = cli(
            "bench", "--generate", "10", "--rules", str(rules_dir.path), "--redis", volatile.url
        )
    finally:
        volatile.stop()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "appendonly yes" in err
