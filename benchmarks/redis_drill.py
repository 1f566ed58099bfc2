"""The workers drill of issue 17 (docs/scaling.md): three `detect run` workers on one
Redis, ten organizations with a backlog on the mock Compliance API, two workers killed.

    python benchmarks/redis_drill.py               # the long drill (10 x 20,000 activities)
    python benchmarks/redis_drill.py --quick       # the suite's (10 x 600 activities)
    python benchmarks/redis_drill.py --redis-url redis://127.0.0.1:PORT/0
    python benchmarks/redis_drill.py --seed 9300    # other feeds (each organization: seed + n)

What it does, with the real `detect` command in subprocesses:
1. generates each organization's activities with the project's generator (attacks
   included, so rules fire) and serves them all on a loopback mock API, which filters
   by `organization_ids[]`;
2. starts three workers (`detect run --config`, `state.backend: redis`, a short lease
   TTL), each also delivering to a loopback webhook receiver that counts notifications;
3. (long drill) stops the worker holding the most unread organizations with SIGSTOP
   until the others hold them all, then wakes it: it must find its leases lost and
   write nothing (a commit it attempts is refused by the fence), then rejoin;
4. kills with SIGKILL (mid-run) the worker holding the most organizations not read to
   the end: in the long drill once the three share the organizations, in the quick one
   as soon as the three are in the registry (then usually the first to start, still
   holding every organization); and times until others hold each of its organizations;
5. kills, with SIGKILL too, a survivor holding a lease it has just taken over, and times
   the second takeover;
6. waits until the last worker has read every organization to its newest activity and
   delivered every alert, stops it with SIGTERM (its leases released at once);
7. compares the alerts in Redis with a single-process replay of each organization's
   activities (by id, and by content: every field, sample events and indicators
   included), and counts the notifications per alert (by `webhook-id`): none twice,
   none missing (in the quick drill, any not arrived yet must still be owed).

Without `--redis-url` it starts its own redis-server (`--appendonly yes`) in a temporary
folder. It prints one table and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.activity import parse_activity  # noqa: E402
from engine.feedgen import generate  # noqa: E402
from engine.resources import bundled_rules_dir  # noqa: E402
from engine.rule_formats import load_rules  # noqa: E402
from engine.runs import build  # noqa: E402
from engine.runs.leases import read_leases, read_workers  # noqa: E402
from engine.state.store import MemoryStore  # noqa: E402
from engine.tools.mock_api import MockComplianceAPI  # noqa: E402

KEY = "sk-ant-api03-REDIS-DRILL-Zq8vN3xR7wP2mK9sL4tY6uB1cD5eF0gH"
HOOK_SECRET = "whsec_c2VjcmV0LWtleS1mb3ItZHJpbGxzLW9ubHktMzJieXRlcyE="
PREFIX = "drill:"


def orgs_of(count: int) -> list[str]:
    return [f"org_drill_{n:02d}" for n in range(count)]


def feeds(orgs: list[str], per_org: int, seed: int = 9100) -> dict[str, list[dict[str, Any]]]:
    """Each organization's own generated feed (its seed), every activity stamped with it."""
    return {
        org: [dict(a, organization_id=org) for a in generate(per_org, seed=seed + n)]
        for n, org in enumerate(orgs)
    }


def replay_alerts(ruleset: Any, feed: dict[str, list[dict[str, Any]]]) -> dict[str, dict]:
    """What one process replaying each organization's activities alone stores."""
    found: dict[str, dict] = {}
    for organization, activities in feed.items():
        store = MemoryStore()
        run = build.pipeline(ruleset, store, scope=organization)
        run.run(iter([parse_activity(a) for a in activities]))
        run.suspend()
        found.update((a["alert_id"], a) for a in store.alerts())
    return found


# -- the receiver ------------------------------------------------------------------------


class Receiver:
    """A loopback webhook receiver: requests per alert id, and the distinct `webhook-id`s
    per alert (a receiver drops a repeated `webhook-id`: the same delivery tried again
    after a worker died between sending it and recording it, at least once)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.ids: dict[str, set[str]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    alert_id = json.loads(body).get("alert_id") or "?"
                except ValueError:
                    alert_id = "?"
                with receiver.lock:
                    receiver.counts[alert_id] += 1
                    receiver.ids.setdefault(alert_id, set()).add(
                        self.headers.get("webhook-id") or "?"
                    )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- Redis ---------------------------------------------------------------------------------


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not installed (apt-get install redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)),
            *("--appendonly", "yes", "--save", "", "--logfile", str(folder / "redis.log")),
        ]
    )
    return process, f"redis://127.0.0.1:{port}/0"


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    step: float = 0.02,
    processes: list[subprocess.Popen[bytes]] | None = None,
) -> Any:
    """Poll `check` until it holds; a `TimeoutError` after `timeout` seconds, or at once
    when one of `processes` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        if processes and any(p.poll() is not None for p in processes):
            raise TimeoutError(f"a worker exited while waiting for {what}")
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(step)


# -- the drill -----------------------------------------------------------------------------


@dataclass
class Figures:
    orgs: int = 0
    activities: int = 0
    workers: int = 0
    ttl: float = 0.0
    seed: int = 0
    takeovers: list[tuple[str, float, int]] = field(default_factory=list)
    mid_run: tuple[int, int] = (0, 0)  # the first victim's organizations, and unfinished
    # the stalled worker's organizations, leases it found lost, commits the fence refused
    stall: tuple[int, int, int] | None = None
    read_to_end: int = 0
    alerts_expected: int = 0
    alerts_found: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    crashed: set[str] = field(default_factory=set)  # organizations a killed worker held
    requests: int = 0
    notified: int = 0
    redelivered: int = 0
    notified_twice: list[str] = field(default_factory=list)
    never_notified: list[str] = field(default_factory=list)
    still_owed: int = 0
    health_alerts: int = 0
    last_exit: int | None = None
    leases_left: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    phases: list[tuple[str, float]] = field(default_factory=list)


def config_text(mock: str, hook: str, redis_url: str, orgs: list[str], ttl: int, page: int) -> str:
    return f"""
source:
  base_url: {mock}
  api_key: ${{DRILL_API_KEY}}
  organization_ids: {json.dumps(orgs)}
  lookback: 400d
  poll_interval: 1s
  page_size: {page}
  max_requests_per_minute: 600
  silence_alert_after: 3650d
rules: [{json.dumps(str(bundled_rules_dir()))}]
state:
  backend: redis
  redis:
    url: {redis_url}
    key_prefix: "{PREFIX}"
    lease_ttl: {ttl}s
quarantine: quarantine.jsonl
destinations:
  soar:
    type: webhook
    url: {hook}
    secret: ${{DRILL_HOOK_SECRET}}
    kinds: [detection]
    timeout: 1s
"""


def start_worker(folder: Path, config: Path, n: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DRILL_API_KEY": KEY,
        "DRILL_HOOK_SECRET": HOOK_SECRET,
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
    }
    log = (folder / f"worker{n}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--config", str(config)],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def holders(client: Any, orgs: list[str]) -> dict[str, str | None]:
    return {lease.partition: lease.holder for lease in read_leases(client, PREFIX, orgs)}


def worker_of_pid(client: Any, pid: int, ttl: float) -> str | None:
    for worker in read_workers(client, PREFIX, time.time(), ttl):
        if worker.pid == pid:
            return worker.worker_id
    return None


def cursors(client: Any, orgs: list[str], prefix: str = PREFIX) -> dict[str, str | None]:
    """Each organization's checkpoint cursor: the newest activity read."""
    from engine.state.redis_alerts import RedisAlertRows

    found = RedisAlertRows(client, prefix).partition_meta("checkpoint")
    return {org: (found.get(org) or {}).get("cursor") for org in orgs}


def takeover(client: Any, orgs: list[str], victim: str, held: list[str], timeout: float) -> float:
    """Seconds from now until every partition `victim` held is held by another worker."""
    started = time.monotonic()
    wait_for(
        f"the partitions of {victim} to be taken over",
        lambda: all((h := holders(client, orgs)[p]) is not None and h != victim for p in held),
        timeout,
    )
    return time.monotonic() - started


def drill(
    redis_url: str,
    folder: Path,
    *,
    orgs_count: int,
    per_org: int,
    ttl: int,
    page: int,
    delivery_wait: float,
    spread: bool = False,
    stall: bool = False,
    seed: int = 9100,
) -> Figures:
    import redis

    figures = Figures(
        orgs=orgs_count, activities=orgs_count * per_org, workers=3, ttl=ttl, seed=seed
    )
    started = time.monotonic()

    def phase(name: str) -> None:
        figures.phases.append((name, time.monotonic() - started))

    orgs = orgs_of(orgs_count)
    feed = feeds(orgs, per_org, seed)
    newest = {
        org: max(acts, key=lambda a: (a["created_at"], a["id"]))["id"] for org, acts in feed.items()
    }
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=PREFIX + "*", count=1000):
        client.delete(key)
    receiver = Receiver()
    mock = MockComplianceAPI(
        [a for acts in feed.values() for a in acts], api_key=KEY, requests_per_minute=1_000_000
    ).start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        config = folder / "detect.yaml"
        config.write_text(config_text(mock.url, receiver.url, redis_url, orgs, ttl, page))
        workers = [start_worker(folder, config, n) for n in range(3)]
        phase("started")

        # Three workers in the registry, and organizations held but not read to the end
        # (the worker that started first holds them all until the others join).
        def ready() -> bool:
            alive = [w for w in read_workers(client, PREFIX, time.time(), ttl) if w.alive]
            done = cursors(client, orgs)
            held = holders(client, orgs)
            if spread and len(set(held.values()) - {None}) < 3:
                return False  # the long drill waits for the three to share the organizations
            return len(alive) == 3 and any(held[o] and done[o] != newest[o] for o in orgs)

        wait_for("three workers, organizations being read", ready, 60, processes=workers)
        phase("leased")
        by_pid = {w.pid: worker_of_pid(client, w.pid, ttl) for w in workers}
        if stall:
            stalled(figures, client, folder, workers, by_pid, orgs, newest, ttl)
            phase("stall")
        # 1. SIGKILL the worker holding the most organizations not read to the end.
        done = cursors(client, orgs)
        now_held = holders(client, orgs)
        behind = Counter(h for org, h in now_held.items() if done[org] != newest[org])
        victim_id = (behind or Counter(now_held.values())).most_common(1)[0][0]
        victim = next(w for w in workers if by_pid[w.pid] == victim_id)
        first = [org for org, h in now_held.items() if h == victim_id]
        unfinished = sum(1 for org in first if done[org] != newest[org])
        figures.crashed.update(first)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        seconds = takeover(client, orgs, victim_id, first, 10 * ttl)
        figures.takeovers.append(("SIGKILL mid-run", seconds, len(first)))
        phase("first takeover")
        figures.mid_run = (len(first), unfinished)
        # 2. SIGKILL a survivor holding a lease it has just taken over.
        now_held = holders(client, orgs)
        second_id = next(now_held[org] for org in first)
        second = next(w for w in workers if by_pid[w.pid] == second_id)
        held = [org for org, h in now_held.items() if h == second_id]
        figures.crashed.update(held)
        second.send_signal(signal.SIGKILL)
        second.wait()
        seconds = takeover(client, orgs, second_id, held, 10 * ttl)
        figures.takeovers.append(("SIGKILL holding a taken-over lease", seconds, len(held)))
        last = next(w for w in workers if w.poll() is None)
        phase("second takeover")
        # 3. Everything read to the end, every alert delivered: then a clean stop.
        wait_for(
            "every organization read to its newest activity",
            lambda: cursors(client, orgs) == newest,
            300,
            0.1,
        )
        figures.read_to_end = sum(1 for org, c in cursors(client, orgs).items() if c == newest[org])
        ruleset = load_rules([bundled_rules_dir()])
        phase("read to the end")
        expected = replay_alerts(ruleset, feed)
        detections = {k for k, a in expected.items() if a["kind"] == "detection"}
        phase("replayed")
        # What has not arrived in time is checked below: it must still be owed, not lost.
        with contextlib.suppress(TimeoutError):
            wait_for(
                "every detection delivered",
                lambda: detections <= set(receiver.counts),
                delivery_wait,
                0.1,
            )
        last.send_signal(signal.SIGTERM)
        phase("delivered")
        figures.last_exit = last.wait(timeout=60)
        figures.leases_left = sum(1 for h in holders(client, orgs).values() if h)
        phase("stopped")
        # 4. The alerts against the replay, the notifications counted.
        found = stored_alerts(client)
        figures.health_alerts = sum(1 for a in found.values() if a["kind"] == "source_health")
        found = {k: a for k, a in found.items() if a["kind"] != "source_health"}
        compare(figures, expected, found)
        figures.requests = sum(receiver.counts.values())
        figures.notified = sum(len(ids) for ids in receiver.ids.values())
        figures.redelivered = figures.requests - figures.notified
        figures.notified_twice = sorted(k for k, ids in receiver.ids.items() if len(ids) > 1)
        never = sorted(detections - set(receiver.counts))
        figures.still_owed = owed(client, never)
        figures.never_notified = never
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        mock.stop()
        receiver.close()
        client.close()
    figures.seconds = time.monotonic() - started
    return figures


def owed(client: Any, alert_ids: list[str]) -> int:
    """How many of these alerts have a delivery still pending in the outbox (claimed by
    a worker killed mid-send: another sends it once the claim's lease has passed)."""
    from engine.delivery.redis_outbox import RedisOutbox
    from engine.state.redis_alerts import RedisAlertRows

    outbox = RedisOutbox(client, PREFIX, alerts=RedisAlertRows(client, PREFIX))
    found = outbox.deliveries(alert_ids)
    return sum(
        1 for alert_id in alert_ids if any(d.status == "pending" for d in found.get(alert_id, []))
    )


def stalled(
    figures: Figures,
    client: Any,
    folder: Path,
    workers: list[subprocess.Popen[bytes]],
    by_pid: dict[int, str | None],
    orgs: list[str],
    newest: dict[str, str],
    ttl: float,
) -> None:
    """SIGSTOP the worker holding the most unread organizations until the others hold
    them all (its leases ran out), then SIGCONT it: woken, it must find its leases lost
    and write nothing (the fence refuses a commit it attempts), then rejoin."""
    done = cursors(client, orgs)
    now_held = holders(client, orgs)
    behind = Counter(h for org, h in now_held.items() if done[org] != newest[org])
    frozen_id = (behind or Counter(now_held.values())).most_common(1)[0][0]
    index, frozen = next((n, w) for n, w in enumerate(workers) if by_pid[w.pid] == frozen_id)
    held = [org for org, h in now_held.items() if h == frozen_id]
    figures.crashed.update(held)  # their pipelines are dropped unsaved, as after a crash
    frozen.send_signal(signal.SIGSTOP)
    try:
        seconds = takeover(client, orgs, frozen_id, held, 10 * ttl)
    finally:
        frozen.send_signal(signal.SIGCONT)
    figures.takeovers.append(("SIGSTOP past the TTL", seconds, len(held)))
    log = folder / f"worker{index}.log"

    def noticed() -> tuple[int, int]:
        text = log.read_text(errors="replace")
        return text.count("lost: its pass stops"), text.count("nothing of the commit was applied")

    wait_for("the stalled worker to see its leases lost", lambda: sum(noticed()), 10 * ttl)
    figures.stall = (len(held), *noticed())


def stored_alerts(client: Any) -> dict[str, dict]:
    """Every alert in Redis, as the state store lists them (`_notify` included, as the
    memory store's)."""
    from engine.state.redis_store import RedisStore

    return {a["alert_id"]: a for a in RedisStore(client, PREFIX).alerts()}


def compare(figures: Figures, expected: dict[str, dict], found: dict[str, dict]) -> None:
    """By id, then by content: every field equal, counts, times, indicators and sample
    events included (a threshold window's samples are stored with the entries naming
    them, so the worker that takes an organization over after a crash has them too)."""
    figures.alerts_expected = len(expected)
    figures.alerts_found = len(found)
    figures.missing = sorted(set(expected) - set(found))
    figures.extra = sorted(set(found) - set(expected))
    for alert_id in sorted(set(expected) & set(found)):
        want, got = expected[alert_id], found[alert_id]
        if want == got:
            continue
        figures.differing.append(alert_id)
        if len(figures.differing) > 5:
            continue
        fields = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        orgs = got.get("organization_ids") or []
        killed = ", held by a killed worker" if set(orgs) & figures.crashed else ""
        want_events, got_events = want.get("events", []), got.get("events", [])
        subset = all(e in want_events for e in got_events)
        figures.notes.append(
            f"{alert_id} ({want.get('rule_id')}, {', '.join(orgs)}{killed}; "
            f"{len(got_events)} sample events against the replay's {len(want_events)}"
            f"{', each one of the replay' if subset else ''}) differs in "
            f"{', '.join(fields)}: "
            + "; ".join(
                f"{k}: replay {want.get(k)!r} / workers {got.get(k)!r}"
                for k in fields
                if k != "events"
            )[:600]
        )


def verdicts(f: Figures) -> list[tuple[str, str, bool]]:
    target = 2 * f.ttl
    rows = [
        (
            f"takeover after {what} ({count} organizations)",
            f"{seconds:.2f} s (target < {target:.0f} s)",
            seconds < target,
        )
        for what, seconds, count in f.takeovers
    ]
    if f.stall is not None:
        held, lost, refused = f.stall
        rows.append(
            (
                "SIGSTOP past the TTL, then SIGCONT: the worker writes nothing more",
                f"held {held} organizations; on waking {lost} leases found lost, "
                f"{refused} commits refused by the fence",
                lost + refused > 0,
            )
        )
    rows += [
        (
            "first victim killed mid-run",
            f"held {f.mid_run[0]} organizations, {f.mid_run[1]} not read to the end",
            f.mid_run[1] > 0,
        ),
        ("organizations read to the end", f"{f.read_to_end} of {f.orgs}", f.read_to_end == f.orgs),
        (
            "alerts equal the per-organization replay (by id)",
            f"{f.alerts_found} stored, {f.alerts_expected} replayed, "
            f"{len(f.missing)} missing, {len(f.extra)} extra",
            not f.missing and not f.extra,
        ),
        (
            "alerts equal by content",
            f"{len(f.differing)} differ (sample events and indicators included)",
            not f.differing,
        ),
        (
            "notifications (distinct webhook-id)",
            f"{f.notified} received, {len(f.notified_twice)} alerts twice, "
            f"{len(f.never_notified)} not yet ({f.still_owed} of them still owed); "
            f"{f.redelivered} repeated webhook-ids",
            not f.notified_twice and len(f.never_notified) == f.still_owed,
        ),
        (
            "clean stop of the last worker",
            f"exit {f.last_exit}, {f.leases_left} leases left",
            f.last_exit == 0 and f.leases_left == 0,
        ),
    ]
    return rows


def table(f: Figures) -> str:
    lines = [
        f"{f.orgs} organizations x {f.activities // max(1, f.orgs):,} activities, "
        f"{f.workers} workers, lease TTL {f.ttl:.0f} s, seed {f.seed}, {f.seconds:.1f} s in all",
        "",
        "| check | figure | verdict |",
        "|---|---|---|",
    ]
    for check, figure, ok in verdicts(f):
        lines.append(f"| {check} | {figure} | {'pass' if ok else 'FAIL'} |")
    lines += [f"\n{note}" for note in f.notes]
    lines.append("\nphases (s): " + ", ".join(f"{name} {at:.1f}" for name, at in f.phases))
    if f.health_alerts:
        lines.append(f"\n({f.health_alerts} source_health alerts left out of the comparison)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the suite's small drill")
    parser.add_argument("--redis-url", help="a Redis to use (default: start one)")
    parser.add_argument("--orgs", type=int, default=10)
    parser.add_argument("--per-org", type=int, help="activities per organization")
    parser.add_argument("--ttl", type=int, default=2, help="lease TTL in seconds")
    parser.add_argument(
        "--seed", type=int, default=9100, help="the generator's seed of the first organization"
    )
    args = parser.parse_args(argv)
    per_org = args.per_org or (600 if args.quick else 20_000)
    # The long drill reads pages of the product's default size: the ten organizations share
    # the configured 600 requests a minute (60 each), and a worker hands its surplus back
    # when a pass ends, so pages of 200 made the first worker's first pass outlast the
    # drill's wait for the other two to get their share.
    page = 20 if args.quick else 1000
    # The long drill waits for every notification (a delivery claimed by a killed worker
    # is sent once its claim's lease has passed, some 40 s); the quick one checks that
    # what has not arrived yet is still owed.
    delivery_wait = 5.0 if args.quick else 120.0
    with tempfile.TemporaryDirectory(prefix="redis-drill-") as temp:
        folder = Path(temp)
        server = None
        url = args.redis_url
        if url is None:
            (folder / "redis").mkdir()
            server, url = start_redis(folder / "redis")
            import redis

            wait_for("redis-server", lambda: _pings(redis, url), 10)
        try:
            figures = drill(
                url,
                folder,
                orgs_count=args.orgs,
                per_org=per_org,
                ttl=args.ttl,
                page=page,
                delivery_wait=delivery_wait,
                spread=not args.quick,
                stall=not args.quick,
                seed=args.seed,
            )
        except TimeoutError:
            for log in sorted(folder.glob("worker*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            raise
        finally:
            if server is not None:
                server.terminate()
                server.wait()
        print(table(figures))
        failed = [check for check, _, ok in verdicts(figures) if not ok]
        if failed:
            for log in sorted(folder.glob("worker*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
    return 1 if failed else 0


def _pings(redis: Any, url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.ConnectionError:
        return False


if __name__ == "__main__":
    sys.exit(main())
