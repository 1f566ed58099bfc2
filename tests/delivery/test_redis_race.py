"""Several dispatchers, in several OS processes, on one Redis outbox: each alert reaches a
real loopback webhook receiver exactly once; and a dispatcher killed with SIGKILL while
its requests are in flight loses nothing.

The guarantee the kill test holds (at-least-once, docs/delivery.md): a delivery recorded
as sent is never sent again; a delivery nobody had claimed is sent exactly once, by
whichever dispatcher claims it; a delivery whose attempt was in flight when its
dispatcher died is sent again, with the same `webhook-id`, once its claim's lease (the
claim time + the attempt's longest time + LEASE_MARGIN) has passed, and not before. So
the receiver sees twice exactly the messages that were in flight at the kill, and every
other message once.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from typing import Any

from engine.delivery.dispatcher import Dispatcher
from tests.delivery.conftest import FakeClock, Request, make_alert, webhook
from tests.delivery.redis_backends import open_redis_outbox, save_redis_alerts

FORK = multiprocessing.get_context("fork")


def _deliver_until_done(
    url: str, prefix: str, destinations: dict[str, Any], sent: Any, start: Any = None
) -> None:
    """A worker's dispatcher, as `detect run` drives it: bounded passes until the shared
    outbox holds nothing unrouted or pending; reports how many it sent itself. With a
    `start` barrier, the first pass waits until every worker is ready, so a process that
    starts late still finds work to share."""
    outbox = open_redis_outbox(url, prefix)
    total = 0
    with Dispatcher(outbox, destinations) as dispatcher:
        if start is not None:
            start.wait(30)
        give_up = time.monotonic() + 30
        while time.monotonic() < give_up:
            total += dispatcher.dispatch_pending(deadline=time.time() + 0.2).sent
            if not outbox.unrouted_alerts(1) and not outbox.counts().get("pending"):
                break
    sent.put(total)


def test_three_processes_deliver_200_alerts_exactly_once(redis_server, redis_prefix, receivers):
    hook = receivers()
    prefix = redis_prefix
    alerts = [make_alert(i) for i in range(200)]
    save_redis_alerts(redis_server, prefix, alerts)
    destinations = {"soar": webhook(hook.url)}
    sent = FORK.Queue()
    start = FORK.Barrier(3)
    workers = [
        FORK.Process(
            target=_deliver_until_done, args=(redis_server, prefix, destinations, sent, start)
        )
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    per_worker = [sent.get(timeout=5) for _ in workers]
    received = Counter(body["alert_id"] for body in hook.bodies())
    assert received == Counter({a.alert_id: 1 for a in alerts})
    assert len({r.headers["webhook-id"] for r in hook.requests}) == 200
    # Each send was counted by the one worker that claimed it; they shared the work.
    assert sum(per_worker) == 200
    assert sum(1 for n in per_worker if n) >= 2, per_worker
    outbox = open_redis_outbox(redis_server, prefix)
    try:
        assert outbox.counts() == {"sent": 200}
        rows = outbox.deliveries([a.alert_id for a in alerts])
        assert {(len(found), found[0].attempts) for found in rows.values()} == {(1, 1)}
    finally:
        outbox.close()


def test_a_dispatcher_killed_with_claims_in_flight_loses_nothing(
    redis_server, redis_prefix, receivers
):
    clock = FakeClock(time.time())
    arrived = {"/a": threading.Event(), "/b": threading.Event()}
    release = threading.Event()
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def fifth_hangs(request: Request) -> tuple[int, str, dict[str, str]]:
        """The fifth request on each path hangs until the test lets it go."""
        path = request.path.rsplit("/", 1)[-1]
        with lock:
            seen[path] += 1
            number = seen[path]
        if number == 5:
            arrived["/" + path].set()
            release.wait(30)
        return 200, "ok", {}

    hook = receivers(fifth_hangs)
    base = hook.url.rsplit("/", 1)[0]
    destinations = {"a": webhook(base + "/a"), "b": webhook(base + "/b")}
    prefix = redis_prefix
    alerts = [make_alert(i, destinations=["a", "b"]) for i in range(30)]
    save_redis_alerts(redis_server, prefix, alerts)
    victim = FORK.Process(
        target=_deliver_until_done, args=(redis_server, prefix, destinations, FORK.Queue())
    )
    victim.start()
    try:
        assert all(event.wait(30) for event in arrived.values())
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
    release.set()
    assert victim.exitcode == -signal.SIGKILL
    outbox = open_redis_outbox(redis_server, prefix)
    rows = [d for found in outbox.deliveries([a.alert_id for a in alerts]).values() for d in found]
    in_flight = {(d.alert_id, d.destination): d.lease_until for d in rows if d.lease_until}
    assert outbox.counts() == {"sent": 8, "pending": 52}
    assert len(in_flight) == 2 and all(d.status == "pending" for d in rows if d.lease_until)
    before_kill = len(hook.requests)
    assert before_kill == 10

    # Another dispatcher takes over; its clock starts before the leases end.
    with Dispatcher(outbox, destinations, clock=clock, sleep=clock.sleep) as survivor:
        report = survivor.dispatch_pending()
    assert report.sent == 52
    sends = Counter((r.json()["alert_id"], r.path.rsplit("/", 1)[-1]) for r in hook.requests)
    assert set(sends) == {(a.alert_id, d) for a in alerts for d in ("a", "b")}
    assert {key for key, n in sends.items() if n == 2} == set(in_flight)
    assert max(sends.values()) == 2
    for request in hook.requests[before_kill:]:
        key = (request.json()["alert_id"], request.path.rsplit("/", 1)[-1])
        if key in in_flight:
            # Sent again only once the dead dispatcher's claim had lapsed.
            assert request.at >= in_flight[key]
    repeats = [r for r in hook.requests if (r.json()["alert_id"], r.path[-1]) in in_flight]
    by_key: dict[Any, set[str]] = {}
    for request in repeats:
        by_key.setdefault((request.json()["alert_id"], request.path[-1]), set()).add(
            request.headers["webhook-id"]
        )
    assert all(len(ids) == 1 for ids in by_key.values())
    outbox = open_redis_outbox(redis_server, prefix)
    try:
        assert outbox.counts() == {"sent": 60}
    finally:
        outbox.close()
