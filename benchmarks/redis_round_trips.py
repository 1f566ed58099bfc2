"""The Redis state store's round trips on a replay (docs/state.md, engine/state/redis_store.py).

    python benchmarks/redis_round_trips.py                       # 20,000 activities
    python benchmarks/redis_round_trips.py --activities 100000 --redis redis://127.0.0.1:6379/0

Generates the activities (`detect bench`'s generator, seed 1 unless told), then replays
them twice with the bundled rules into one fresh key prefix of a Redis, as
`detect replay --config --deliver` would (partition `*`, under its lease, windows kept
open for a next replay): into a fresh partition, then a second time over the first
one's state. Prints `RedisStore.round_trips` of each, and the keys of the partition.
Without `--redis` it starts its own redis-server (`--appendonly yes`) in a temporary
folder on a free loopback port; with it, the prefix's keys are deleted at the end.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from redis_drill import start_redis

from engine.config import RedisSettings, StateConfig
from engine.detection.loader import load_rules
from engine.feedgen import generate, write_jsonl
from engine.resources import bundled_rules_dir
from engine.runs import build
from engine.runs.replay import ReplayOptions, replay


def wait_until_up(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"redis-server at {url} did not answer") from None
                time.sleep(0.05)
    finally:
        client.close()


def replay_once(path: Path, state: StateConfig) -> tuple[int, int]:
    """One replay into the partition: (its store's round trips, the keys under the
    prefix afterwards)."""
    ruleset = load_rules([bundled_rules_dir()])
    store = build.open_redis_store(state)
    options = ReplayOptions(quarantine=None, keep_open=True)
    try:
        replay([str(path)], ruleset, options, out=io.StringIO(), err=sys.stderr, store=store)
    finally:
        store.close()
    import redis

    assert state.redis is not None
    client = redis.Redis.from_url(state.redis.url)
    try:
        keys = sum(1 for _ in client.scan_iter(match=f"{state.redis.key_prefix}p:*:v:*"))
    finally:
        client.close()
    return store.round_trips, keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis", help="a Redis URL (default: start a redis-server)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="detect-round-trips-") as folder:
        path = Path(folder) / "activities.jsonl"
        write_jsonl(path, generate(args.activities, seed=args.seed))
        server = None
        url = args.redis
        if url is None:
            server, url = start_redis(Path(folder))
            wait_until_up(url)
        prefix = f"round-trips-{time.time_ns()}:"
        state = StateConfig(backend="redis", redis=RedisSettings(url=url, key_prefix=prefix))
        try:
            for label in ("a fresh partition", "over the first replay's state"):
                trips, keys = replay_once(path, state)
                print(
                    f"{label}: {trips} round trips for {args.activities:,} activities "
                    f"({trips / args.activities:.4f} per activity); {keys:,} value keys after"
                )
        finally:
            if server is not None:
                server.terminate()
                server.wait()
            else:
                import redis

                client = redis.Redis.from_url(url)
                for key in client.scan_iter(match=f"{prefix}*"):
                    client.delete(key)
                client.close()


if __name__ == "__main__":
    main()
