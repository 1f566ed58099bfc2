"""One worker in this process (engine/runs/workers.py) on the suite's redis-server and a
loopback mock API: organizations read to the end match a single-process replay of each;
a lease taken away between two pages makes the next commit write nothing (`LeaseLost`),
the partition's pipeline is dropped, and the next holder resumes from the checkpoint
with the same alerts; `detect status` shows the workers, the leases and the lag."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from engine.activity import parse_activity
from engine.config import Config, RedisSettings, SourceConfig, StateConfig
from engine.feedgen import generate
from engine.resources import bundled_rules_dir
from engine.rule_formats import load_rules
from engine.runs import build
from engine.runs.leases import Leases, lease_key
from engine.runs.live import partition_runner
from engine.runs.workers import Worker
from engine.sources.poller import CHECKPOINT_KEY
from engine.state.redis_store import RedisStore
from engine.state.store import MemoryStore
from engine.tools.mock_api import MockComplianceAPI

ORGS = ["org_a", "org_b", "org_c"]
KEY = "mock-key-not-a-secret"


@pytest.fixture(scope="module")
def ruleset():
    return load_rules([bundled_rules_dir()])


@pytest.fixture(scope="module")
def feeds():
    return {
        org: [dict(a, organization_id=org) for a in generate(300, seed=700 + n)]
        for n, org in enumerate(ORGS)
    }


@pytest.fixture
def api(feeds):
    with MockComplianceAPI([a for f in feeds.values() for a in f], api_key=KEY) as mock:
        yield mock


def config_of(api, redis_server, prefix) -> Config:
    return Config(
        source=SourceConfig(
            base_url=api.url,
            api_key=KEY,
            organization_ids=ORGS,
            lookback=timedelta(days=400),
            page_size=50,
            silence_alert_after=timedelta(days=3650),
        ),
        state=StateConfig(
            backend="redis",
            redis=RedisSettings(url=redis_server, key_prefix=prefix, lease_ttl="2s"),
        ),
    )


def worker(config, client, ruleset, prefix, store_class=RedisStore, name="w1") -> Worker:
    leases = Leases(client, prefix=prefix, ttl=2, worker_id=name)
    return Worker(
        config,
        client,
        partition_runner(ruleset),
        leases=leases,
        open_store=lambda p, lease: store_class(client, prefix, partition=p, lease=lease),
        once=True,
    )


def replayed(ruleset, feeds) -> dict[str, dict]:
    found = {}
    for organization, activities in feeds.items():
        store = MemoryStore()
        run = build.pipeline(ruleset, store, scope=organization)
        run.run(iter([parse_activity(a) for a in activities]))
        run.suspend()
        found.update((a["alert_id"], a) for a in store.alerts())
    return found


def stored(client, prefix) -> dict[str, dict]:
    return {a["alert_id"]: a for a in RedisStore(client, prefix).alerts()}


def newest(feed) -> str:
    return max(feed, key=lambda a: (a["created_at"], a["id"]))["id"]


def checkpoint(client, prefix, org):
    return RedisStore(client, prefix, partition=org).get_meta(CHECKPOINT_KEY)


def test_one_worker_reads_every_organization_as_replays_do(
    api, feeds, ruleset, redis_server, redis_client, redis_prefix
):
    config = config_of(api, redis_server, redis_prefix)
    one = worker(config, redis_client, ruleset, redis_prefix).start()
    assert one.run() == 0
    one.close()
    for org in ORGS:
        assert checkpoint(redis_client, redis_prefix, org)["cursor"] == newest(feeds[org])
        assert redis_client.get(lease_key(redis_prefix, org)) is None  # released
    expected = replayed(ruleset, feeds)
    assert expected and stored(redis_client, redis_prefix) == expected
    # each organization's poller asked for its organization only
    asked = {tuple(r.params.get("organization_ids[]", [])) for r in api.requests}
    assert asked == {(org,) for org in ORGS}


@pytest.mark.parametrize("budget", [300, 200])
def test_the_organizations_share_the_request_budget(
    api, ruleset, redis_server, redis_client, redis_prefix, budget
):
    """The API's 600 requests a minute are the parent organization's, whatever key or
    organization asks: each organization's client gets `max_requests_per_minute` over
    the number of organizations, so together they never send more than configured."""
    config = config_of(api, redis_server, redis_prefix)
    source = config.source.model_copy(update={"max_requests_per_minute": budget})
    config = config.model_copy(update={"source": source})
    one = worker(config, redis_client, ruleset, redis_prefix, name=f"budget-{budget}").start()
    assert one.run() == 0
    budgets = [held.runner.poller.client.budget.per_minute for held in one.running.values()]
    one.close()
    assert len(budgets) == len(ORGS)
    assert sum(budgets) == budget - budget % len(ORGS) and set(budgets) == {budget // len(ORGS)}


def test_learned_lists_are_read_once_per_organization_not_per_pass(
    api, feeds, ruleset, redis_server, redis_client, redis_prefix
):
    """The named lists are shared by the organizations' pipelines; each organization's
    learned values are read from Redis when its loop opens, and its later passes get
    back the same sets, not a scan and a read of every value again."""
    from engine.detection.functions import LEARNED

    reads: list[str] = []

    class Counting(RedisStore):
        def items(self, namespace):
            if namespace == LEARNED:
                reads.append(self.partition)
            return super().items(namespace)

    config = config_of(api, redis_server, redis_prefix)
    one = worker(config, redis_client, ruleset, redis_prefix, Counting, name="lists")
    one.start()
    for _ in range(3):
        for held in one.running.values():
            held.passes, held.due = 0, 0.0  # another round of passes, due now
        assert one.run() == 0
    assert all(held.passes == 1 for held in one.running.values())
    one.close()
    assert sorted(reads) == sorted(ORGS)
    assert stored(redis_client, redis_prefix) == replayed(ruleset, feeds)


def test_a_lease_taken_away_drops_the_partition_and_writes_nothing(
    api, feeds, ruleset, redis_server, redis_client, redis_prefix, caplog
):
    config = config_of(api, redis_server, redis_prefix)
    seen: dict[str, object] = {}

    class Stolen(RedisStore):
        """Another worker takes org_b's lease before its first page is committed (a fresh
        start reads up to 5,000 activities as its first page)."""

        commits = 0

        def commit(self) -> None:
            if self.partition == "org_b" and self.lease is not None:
                Stolen.commits += 1
                if Stolen.commits == 1:
                    seen["before"] = checkpoint(redis_client, redis_prefix, "org_b")
                    redis_client.set(lease_key(redis_prefix, "org_b"), "thief/1", px=60_000)
            super().commit()

    first = worker(config, redis_client, ruleset, redis_prefix, Stolen).start()
    with caplog.at_level(logging.WARNING, logger="engine.runs.workers"):
        first.run()
    first.close()
    assert "lease of partition 'org_b' lost" in caplog.text
    assert "org_b" not in first.running and "org_b" not in first.leases.held
    # the refused commit wrote nothing: no checkpoint, no alert of org_b
    assert seen["before"] is None and checkpoint(redis_client, redis_prefix, "org_b") is None
    assert not [
        a for a in stored(redis_client, redis_prefix).values() if "org_b" in a["organization_ids"]
    ]
    assert checkpoint(redis_client, redis_prefix, "org_a")["cursor"] == newest(feeds["org_a"])
    # the thief's lease was left alone by the first worker's release
    assert redis_client.get(lease_key(redis_prefix, "org_b")) == b"thief/1"
    redis_client.delete(lease_key(redis_prefix, "org_b"))  # the thief goes away
    second = worker(config, redis_client, ruleset, redis_prefix, name="w2").start()
    assert second.run() == 0
    second.close()
    assert checkpoint(redis_client, redis_prefix, "org_b")["cursor"] == newest(feeds["org_b"])
    assert stored(redis_client, redis_prefix) == replayed(ruleset, feeds)


def test_a_lease_lost_and_taken_again_in_one_step_is_run_under_the_new_token(
    api, feeds, ruleset, redis_server, redis_client, redis_prefix
):
    """Redis away past the TTL: one balance step finds org_a's lease lost and takes it
    again. The stale pipeline is dropped, the new lease kept and run, and released at the
    end (not left held by a token the worker forgot, the organization unpolled a TTL)."""
    config = config_of(api, redis_server, redis_prefix)
    one = worker(config, redis_client, ruleset, redis_prefix, name="again").start()
    assert one.run() == 0
    stale = one.running["org_a"]
    redis_client.delete(lease_key(redis_prefix, "org_a"))  # expired while Redis was away
    one.balance()
    assert one.run() == 0
    token = one.leases.held.get("org_a")
    assert token is not None and token != stale.token
    assert redis_client.get(lease_key(redis_prefix, "org_a")) == token.encode()
    assert one.running["org_a"] is not stale and one.running["org_a"].passes == 1
    one.close()
    assert redis_client.get(lease_key(redis_prefix, "org_a")) is None
    assert checkpoint(redis_client, redis_prefix, "org_a")["cursor"] == newest(feeds["org_a"])


def test_a_stop_mid_page_releases_that_lease_too(
    api, ruleset, redis_server, redis_client, redis_prefix
):
    """SIGTERM (`request_stop`) in the middle of a page: the page is dropped unsaved, and
    its organization's lease released with the others, not left to run out a TTL."""
    config = config_of(api, redis_server, redis_prefix)
    stopping = []

    def make_runner(partition, store):
        runner = partition_runner(ruleset)(partition, store)
        process = runner.pipeline.process

        def stop_on_the_tenth(record):
            stopping.append(record)
            if len(stopping) == 10:
                one.request_stop()
            return process(record)

        runner.pipeline.process = stop_on_the_tenth
        return runner

    leases = Leases(redis_client, prefix=redis_prefix, ttl=2, worker_id="stopped")
    one = Worker(
        config,
        redis_client,
        make_runner,
        leases=leases,
        open_store=lambda p, lease: RedisStore(
            redis_client, redis_prefix, partition=p, lease=lease
        ),
        once=True,
    ).start()
    assert one.run() == 0
    one.close()
    assert len(stopping) == 10  # the stop came mid-page: nothing of it was committed
    for org in ORGS:
        assert redis_client.get(lease_key(redis_prefix, org)) is None
        assert checkpoint(redis_client, redis_prefix, org) is None
    assert not redis_client.zrange(f"{redis_prefix}workers", 0, -1)


def test_a_save_that_fails_on_close_still_releases_every_lease(
    api, ruleset, redis_server, redis_client, redis_prefix, caplog
):
    """One organization's state cannot be written on a clean stop: that is logged, and
    every lease is released all the same (its own too: the next holder reads its last
    page again)."""
    from engine.errors import StateWriteError

    class Failing(RedisStore):
        failing = False

        def commit(self) -> None:
            if Failing.failing and self.partition == ORGS[0]:
                raise StateWriteError("the disk is full")
            super().commit()

    config = config_of(api, redis_server, redis_prefix)
    one = worker(config, redis_client, ruleset, redis_prefix, Failing, name="failing").start()
    assert one.run() == 0
    Failing.failing = True
    with caplog.at_level(logging.ERROR, logger="engine.runs.workers"):
        one.close()
    for org in ORGS:
        assert redis_client.get(lease_key(redis_prefix, org)) is None
    assert not redis_client.zrange(f"{redis_prefix}workers", 0, -1)
    assert f"{ORGS[0]} could not be saved" in caplog.text


def test_status_shows_workers_leases_and_lag(
    api, ruleset, redis_server, redis_client, redis_prefix, tmp_path, cli
):
    config = config_of(api, redis_server, redis_prefix)
    one = worker(config, redis_client, ruleset, redis_prefix, name="status-w1").start()
    one.run()
    one.close()
    holder = Leases(redis_client, prefix=redis_prefix, ttl=30, worker_id="status-w2")
    holder.acquire("org_a")
    holder.heartbeat()
    # a lease key without an expiry (set by hand): a holder and no time left to show
    redis_client.set(lease_key(redis_prefix, "org_c"), "by-hand/1")
    path = tmp_path / "detect.yaml"
    path.write_text(
        f"source:\n  base_url: {api.url}\n  organization_ids: {json.dumps(ORGS)}\n"
        f"state:\n  backend: redis\n  redis:\n    url: {redis_server}\n"
        f"    key_prefix: '{redis_prefix}'\n    lease_ttl: 30s\n"
    )
    code, out, err = cli("status", "--config", str(path), "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert [w["worker_id"] for w in report["workers"]] == ["status-w2"]
    assert report["workers"][0]["partitions"] == ["org_a"] and report["workers"][0]["alive"]
    by_org = {o["partition"]: o for o in report["organizations"]}
    assert set(by_org) == set(ORGS)
    assert by_org["org_a"]["holder"] == "status-w2" and by_org["org_a"]["lease_ttl_left"] > 0
    assert by_org["org_b"]["holder"] is None
    assert by_org["org_c"]["holder"] == "by-hand" and by_org["org_c"]["lease_ttl_left"] is None
    assert all(o["lag_seconds"] is not None and o["lag_seconds"] >= 60 for o in by_org.values())
    assert sum(report["alerts"].values()) > 0
    code, out, _ = cli("status", "--config", str(path))
    assert code == 0
    assert "status-w2" in out and "held by status-w2" in out and "FREE" in out
    assert "org_c  held by by-hand  " in out
    assert "lag" in out


def test_the_watchdog_watches_the_pass_in_hand(
    api, ruleset, redis_server, redis_client, redis_prefix, caplog
):
    """The stalled-pipeline watchdog of `detect run` sees a worker's pass in hand through
    `PassInHand`: activities in hand and no progress for `after` is a stall of that
    organization (its source health opens the episode); progress ends it; between two
    passes nothing waits."""
    from engine.runs.live import Watchdog
    from engine.runs.workers import PassInHand

    class Stuck(Worker):
        stuck = None

        @property
        def current(self):
            return self.stuck

    config = config_of(api, redis_server, redis_prefix)
    leases = Leases(redis_client, prefix=redis_prefix, ttl=2, worker_id="stuck")
    worker = Stuck(
        config,
        redis_client,
        partition_runner(ruleset),
        leases=leases,
        open_store=lambda p, lease: RedisStore(
            redis_client, redis_prefix, partition=p, lease=lease
        ),
        once=True,
    ).start()
    worker.run()
    now = [1000.0]
    watchdog = Watchdog(PassInHand(worker), after=timedelta(seconds=30), clock=lambda: now[0])
    assert not watchdog.check()  # between passes
    held = worker.running["org_b"]
    worker.stuck = held
    held.runner.in_hand = 50
    assert not watchdog.check()
    now[0] += 31
    with caplog.at_level(logging.ERROR):
        assert watchdog.check()
    assert "no progress" in caplog.text
    assert "stalled" in held.runner.health.store.get_meta("source_health")
    held.runner.pipeline.progress += 1
    now[0] += 1
    assert not watchdog.check()
    assert "stalled" not in held.runner.health.store.get_meta("source_health")  # closed
    # A stalled pass that ends before the watchdog looks again: the episode it opened is
    # closed on that organization, not on the next pass's (nor left open for good).
    now[0] += 31
    assert watchdog.check()
    assert "stalled" in held.runner.health.store.get_meta("source_health")
    held.runner.in_hand = 0
    worker.stuck = worker.running["org_c"]
    now[0] += 1
    assert not watchdog.check()
    assert "stalled" not in held.runner.health.store.get_meta("source_health")
    # and again, with nothing in hand after it (between two passes)
    worker.stuck, held.runner.in_hand = held, 50
    assert not watchdog.check()
    now[0] += 31
    assert watchdog.check()
    held.runner.in_hand, worker.stuck = 0, None
    assert not watchdog.check()
    assert "stalled" not in held.runner.health.store.get_meta("source_health")
    worker.close()


def test_run_once_on_redis_catches_up_delivers_and_releases(
    api, feeds, ruleset, redis_server, redis_client, redis_prefix, tmp_path, cli, monkeypatch
):
    """`detect run --once` with `state.backend: redis`: this worker's share (alone: every
    organization) caught up, every detection delivered (here to the console), the leases
    released, the registry left."""
    monkeypatch.setenv("WORKERS_TEST_KEY", KEY)
    path = tmp_path / "detect.yaml"
    path.write_text(
        f"source:\n  base_url: {api.url}\n  api_key: ${{WORKERS_TEST_KEY}}\n"
        f"  organization_ids: {json.dumps(ORGS)}\n  lookback: 400d\n"
        f"  silence_alert_after: 3650d\nrules: [builtin]\n"
        f"state:\n  backend: redis\n  redis:\n    url: {redis_server}\n"
        f"    key_prefix: '{redis_prefix}'\n    lease_ttl: 2s\n"
        "quarantine: quarantine.jsonl\ndestinations:\n  console:\n    type: console\n"
    )
    code, out, err = cli("run", "--once", "--config", str(path))
    assert code == 0, err
    detections = [a for a in replayed(ruleset, feeds).values() if a["kind"] == "detection"]
    printed = [line for line in out.splitlines() if line.startswith("[")]
    assert detections and len(printed) == len(detections)
    from engine.delivery.redis_outbox import RedisOutbox

    assert RedisOutbox(redis_client, redis_prefix).counts().get("sent") == len(detections)
    for org in ORGS:
        assert checkpoint(redis_client, redis_prefix, org)["cursor"] == newest(feeds[org])
        assert redis_client.get(lease_key(redis_prefix, org)) is None
    assert not redis_client.zrange(f"{redis_prefix}workers", 0, -1)


def test_two_organizations_alike_raise_two_alerts_not_one(
    ruleset, redis_server, redis_client, redis_prefix
):
    """Two organizations whose activities differ only in their organization (the same
    people, addresses, times: so the same dedup keys and opening times) raise two
    alerts each time in the shared outbox, each organization's id its own; without the
    organization in the id, the second overwrote the first."""
    twins = {
        org: [dict(a, organization_id=org, id=f"{a['id']}-{org}") for a in generate(300, seed=9)]
        for org in ("org_a", "org_b")
    }
    with MockComplianceAPI([a for f in twins.values() for a in f], api_key=KEY) as api:
        config = config_of(api, redis_server, redis_prefix)
        source = config.source.model_copy(update={"organization_ids": list(twins)})
        config = config.model_copy(update={"source": source})
        one = worker(config, redis_client, ruleset, redis_prefix).start()
        assert one.run() == 0
        one.close()
    expected = replayed(ruleset, twins)
    alone = replayed(ruleset, {"org_a": twins["org_a"]})
    assert alone and len(expected) == 2 * len(alone)
    assert stored(redis_client, redis_prefix) == expected


def test_organizations_catching_up_take_turns_page_by_page(
    api, feeds, ruleset, redis_server, redis_client, redis_prefix
):
    """A pass catching up yields after its slice, at a page boundary: with a slice of
    zero each turn is one page, and the organizations a worker holds are read in turns
    rather than one to the end before the next starts. The result is the same."""
    config = config_of(api, redis_server, redis_prefix)
    turns: list[str] = []
    make = partition_runner(ruleset)

    def recording(partition, store):
        runner = make(partition, store)
        cycle = runner.cycle

        def counted(until=None):
            turns.append(store.partition)
            return cycle(until)

        runner.cycle = counted
        return runner

    leases = Leases(redis_client, prefix=redis_prefix, ttl=2, worker_id="turns")
    one = Worker(
        config,
        redis_client,
        recording,
        leases=leases,
        open_store=lambda p, lease: RedisStore(
            redis_client, redis_prefix, partition=p, lease=lease
        ),
        once=True,
        pass_slice=0.0,
    ).start()
    assert one.run() == 0
    one.close()
    assert sorted(turns[:3]) == sorted(ORGS)  # each had a page before any had two
    assert len(turns) > len(ORGS)  # more than one page each: more than one turn
    for org in ORGS:
        assert checkpoint(redis_client, redis_prefix, org)["cursor"] == newest(feeds[org])
    assert stored(redis_client, redis_prefix) == replayed(ruleset, feeds)
