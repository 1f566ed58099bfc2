"""A store opened outside worker mode (`detect replay --config --deliver` on Redis, the
benchmark) takes its partition's lease as a worker does: workers without
`organization_ids` hold `*` too, and two writers of one partition lose updates. On the
session's real redis-server."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from engine.config import load_config
from engine.errors import LeaseLost, StateInUseError
from engine.runs.build import open_store
from engine.runs.leases import Leases, holder_of

pytest.importorskip("redis")


def redis_state(tmp_path: Path, url: str, prefix: str, ttl: str = "30s"):
    path = tmp_path / "detect.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            rules: [rules]
            state:
              backend: redis
              redis:
                url: {url}
                key_prefix: "{prefix}"
                lease_ttl: {ttl}
            destinations:
              terminal: {{type: console}}
            """
        ),
        encoding="utf-8",
    )
    return load_config(path).state


def test_the_store_holds_the_lease_while_open_and_gives_it_back(
    tmp_path, redis_server, redis_client, redis_prefix
):
    state = redis_state(tmp_path, redis_server, redis_prefix)
    store = open_store(None, state)
    key, token = store.lease
    assert key == f"{redis_prefix}lease:*"
    assert redis_client.get(key).decode() == token
    assert holder_of(token).startswith("replay-")
    assert 25_000 < redis_client.pttl(key) <= 30_000  # the configured TTL
    worker = Leases(redis_client, prefix=redis_prefix, ttl=30, worker_id="w-1")
    assert not worker.acquire("*")  # a worker waits for it
    store.put("ns", "k", 1)
    store.close()  # commits under the lease, then releases it
    assert redis_client.exists(key) == 0
    assert worker.acquire("*")
    worker.release("*")


def test_a_partition_held_by_a_worker_is_refused_in_one_line(
    tmp_path, redis_server, redis_client, redis_prefix
):
    state = redis_state(tmp_path, redis_server, redis_prefix)
    worker = Leases(redis_client, prefix=redis_prefix, ttl=30, worker_id="w-1")
    assert worker.acquire("*")
    with pytest.raises(StateInUseError) as refused:
        open_store(None, state)
    assert str(refused.value) == (
        "partition * is held by worker w-1: stop the workers or replay under another key_prefix"
    )
    assert redis_client.get(f"{redis_prefix}lease:*").decode() == worker.held["*"]
    assert redis_client.exists(f"{redis_prefix}partitions") == 0  # nothing written
    worker.release("*")


def test_a_replay_against_workers_holding_the_partition_stops_before_reading(
    tmp_path, cli, rules_dir, make_activity, redis_server, redis_client, redis_prefix
):
    from tests.conftest import at, write_jsonl
    from tests.state.test_store_contract import DEDUP_RULE

    rules_dir.write("dedup.yml", DEDUP_RULE)
    redis_state(tmp_path, redis_server, redis_prefix)
    feed = write_jsonl(tmp_path / "feed.jsonl", [make_activity(created_at=at(0))])
    worker = Leases(redis_client, prefix=redis_prefix, ttl=30, worker_id="w-1")
    assert worker.acquire("*")
    code, out, err = cli("replay", "--deliver", str(feed))
    assert code == 1, err
    assert err == (
        "error: partition * is held by worker w-1: stop the workers or replay under "
        "another key_prefix\n"
    )
    assert out == "" and redis_client.exists(f"{redis_prefix}partitions") == 0
    worker.release("*")


def test_the_lease_is_renewed_while_open_and_fences_every_commit(
    tmp_path, redis_server, redis_client, redis_prefix
):
    state = redis_state(tmp_path, redis_server, redis_prefix, ttl="2s")
    store = open_store(None, state)
    key, token = store.lease
    redis_client.pexpire(key, 1000)  # half the TTL: only a renewal brings it back up
    deadline = time.monotonic() + 5
    while redis_client.pttl(key) <= 1000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert redis_client.get(key).decode() == token
    assert redis_client.pttl(key) > 1000  # renewed to the 2 s TTL (every third of it)
    redis_client.set(key, "w-2/theirs")  # taken over: the store may write nothing more
    store.put("ns", "k", 1)
    with pytest.raises(LeaseLost):
        store.commit()
    store.close()
    assert redis_client.get(key) == b"w-2/theirs"  # its release leaves the holder's alone
