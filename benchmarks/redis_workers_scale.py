"""How `detect run` on Redis scales with workers (docs/performance.md, docs/scaling.md).

    python benchmarks/redis_workers_scale.py                  # 10 organizations x 20,000
    python benchmarks/redis_workers_scale.py --per-org 5000 --workers 1 2 3

For each number of workers: a fresh key prefix, the same backlog (ten organizations of
generated activity on the loopback mock API), that many `detect run` processes started
together; the clock starts once every worker has joined the registry and stops when
every organization's checkpoint is at its newest activity. Throughput counts the
activities read in between (each organization's `activities` counter in Redis). Pages
of 1,000, a webhook receiver on loopback as the destination. Beside the wall time: the
CPU the workers spent (loading the rules included) per activity, and the CPU of this
process (the mock API serving the pages) meanwhile: on a machine with fewer cores than
workers plus the API, the CPU per activity shows the cost of coordination, the wall time
only the contention.

Then one worker in this process, on the same backlog, counts the state store's round
trips to Redis (`RedisStore.round_trips`) per activity, and the lease keeping's.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from redis_drill import (
    KEY,
    Receiver,
    cursors,
    feeds,
    orgs_of,
    start_redis,
    start_worker,
    wait_for,
)

from engine.resources import bundled_rules_dir
from engine.runs.leases import read_workers
from engine.tools.mock_api import MockComplianceAPI


def config_text(mock: str, hook: str, redis_url: str, orgs: list[str], prefix: str) -> str:
    import json

    return f"""
source:
  base_url: {mock}
  api_key: ${{DRILL_API_KEY}}
  organization_ids: {json.dumps(orgs)}
  lookback: 400d
  poll_interval: 5s
  page_size: 1000
  max_requests_per_minute: 600
  silence_alert_after: 3650d
rules: [{json.dumps(str(bundled_rules_dir()))}]
state:
  backend: redis
  redis:
    url: {redis_url}
    key_prefix: "{prefix}"
    lease_ttl: 10s
quarantine: quarantine.jsonl
destinations:
  soar:
    type: webhook
    url: {hook}
    secret: ${{DRILL_HOOK_SECRET}}
    kinds: [detection]
"""


def activities_read(client: Any, prefix: str) -> int:
    from engine.state.redis_alerts import RedisAlertRows

    found = RedisAlertRows(client, prefix).partition_meta("source")
    return sum((value or {}).get("activities", 0) for value in found.values())


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def measure(
    client: Any, url: str, folder: Path, mock: str, hook: str, orgs: list[str], n: int, newest
) -> tuple[float, int, float, float]:
    """(seconds, activities) of `n` workers reading the whole backlog, the CPU seconds
    the workers spent in all (from their start to their exit, loading the rules
    included), and this process's (the mock API and the receiver) while they read."""
    workers_cpu = cpu(resource.RUSAGE_CHILDREN)
    prefix = f"scale{n}:"
    config = folder / f"scale{n}.yaml"
    config.write_text(config_text(mock, hook, url, orgs, prefix))
    workers = [start_worker(folder, config, k) for k in range(n)]
    try:
        wait_for(
            f"{n} workers registered",
            lambda: len(read_workers(client, prefix, time.time(), 10)) == n,
            60,
            0.005,
            processes=workers,
        )
        started, before = time.monotonic(), activities_read(client, prefix)
        own_cpu = cpu(resource.RUSAGE_SELF)
        wait_for(
            "every organization read", lambda: cursors(client, orgs, prefix) == newest, 600, 0.02
        )
        seconds = time.monotonic() - started
        own_cpu = cpu(resource.RUSAGE_SELF) - own_cpu
        read = activities_read(client, prefix) - before
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
    return seconds, read, cpu(resource.RUSAGE_CHILDREN) - workers_cpu, own_cpu


def round_trips(client: Any, url: str, mock: str, orgs: list[str]) -> tuple[int, int, int]:
    """One worker in this process: (activities, state store round trips, commits)."""
    from datetime import timedelta

    from engine.config import Config, RedisSettings, SourceConfig, StateConfig
    from engine.rule_formats import load_rules
    from engine.runs.leases import Leases
    from engine.runs.live import partition_runner
    from engine.runs.workers import Worker
    from engine.state.redis_store import RedisStore

    prefix = "trips:"
    ruleset = load_rules([bundled_rules_dir()])
    config = Config(
        source=SourceConfig(
            base_url=mock,
            api_key=KEY,
            organization_ids=orgs,
            lookback=timedelta(days=400),
            page_size=1000,
            silence_alert_after=timedelta(days=3650),
        ),
        state=StateConfig(
            backend="redis", redis=RedisSettings(url=url, key_prefix=prefix, lease_ttl="10s")
        ),
    )
    stores: list[RedisStore] = []
    commits = 0

    class Counted(RedisStore):
        def commit(self) -> None:
            nonlocal commits
            commits += 1
            super().commit()

    def open_store(partition: str, lease: tuple[str, str]) -> RedisStore:
        stores.append(Counted(client, prefix, partition=partition, lease=lease))
        return stores[-1]

    worker = Worker(
        config,
        client,
        partition_runner(ruleset),
        leases=Leases(client, prefix=prefix, ttl=10),
        open_store=open_store,
        once=True,
    ).start()
    worker.run()
    worker.close()
    return activities_read(client, prefix), sum(s.round_trips for s in stores), commits


def main(argv: list[str] | None = None) -> int:
    import redis

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--per-org", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    orgs = orgs_of(args.orgs)
    feed = feeds(orgs, args.per_org)
    newest = {
        org: max(acts, key=lambda a: (a["created_at"], a["id"]))["id"] for org, acts in feed.items()
    }
    activities = [a for acts in feed.values() for a in acts]
    with tempfile.TemporaryDirectory(prefix="redis-scale-") as temp:
        folder = Path(temp)
        (folder / "redis").mkdir()
        server, url = start_redis(folder / "redis")
        client = redis.Redis.from_url(url)
        wait_for("redis-server", lambda: _pings(client), 10)
        receiver = Receiver()
        mock = MockComplianceAPI(activities, api_key=KEY, requests_per_minute=1_000_000).start()
        try:
            print(
                f"{args.orgs} organizations x {args.per_org:,} activities, pages of 1,000\n\n"
                "| workers | seconds | activities read | activities/s | workers' CPU s "
                "| CPU µs per activity | mock API's CPU s |\n|---|---|---|---|---|---|---|"
            )
            for n in args.workers:
                seconds, read, used, own = measure(
                    client, url, folder, mock.url, receiver.url, orgs, n, newest
                )
                print(
                    f"| {n} | {seconds:.1f} | {read:,} | {read / seconds:,.0f} | {used:.1f} "
                    f"| {used / max(1, read) * 1e6:.0f} | {own:.1f} |",
                    flush=True,
                )
            read, trips, commits = round_trips(client, url, mock.url, orgs)
            print(
                f"\none worker in process: {read:,} activities, {commits} commits, "
                f"{trips} state store round trips ({trips / max(1, read):.4f} per activity)"
            )
        finally:
            mock.stop()
            receiver.close()
            client.close()
            server.terminate()
            server.wait()
    return 0


def _pings(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


if __name__ == "__main__":
    sys.exit(main())
