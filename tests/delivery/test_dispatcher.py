"""The dispatcher against real HTTP receivers: retries, Retry-After, dead letters,
isolation between destinations, rate and order, restarts and crashes."""

from __future__ import annotations

import random
import sqlite3
import time
from datetime import timedelta
from typing import Any

import pytest

from engine.delivery.dispatcher import Dispatcher, TokenBucket, backoff_delay
from engine.delivery.outbox import Outbox
from tests.delivery.conftest import (
    T0,
    FakeClock,
    Receiver,
    Request,
    free_port,
    grow,
    make_alert,
    save_alerts,
    slack,
    slack_like,
    webhook,
)


def dispatcher(db, clock: FakeClock, destinations, **options: Any) -> Dispatcher:
    return Dispatcher(
        db, destinations, clock=clock, sleep=clock.sleep, rng=random.Random(7), **options
    )


def deliveries(db) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT alert_id, destination, purpose, status, attempts, reason FROM deliveries "
            "ORDER BY delivery_id"
        ).fetchall()


def test_everything_is_delivered_once_in_order_and_marked_sent(db, clock, receivers):
    hook = receivers()
    alerts = [make_alert(i) for i in range(5)]
    save_alerts(db, alerts)
    with dispatcher(db, clock, {"soar": webhook(hook.url)}) as d:
        report = d.dispatch_pending()
        assert (report.routed, report.sent, report.pending) == (5, 5, 0)
        # Nothing more to do, and nothing is sent twice.
        assert d.dispatch_pending().sent == 0
    assert [b["alert_id"] for b in hook.bodies()] == [a.alert_id for a in alerts]
    assert {row[3] for row in deliveries(db)} == {"sent"}


def test_100_alerts_through_429_retry_after_arrive_once_never_early(db, clock, receivers):
    start = clock()

    def limited(request: Request) -> tuple[int, str, dict[str, str]]:
        if request.at < start + 5:
            return 429, "rate_limited", {"Retry-After": "1"}
        return slack_like(request)

    hook = receivers(limited)
    save_alerts(db, [make_alert(i) for i in range(100)])
    with dispatcher(db, clock, {"secops": slack(hook.url)}) as d:
        report = d.dispatch_pending()
    assert report.sent == 100 and report.dead == 0 and report.pending == 0
    accepted = [r for r in hook.requests if r.at >= start + 5]
    ids = [r.json()["blocks"][-1]["elements"][0]["text"] for r in accepted]
    assert len(ids) == 100 and len(set(ids)) == 100
    # In order: alert 0 first, alert 99 last.
    assert f"al_{0:024x}" in ids[0] and f"al_{99:024x}" in ids[-1]
    times = [r.at for r in hook.requests]
    for previous, current, answer in zip(times, times[1:], hook.requests, strict=False):
        if answer.at < start + 5:  # that answer was a 429 with Retry-After: 1
            assert current - previous >= 1.0
        # About one message a second per Slack webhook, bursts queued.
        assert current - previous >= 1.0 - 1e-6


def test_a_receiver_down_for_a_minute_gets_everything_after(db, clock, receivers):
    port = free_port()
    hook = Receiver(clock, port=port)
    started: list[bool] = []

    def come_up(now: float) -> None:
        if not started and now >= clock_start + 60:
            started.append(True)
            hook.start()

    clock_start = clock()
    clock.on_advance.append(come_up)
    save_alerts(db, [make_alert(i) for i in range(10)])
    url = f"http://127.0.0.1:{port}/hooks/detect"
    try:
        with dispatcher(db, clock, {"soar": webhook(url)}) as d:
            report = d.dispatch_pending()
    finally:
        hook.stop()
    assert report.sent == 10 and report.dead == 0
    assert len(hook.requests) == 10
    assert min(r.at for r in hook.requests) >= clock_start + 60
    # Backoff, not hammering: a handful of attempts during the outage.
    attempts = sum(row[4] for row in deliveries(db))
    assert 10 < attempts < 10 + 12


def test_410_is_a_dead_letter_with_the_reason_and_others_are_unaffected(db, clock, receivers):
    archived = receivers(lambda r: (410, "channel_is_archived", {}))
    hook = receivers()
    save_alerts(db, [make_alert(i) for i in range(3)])
    destinations = {"secops": slack(archived.url), "soar": webhook(hook.url)}
    with dispatcher(db, clock, destinations) as d:
        report = d.dispatch_pending()
    assert report.dead == 3 and report.sent == 3
    rows = deliveries(db)
    dead = [r for r in rows if r[1] == "secops"]
    assert all(r[3] == "dead" and r[4] == 1 for r in dead)
    assert all(r[5] == "HTTP 410: channel_is_archived" for r in dead)
    assert len(hook.requests) == 3
    assert len(archived.requests) == 3  # one attempt each, no retries


def test_400_invalid_payload_is_permanent(db, clock, receivers):
    bad = receivers(lambda r: (400, "invalid_payload", {}))
    save_alerts(db, [make_alert(1)])
    with dispatcher(db, clock, {"secops": slack(bad.url)}) as d:
        d.dispatch_pending()
    assert deliveries(db)[0][3:] == ("dead", 1, "HTTP 400: invalid_payload")


def test_5xx_is_retried_with_growing_backoff_and_the_same_message(db, clock, receivers):
    answers = iter([(500, "rollup_error", {}), (503, "", {}), (502, "", {})])

    def flaky(_: Request) -> tuple[int, str, dict[str, str]]:
        return next(answers, (200, "ok", {}))

    hook = receivers(flaky)
    save_alerts(db, [make_alert(1)])
    with dispatcher(db, clock, {"soar": webhook(hook.url)}) as d:
        report = d.dispatch_pending()
    assert report.sent == 1 and report.retried == 3
    gaps = [b.at - a.at for a, b in zip(hook.requests, hook.requests[1:], strict=False)]
    assert gaps[0] < gaps[1] < gaps[2]
    assert 1.0 <= gaps[0] <= 2.0  # first retry: half to all of retry_initial_delay (2s)
    assert len({r.headers["webhook-id"] for r in hook.requests}) == 1
    assert len({r.body for r in hook.requests}) == 1
    assert deliveries(db)[0][3:5] == ("sent", 4)


def test_408_and_429_without_retry_after_are_transient(db, clock, receivers):
    answers = iter([(408, "", {}), (429, "", {})])
    hook = receivers(lambda r: next(answers, (200, "ok", {})))
    save_alerts(db, [make_alert(1)])
    with dispatcher(db, clock, {"soar": webhook(hook.url)}) as d:
        assert d.dispatch_pending().sent == 1


def test_redirects_are_not_followed(db, clock, receivers):
    target = receivers()
    hop = receivers(lambda r: (307, "", {"Location": target.url}))
    save_alerts(db, [make_alert(1)])
    with dispatcher(db, clock, {"soar": webhook(hop.url)}) as d:
        d.dispatch_pending()
    assert target.requests == []
    status, reason = deliveries(db)[0][3], deliveries(db)[0][5]
    assert status == "dead" and "redirects are not followed" in reason


def test_gives_up_after_give_up_after_into_the_dead_letters(db, clock, receivers):
    down = receivers(lambda r: (503, "maintenance", {}))
    save_alerts(db, [make_alert(1), make_alert(2)])
    config = webhook(down.url, give_up_after="1h", retry_max_delay="5m")
    start = clock()
    with dispatcher(db, clock, {"soar": config}) as d:
        report = d.dispatch_pending()
    assert report.dead == 2 and report.pending == 0
    assert clock() - start == pytest.approx(3600, abs=1)
    # One last attempt right at the limit, then the dead letter.
    assert down.requests[-1].at - start == pytest.approx(3600, abs=1)
    rows = deliveries(db)
    assert all(r[3] == "dead" for r in rows)
    assert "HTTP 503: maintenance" in rows[0][5] and "gave up" in rows[0][5]


def test_retry_after_past_the_limit_dead_letters_at_once(db, clock, receivers):
    hook = receivers(lambda r: (429, "", {"Retry-After": str(3 * 86400)}))
    save_alerts(db, [make_alert(1)])
    with dispatcher(db, clock, {"soar": webhook(hook.url)}) as d:
        report = d.dispatch_pending()
    assert report.dead == 1 and len(hook.requests) == 1
    assert "asked to wait 3d" in deliveries(db)[0][5]


def test_retry_after_as_an_http_date(db, clock, receivers):
    from email.utils import formatdate

    answers = iter([(503, "", {"Retry-After": formatdate(clock() + 30, usegmt=True)})])
    hook = receivers(lambda r: next(answers, (200, "ok", {})))
    save_alerts(db, [make_alert(1)])
    with dispatcher(db, clock, {"soar": webhook(hook.url)}) as d:
        d.dispatch_pending()
    assert hook.requests[1].at - hook.requests[0].at >= 30


def test_a_hanging_destination_delays_no_other(db, clock, receivers, monkeypatch):
    monkeypatch.setattr("engine.delivery.transport.ANSWER_TIMEOUT", 0.4)
    slow = receivers(hang=1.5)
    fast = receivers()
    save_alerts(db, [make_alert(i) for i in range(5)])
    destinations = {
        "slow": webhook(slow.url, timeout=timedelta(seconds=0.4)),  # YAML says "10s"
        "fast": webhook(fast.url),
    }
    with dispatcher(db, clock, destinations) as d:
        began = time.monotonic()
        d.dispatch_pending(deadline=clock() + 3)
    assert len(fast.requests) == 5
    # The fast one had all five before the slow one's first attempt even timed out.
    assert fast.requests[-1].real - began < 0.4
    rows = [r for r in deliveries(db) if r[1] == "slow"]
    assert any("no response within 0.4s" in r[5] for r in rows)


def test_deadline_returns_with_work_pending_and_the_next_call_resumes(db, clock, receivers):
    hook = receivers(slack_like)
    save_alerts(db, [make_alert(i) for i in range(10)])
    with dispatcher(db, clock, {"secops": slack(hook.url)}) as d:
        first = d.dispatch_pending(deadline=clock() + 3.5)
        assert first.sent == 4 and first.pending == 6
        assert d.dispatch_pending().sent == 6
    assert len(hook.requests) == 10


def test_restart_resumes_pending_and_honours_the_stored_pause(db, clock, receivers):
    state = {"up": False}
    hook = receivers(
        lambda r: (200, "ok", {}) if state["up"] else (429, "", {"Retry-After": "600"})
    )
    save_alerts(db, [make_alert(i) for i in range(3)])
    with dispatcher(db, clock, {"secops": slack(hook.url)}) as d:
        report = d.dispatch_pending(deadline=clock() + 60)
    assert report.pending == 3 and len(hook.requests) == 1
    paused_at = hook.requests[0].at
    state["up"] = True
    with dispatcher(db, clock, {"secops": slack(hook.url)}) as d:
        report = d.dispatch_pending()
    assert report.sent == 3
    assert all(r.at >= paused_at + 600 for r in hook.requests[1:])


class Crash(BaseException):
    """Stands in for the process dying: nothing after it runs."""


def test_crash_mid_batch_sends_no_duplicate_of_what_was_marked_sent(db, clock, receivers):
    from engine.delivery.channels import build_channel

    hook = receivers()
    alerts = [make_alert(i) for i in range(40)]
    save_alerts(db, alerts)
    sends = {"n": 0}

    def crashing(name, config):
        channel = build_channel(name, config)
        send = channel.send

        def send_then_maybe_die(*args):
            outcome = send(*args)  # the receiver has it...
            sends["n"] += 1
            if sends["n"] == 25:
                raise Crash  # ...and the process dies before recording that
            return outcome

        channel.send = send_then_maybe_die
        return channel

    first = dispatcher(db, clock, {"soar": webhook(hook.url)}, channel_factory=crashing)
    with pytest.raises(Crash):
        first.dispatch_pending()
    # Discarded without close(), as a killed process would be.
    sent_before = {r[0] for r in deliveries(db) if r[3] == "sent"}
    received_before = len(hook.requests)
    assert len(sent_before) == 24 and received_before == 25

    with dispatcher(db, clock, {"soar": webhook(hook.url)}) as second:
        second.dispatch_pending()
    after = [r.json()["alert_id"] for r in hook.requests[received_before:]]
    assert not sent_before.intersection(after)
    received = [r.json()["alert_id"] for r in hook.requests]
    assert set(received) == {a.alert_id for a in alerts}
    # The one in flight at the crash is the only message a receiver sees twice.
    assert len(received) == 41
    assert {r[3] for r in deliveries(db)} == {"sent"}


def test_a_claim_left_by_a_crash_past_the_limit_ends_as_a_dead_letter(db, clock, receivers):
    from engine.delivery.channels import build_channel

    hook = receivers()
    save_alerts(db, [make_alert(1)])

    def dying(name, config):
        channel = build_channel(name, config)

        def die(*args):
            raise Crash

        channel.send = die
        return channel

    config = {"soar": webhook(hook.url, give_up_after="1h")}
    with pytest.raises(Crash):
        dispatcher(db, clock, config, channel_factory=dying).dispatch_pending()
    clock.sleep(7200)
    with dispatcher(db, clock, config) as d:
        report = d.dispatch_pending()
    assert report.dead == 1 and hook.requests == []
    assert "gave up" in deliveries(db)[0][5]


def test_summary_when_a_grown_alert_closes(db, clock, receivers):
    hook = receivers(slack_like)
    alert, quiet = make_alert(1), make_alert(2)
    save_alerts(db, [alert, quiet], watermark="2026-05-07T10:00:05.000000Z")
    destinations = {"secops": slack(hook.url, summary_on_close=True)}
    with dispatcher(db, clock, destinations) as d:
        assert d.dispatch_pending().sent == 2
        grow(db, alert, 7, watermark="2026-05-07T10:30:00.000000Z")
        assert d.dispatch_pending().sent == 0  # still open
        grow(db, alert, 9, watermark="2026-05-07T11:00:05.000000Z")
        assert d.dispatch_pending().sent == 1  # closed: one summary, none for the quiet one
        assert d.dispatch_pending().sent == 0
    summary = hook.requests[-1].json()
    assert "Final count" in summary["blocks"][0]["text"]["text"]
    assert "*9 events*" in str(summary)
    assert [r[2] for r in deliveries(db)].count("closed") == 1


def test_no_summary_unless_configured(db, clock, receivers):
    hook = receivers()
    alert = make_alert(1)
    save_alerts(db, [alert])
    with dispatcher(db, clock, {"soar": webhook(hook.url)}) as d:
        d.dispatch_pending()
        grow(db, alert, 5, watermark="2026-05-07T12:00:00.000000Z")
        assert d.dispatch_pending().sent == 0


def test_webhook_summary_is_the_final_alert_under_its_own_id(db, clock, receivers):
    hook = receivers()
    alert = make_alert(1)
    save_alerts(db, [alert])
    with dispatcher(db, clock, {"soar": webhook(hook.url, summary_on_close=True)}) as d:
        d.dispatch_pending()
        grow(db, alert, 5, watermark="2026-05-07T12:00:00.000000Z")
        d.dispatch_pending()
    first, final = hook.requests
    assert final.json()["event_count"] == 5 and first.json()["event_count"] == 1
    assert final.headers["webhook-id"] == first.headers["webhook-id"] + "_closed"
    assert (first.headers["detect-event"], final.headers["detect-event"]) == (
        "alert.opened",
        "alert.closed",
    )


def test_console_destination_goes_through_the_outbox(db, clock):
    import io

    stream = io.StringIO()
    save_alerts(db, [make_alert(1)])
    terminal = {"terminal": __import__("engine.config").config.DestinationConfig(type="console")}
    with dispatcher(db, clock, terminal, stream=stream) as d:
        assert d.dispatch_pending().sent == 1
    assert "[HIGH] SSO disabled by ana1@example.com" in stream.getvalue()


def test_background_mode_delivers_after_wake(db, receivers):
    hook = receivers()
    with Dispatcher(db, {"soar": webhook(hook.url)}) as d:
        d.start(poll_interval=5.0)
        time.sleep(0.05)
        save_alerts(db, [make_alert(1)])
        d.wake()
        deadline = time.monotonic() + 3
        while not hook.requests and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(hook.requests) == 1


def test_alerts_with_notify_off_are_not_routed(db, clock, receivers):
    from engine.state.sqlite import SqliteStore

    hook = receivers()
    store = SqliteStore(db)
    store.save_alert(make_alert(1).to_state(), notify=False)
    store.commit()
    store.close()
    with dispatcher(db, clock, {"soar": webhook(hook.url)}) as d:
        assert d.dispatch_pending().routed == 0
    assert hook.requests == []


def test_token_bucket_and_backoff():
    bucket = TokenBucket(rate=1.0, burst=3, updated=0.0)
    for _ in range(3):
        assert bucket.ready_at(0.0) == 0.0
        bucket.take(0.0)
    assert bucket.ready_at(0.0) == pytest.approx(1.0)
    assert bucket.ready_at(0.5) == pytest.approx(1.0)
    config = webhook("https://soar.example.com/x", retry_initial_delay="2s", retry_max_delay="1m")
    rng = random.Random(1)
    delays = [backoff_delay(config, n, rng) for n in range(1, 10)]
    assert 1 <= delays[0] <= 2 and 2 <= delays[1] <= 4
    assert all(30 <= d <= 60 for d in delays[6:])


def test_outbox_tables_live_beside_the_engines(db, clock, receivers):
    hook = receivers()
    save_alerts(db, [make_alert(1)])
    with dispatcher(db, clock, {"soar": webhook(hook.url)}) as d:
        d.dispatch_pending()
    outbox = Outbox(db)
    try:
        assert outbox.route_note(make_alert(1).alert_id) == "routed by the configuration"
        assert outbox.counts() == {"sent": 1}
    finally:
        outbox.close()
    # The alert keeps its event time; sending it on the wall clock changes neither.
    (sent,) = hook.bodies()
    assert sent["first_event_at"].startswith(T0.strftime("%Y-%m-%dT%H:%M:01"))
    assert abs(clock() - T0.timestamp()) > 86400
