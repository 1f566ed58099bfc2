"""The Redis outbox keeps the SQLite outbox's semantics: the same checks run on both
backends, and one scenario (retries, a dead letter and its retry, give-up, a digest, a
summary on close, a silence, an unknown destination) is played on both under the same
fake clock and random seed, and must leave the same deliveries, field for field."""

from __future__ import annotations

import random
import re
import threading
from typing import Any

import pytest

from engine.delivery.dispatcher import Dispatcher
from engine.delivery.outbox import DestinationState, Outbox, OutboxStore, PlannedDelivery
from engine.delivery.outbox_alerts import OutboxAlerts
from engine.delivery.redis_outbox import RedisOutbox
from tests.delivery.conftest import WALL0, FakeClock, make_alert, webhook
from tests.delivery.redis_backends import Backend, redis_backend, sqlite_backend

HOUR = 3600.0


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path) -> Backend:
    if request.param == "sqlite":
        return sqlite_backend(tmp_path / "state.db")
    return redis_backend(
        request.getfixturevalue("redis_server"), request.getfixturevalue("redis_prefix")
    )


def routed(outbox: OutboxStore, alerts, destinations, now: float, status: str = "pending"):
    outbox.record_routes(
        [
            (a.to_state(), "note", [PlannedDelivery(name, status) for name in destinations])
            for a in alerts
        ],
        now,
    )


def test_claim_is_exclusive_until_its_lease_passes(backend):
    alerts = [make_alert(1), make_alert(2)]
    backend.save(alerts)
    outbox = backend.open()
    try:
        assert [a["alert_id"] for a in outbox.unrouted_alerts()] == [a.alert_id for a in alerts]
        routed(outbox, alerts, ["soar"], WALL0)
        routed(outbox, alerts, ["soar"], WALL0 + 1)  # routing twice makes no second row
        assert outbox.unrouted_alerts() == []
        assert outbox.counts() == {"pending": 2}
        first = outbox.next_due("soar", WALL0)
        assert first is not None and first.alert_id == alerts[0].alert_id
        assert (first.attempts, first.finished_at, first.lease_until) == (0, None, None)
        claimed = outbox.claim(first.delivery_id, WALL0, WALL0 + 50, "body-1", 3)
        assert claimed is not None
        assert (claimed.attempts, claimed.lease_until, claimed.payload) == (1, WALL0 + 50, "body-1")
        assert claimed.event_count == 3 and claimed.last_attempt_at == WALL0
        # Held: nobody else gets it, and the next due one is the other alert's.
        assert outbox.claim(first.delivery_id, WALL0 + 49.5, WALL0 + 99, "x", 1) is None
        second = outbox.next_due("soar", WALL0 + 10)
        assert second is not None and second.alert_id == alerts[1].alert_id
        assert outbox.queue_times("soar", 600, 40) == (WALL0, WALL0 + 600)
        # The lease passed (the claimer died): taken again, the first payload kept.
        again = outbox.claim(first.delivery_id, WALL0 + 50, WALL0 + 100, "body-2", 9)
        assert again is not None
        assert (again.attempts, again.payload, again.event_count) == (2, "body-1", 3)
        outbox.finish(first.delivery_id, "sent", WALL0 + 51, "", 200, lease=again.lease_until)
        assert outbox.claim(first.delivery_id, WALL0 + 200, WALL0 + 300, "x", 1) is None
        assert outbox.counts() == {"pending": 1, "sent": 1}
        sent = outbox.deliveries([alerts[0].alert_id])[alerts[0].alert_id]
        assert [(d.status, d.http_status, d.lease_until) for d in sent] == [("sent", 200, None)]
        assert outbox.route_note(alerts[0].alert_id) == "note"
    finally:
        outbox.close()


def test_retry_times_expiry_and_grace(backend):
    alerts = [make_alert(1), make_alert(2)]
    backend.save(alerts)
    outbox = backend.open()
    try:
        routed(outbox, alerts, ["soar"], WALL0)
        one = outbox.next_due("soar", WALL0)
        assert one is not None
        outbox.claim(one.delivery_id, WALL0, WALL0 + 40, "p", 1)
        # The last attempt scheduled right at the limit gets the grace to happen.
        outbox.reschedule(one.delivery_id, WALL0 + 600, "HTTP 503", 503, lease=WALL0 + 40)
        assert outbox.next_due("soar", WALL0 + 1).alert_id == alerts[1].alert_id
        assert outbox.queue_times("soar", 600, 40) == (WALL0, WALL0 + 600)
        assert outbox.expire("soar", 600, 40, WALL0 + 600, "gave up") == 1
        assert outbox.queue_times("soar", 600, 40) == (WALL0 + 600, WALL0 + 640)
        assert outbox.expire("soar", 600, 40, WALL0 + 639, "gave up") == 0
        assert outbox.expire("soar", 600, 40, WALL0 + 640, "gave up") == 1
        assert outbox.queue_times("soar", 600, 40) is None
        dead = outbox.by_status("dead", 10)
        assert [d.reason for d in dead] == ["gave up; last error: HTTP 503", "gave up"]
        assert outbox.requeue(WALL0 + 700, alerts[0].alert_id) == 1
        back = outbox.deliveries([alerts[0].alert_id])[alerts[0].alert_id][0]
        assert (back.status, back.attempts, back.payload, back.queued_at) == (
            "pending",
            0,
            None,
            WALL0 + 700,
        )
        assert outbox.counts() == {"pending": 1, "dead": 1}
        outbox.set_destination_state("soar", DestinationState(WALL0 + 5, 2, "HTTP 503"))
        assert outbox.destination_state("soar") == DestinationState(WALL0 + 5, 2, "HTTP 503")
        assert outbox.destination_state("other") == DestinationState()
    finally:
        outbox.close()


def test_silences_are_shared_and_lifted_once(backend):
    outbox = backend.open()
    try:
        silence = outbox.add_silence("anthropic.sso.*", None, WALL0, WALL0 + 1e4, "y", "a", WALL0)
        other = outbox.add_silence(None, "org_1", WALL0, WALL0 + 60, "k", "bo", WALL0 + 1)
        assert outbox.silence_for("anthropic.sso.disabled", "x", WALL0 + 5) == silence
        assert outbox.silence_for("anthropic.keys.created", "org_1", WALL0 + 5) == other
        assert outbox.silence_for("anthropic.keys.created", "org_1", WALL0 + 60) is None
        assert [s.silence_id for s in outbox.silences(WALL0 + 5)] == [
            other.silence_id,
            silence.silence_id,
        ]
        assert outbox.lift_silence(silence.silence_id, WALL0 + 10)
        assert not outbox.lift_silence(silence.silence_id, WALL0 + 11)
        assert not outbox.lift_silence("sil_nothing", WALL0 + 11)
        assert outbox.silence_for("anthropic.sso.disabled", "x", WALL0 + 12) is None
        assert outbox.silences(WALL0 + 100) == []
        ended = {s.silence_id: s.lifted_at for s in outbox.silences(WALL0, include_ended=True)}
        assert ended == {silence.silence_id: WALL0 + 10, other.silence_id: None}
    finally:
        outbox.close()


# -- one scenario, both backends ----------------------------------------------------------


class _Midpoint(random.Random):
    """Every draw half-way: the backoff jitter of a retry independent of draw order."""

    def random(self) -> float:
        return 0.5


def _scenario(backend: Backend, receivers) -> dict[str, Any]:
    clock = FakeClock()
    flaky_calls = {"n": 0}
    gone = {"on": True}

    def flaky(_):
        flaky_calls["n"] += 1
        return (503, "busy", {}) if flaky_calls["n"] <= 2 else (200, "ok", {})

    ok = receivers()
    ok.clock = clock
    hooks = {
        "ok": ok,
        "flaky": receivers(flaky),
        "gone": receivers(lambda _: (410, "gone", {}) if gone["on"] else (200, "ok", {})),
        "down": receivers(lambda _: (503, "down", {})),
    }
    for hook in hooks.values():
        hook.clock = clock
    destinations = {
        "ok": webhook(ok.url, summary_on_close=True),
        "flaky": webhook(hooks["flaky"].url),
        "gone": webhook(hooks["gone"].url),
        "down": webhook(hooks["down"].url, give_up_after="10m"),
        "dg": webhook(ok.url, digest={"below": "medium", "every": "1h"}),
    }
    alerts = [make_alert(i, destinations=["ok", "flaky"]) for i in range(3)]
    alerts += [make_alert(3, destinations=["gone", "down"])]
    alerts += [make_alert(4 + i, severity="low", destinations=["dg"]) for i in range(3)]
    alerts += [make_alert(7, destinations=["nope"])]
    alerts += [make_alert(8, rule_id="anthropic.keys.created", destinations=["ok"])]
    outbox = backend.open()
    silence = outbox.add_silence("anthropic.keys.*", None, WALL0, WALL0 + HOUR, "m", "ana", WALL0)
    outbox.close()
    backend.save(alerts, "2026-05-07T10:00:10.000000Z")
    # Jitter the same whatever the order: destinations are sent to at once, and the order
    # in which their requests finish would otherwise decide which draws which delay.
    options: dict[str, Any] = dict(clock=clock, sleep=clock.sleep, rng=_Midpoint())
    with Dispatcher(backend.open(), destinations, **options) as d:
        first = d.dispatch_pending()
        clock.sleep(HOUR)  # the digest's period closes
        second = d.dispatch_pending()
        alerts[0].event_count = 5
        backend.save([alerts[0]], "2026-05-07T12:00:00.000000Z")  # it grew, then closed
        third = d.dispatch_pending()
    outbox = backend.open()
    requeued = outbox.requeue(clock(), destination="gone")
    lifted = outbox.lift_silence(silence.silence_id, clock())
    outbox.close()
    gone["on"] = False
    with Dispatcher(backend.open(), destinations, **options) as d:
        fourth = d.dispatch_pending()
    outbox = backend.open()
    try:
        ids = [a.alert_id for a in alerts]
        rows = [d for found in outbox.deliveries(ids).values() for d in found]
        keys = sorted({d.digest_id for d in rows if d.digest_id})
        rows += [d for k in keys for d in outbox.deliveries([k])[k]]
        return {
            "reports": [str(r) for r in (first, second, third, fourth)],
            "rows": sorted(rows, key=lambda d: d.delivery_id),
            "counts": sorted(outbox.counts().items()),
            "newest": [d.delivery_id for d in outbox.by_status(("sent", "dead"), 4)],
            "notes": [outbox.route_note(i) for i in ids],
            "states": [outbox.destination_state(n) for n in destinations],
            "requeued": requeued,
            "lifted": lifted,
            # Two destinations share the "ok" receiver: their requests may interleave.
            "received": {n: sorted((r.at, r.body) for r in h.requests) for n, h in hooks.items()},
        }
    finally:
        outbox.close()


def _without_random_ids(value: Any) -> str:
    """The scenario's record with each random digest and silence id replaced by its
    order of first appearance."""
    seen: dict[str, str] = {}
    return re.sub(
        r"dg_[0-9a-f]{24}|sil_[0-9a-f]{12}",
        lambda m: seen.setdefault(m[0], f"id#{len(seen)}"),
        repr(value),
    )


def test_one_scenario_leaves_the_same_outbox_on_both_backends(
    tmp_path, redis_server, redis_prefix, receivers
):
    on_sqlite = _scenario(sqlite_backend(tmp_path / "state.db"), receivers)
    on_redis = _scenario(redis_backend(redis_server, redis_prefix), receivers)
    statuses = {(d.destination, d.purpose, d.status) for d in on_sqlite["rows"]}
    # The scenario reaches every state it means to.
    assert {
        ("ok", "closed", "sent"),
        ("dg", "digest", "sent"),
        ("dg", "opened", "sent"),
        ("down", "opened", "dead"),
        ("nope", "opened", "dead"),
        ("ok", "opened", "silenced"),
        ("gone", "opened", "sent"),
        ("flaky", "opened", "sent"),
    } <= statuses
    assert any(d.attempts > 1 for d in on_sqlite["rows"])
    # Receivers are separate per run: their ports differ, their paths and bodies do not.
    assert _without_random_ids(on_redis) == _without_random_ids(on_sqlite)


def _low(index: int):
    return make_alert(index, severity="low")


def test_two_outboxes_never_seal_the_same_alerts_twice(backend, receivers):
    hook = receivers()
    clock = FakeClock()
    backend.save([_low(1), _low(2)])
    destinations = {"soar": webhook(hook.url, digest={"below": "medium", "every": "1h"})}
    with Dispatcher(backend.open(), destinations, clock=clock, sleep=clock.sleep) as d:
        assert d.dispatch_pending().in_digests == 2
    first, second = backend.open(), backend.open()
    try:
        assert first.open_digests() == {"soar": WALL0}
        # Both read the waiting alerts; the first to seal wins, the other writes nothing.
        ids = [m.delivery_id for m, _ in first.digest_members("soar", WALL0 + HOUR)]
        assert [m.delivery_id for m, _ in second.digest_members("soar", WALL0 + HOUR)] == ids
        assert first.digest_members("soar", WALL0) == []  # routed at WALL0: not before it
        assert first.seal_digest("soar", [("dg_a", "{}", ids)], [], WALL0 + 1)
        assert not second.seal_digest("soar", [("dg_b", "{}", ids)], [], WALL0 + 1)
        assert not second.seal_digest("soar", [], [(ids[0], "silenced", "late")], WALL0 + 1)
        assert first.open_digests() == {}
        members = first.deliveries([a.alert_id for a in (_low(1), _low(2))])
        assert {d.digest_id for found in members.values() for d in found} == {"dg_a"}
        message = first.deliveries(["dg_a"])["dg_a"]
        assert [(d.purpose, d.status, d.event_count) for d in message] == [("digest", "pending", 2)]
        assert second.deliveries(["dg_b"]) == {"dg_b": []}
        # The message's outcome is its members'.
        first.finish(message[0].delivery_id, "sent", WALL0 + 2, "", 200, lease=None)
        settled = first.deliveries([_low(1).alert_id])[_low(1).alert_id][0]
        assert (settled.status, settled.reason) == ("sent", "sent in digest dg_a")
        assert first.counts() == {"sent": 3}
    finally:
        first.close()
        second.close()


def test_a_removed_destination_dead_letters_and_a_stopped_digest_goes_one_by_one(
    backend, receivers
):
    hook = receivers()
    clock = FakeClock()
    alerts = [_low(1), _low(2)]
    backend.save(alerts)
    digesting = {
        "soar": webhook(hook.url, digest={"below": "medium", "every": "1h"}),
        "old": webhook(hook.url, digest={"below": "medium", "every": "1h"}),
    }
    with Dispatcher(backend.open(), digesting, clock=clock, sleep=clock.sleep) as d:
        assert d.dispatch_pending().in_digests == 4
    with Dispatcher(backend.open(), {"soar": webhook(hook.url)}, clock=clock) as d:
        report = d.dispatch_pending()
    assert (report.sent, report.dead) == (2, 2)
    assert [r.json()["schema"] for r in hook.requests] == ["detect.alert/v1"] * 2
    outbox = backend.open()
    try:
        dead = outbox.by_status("dead", 10)
        assert {d.destination for d in dead} == {"old"}
        assert {d.reason for d in dead} == {"destination 'old' is not in the configuration"}
        assert outbox.counts() == {"sent": 2, "dead": 2}
    finally:
        outbox.close()


def test_unrouted_alerts_in_commit_order_whatever_was_routed_first(backend):
    alerts = [make_alert(i) for i in range(1, 5)]
    backend.save(alerts[:3])
    outbox = backend.open()
    try:
        routed(outbox, [alerts[1]], ["soar"], WALL0)
        ids = [a.alert_id for a in alerts]
        assert [a["alert_id"] for a in outbox.unrouted_alerts()] == [ids[0], ids[2]]
        routed(outbox, [alerts[0]], ["soar"], WALL0)
        assert [a["alert_id"] for a in outbox.unrouted_alerts()] == [ids[2]]
        backend.save(alerts[3:])
        backend.save(alerts[:1])  # saved again: keeps its place, still routed
        assert [a["alert_id"] for a in outbox.unrouted_alerts(1)] == [ids[2]]
        assert [a["alert_id"] for a in outbox.unrouted_alerts()] == [ids[2], ids[3]]
        routed(outbox, [alerts[3], alerts[2]], ["soar"], WALL0)
        assert outbox.unrouted_alerts() == []
        if backend.name == "redis":
            assert outbox.figures() == (0, {"pending": 4})
    finally:
        outbox.close()


def test_a_summary_is_due_once_the_window_closes_and_settles_once(backend):
    alert = make_alert(1)  # its window ends at 11:00:01
    backend.save([alert])
    outbox = backend.open()
    try:
        routed(outbox, [alert], ["soar", "quiet"], WALL0)
        for delivery in outbox.deliveries([alert.alert_id])[alert.alert_id]:
            outbox.finish(
                delivery.delivery_id, "sent", WALL0 + 1, "", 200, summary_due=True, lease=None
            )
        assert outbox.summaries_due("2026-05-07T11:00:00.000000Z") == []
        due = outbox.summaries_due("2026-05-07T11:00:01.000000Z")
        assert [(d.destination, body["alert_id"]) for d, body in due] == [
            ("soar", alert.alert_id),
            ("quiet", alert.alert_id),
        ]
        soar, quiet = (d for d, _ in due)
        outbox.settle_summary(
            soar.delivery_id, alert.alert_id, "soar", PlannedDelivery("soar", "pending"), WALL0 + 9
        )
        outbox.settle_summary(
            quiet.delivery_id,
            alert.alert_id,
            "quiet",
            PlannedDelivery("quiet", "silenced", "hush"),
            WALL0 + 9,
        )
        assert outbox.summaries_due("2026-05-08T00:00:00.000000Z") == []
        rows = outbox.deliveries([alert.alert_id])[alert.alert_id]
        closed = [(d.destination, d.status, d.finished_at, d.reason) for d in rows[2:]]
        assert closed == [("soar", "pending", None, ""), ("quiet", "silenced", WALL0 + 9, "hush")]
        assert [d.purpose for d in rows] == ["opened", "opened", "closed", "closed"]
    finally:
        outbox.close()


# -- an attempt's outcome is recorded only under its own claim ------------------------------


def test_an_outcome_is_recorded_only_under_the_claim_it_ran_under(backend):
    """A claims; its lease runs out and B claims; A, stalled until now, reports: neither
    its retry nor its result is recorded, so B's lease still holds and C cannot claim."""
    alert = make_alert(1)
    backend.save([alert])
    outbox = backend.open()
    try:
        routed(outbox, [alert], ["soar"], WALL0)
        due = outbox.next_due("soar", WALL0)
        assert due is not None
        key = due.delivery_id
        a = outbox.claim(key, WALL0, WALL0 + 50, "body", 1)
        b = outbox.claim(key, WALL0 + 50, WALL0 + 100, "body", 1)
        assert a is not None and b is not None
        assert not outbox.reschedule(key, WALL0 + 70, "HTTP 503", 503, lease=WALL0 + 50)
        assert outbox.claim(key, WALL0 + 60, WALL0 + 110, "body", 1) is None
        assert not outbox.finish(key, "dead", WALL0 + 61, "HTTP 410", 410, lease=a.lease_until)
        # Nor is it settled without an attempt (silenced, say) while B holds it.
        assert not outbox.finish(key, "silenced", WALL0 + 62, "hush", lease=None)
        row = outbox.deliveries([alert.alert_id])[alert.alert_id][0]
        assert (row.status, row.attempts, row.lease_until, row.reason, row.http_status) == (
            "pending",
            2,
            WALL0 + 100,
            "",
            None,
        )
        assert outbox.next_due("soar", WALL0 + 99) is None
        # B's own outcome is recorded, once: its claim ends with it.
        assert outbox.finish(key, "sent", WALL0 + 63, "", 200, lease=b.lease_until)
        assert not outbox.reschedule(key, WALL0 + 70, "HTTP 503", 503, lease=WALL0 + 100)
        assert not outbox.finish(key, "dead", WALL0 + 64, "late", 500, lease=b.lease_until)
        row = outbox.deliveries([alert.alert_id])[alert.alert_id][0]
        assert (row.status, row.http_status, row.reason, row.finished_at) == (
            "sent",
            200,
            "",
            WALL0 + 63,
        )
        assert outbox.counts() == {"sent": 1}
    finally:
        outbox.close()


def test_a_rescheduled_claim_ends_and_a_stale_one_leaves_the_next_holder_alone(backend):
    alert = make_alert(1)
    backend.save([alert])
    outbox = backend.open()
    try:
        routed(outbox, [alert], ["soar"], WALL0)
        key = outbox.deliveries([alert.alert_id])[alert.alert_id][0].delivery_id
        assert outbox.claim(key, WALL0, WALL0 + 50, "body", 1) is not None
        assert outbox.reschedule(key, WALL0 + 5, "HTTP 503", 503, lease=WALL0 + 50)
        assert not outbox.reschedule(key, WALL0 + 9, "HTTP 502", 502, lease=WALL0 + 50)
        again = outbox.claim(key, WALL0 + 5, WALL0 + 55, "body", 1)
        assert again is not None and again.lease_until == WALL0 + 55
        assert not outbox.finish(key, "sent", WALL0 + 6, "", 200, lease=WALL0 + 50)
        assert outbox.deliveries([alert.alert_id])[alert.alert_id][0].lease_until == WALL0 + 55
    finally:
        outbox.close()


def test_a_dispatcher_stalled_past_its_lease_does_not_overwrite_the_next_attempt(
    backend, receivers, caplog
):
    """Dispatcher A's request hangs past its claim's lease; B claims the delivery and sends
    it; then A's request fails. A's retry is not recorded over B's success: one line says
    why, and the delivery stays sent as B recorded it."""
    arrived, release = threading.Event(), threading.Event()
    answers = iter([503, 200])

    def first_hangs(_request) -> tuple[int, str, dict[str, str]]:
        status = next(answers)
        if status == 503:
            arrived.set()
            release.wait(10)
        return status, "ok" if status == 200 else "busy", {}

    hook = receivers(first_hangs)
    destinations = {"soar": webhook(hook.url)}
    alert = make_alert(1)
    backend.save([alert])
    clock_a = FakeClock(WALL0)
    reports: list[Any] = []
    with Dispatcher(backend.open(), destinations, clock=clock_a, sleep=clock_a.sleep) as a:
        stalled = threading.Thread(target=lambda: reports.append(a.dispatch_pending()))
        stalled.start()
        try:
            assert arrived.wait(10)
            reader = backend.open()
            try:
                held = reader.deliveries([alert.alert_id])[alert.alert_id][0]
            finally:
                reader.close()
            assert held.lease_until is not None and held.lease_until > WALL0
            clock_b = FakeClock(held.lease_until)
            with Dispatcher(backend.open(), destinations, clock=clock_b, sleep=clock_b.sleep) as b:
                assert b.dispatch_pending().sent == 1
        finally:
            release.set()
            stalled.join(10)
    assert [(r.sent, r.retried, r.dead) for r in reports] == [(0, 0, 0)]
    lines = [r.getMessage() for r in caplog.records if "claimed again" in r.getMessage()]
    assert len(lines) == 1
    assert "was claimed again by another worker after this one's lease ran out" in lines[0]
    assert "its result (retry) is not recorded" in lines[0]
    outbox = backend.open()
    try:
        row = outbox.deliveries([alert.alert_id])[alert.alert_id][0]
        assert (row.status, row.http_status, row.reason, row.attempts) == ("sent", 200, "", 2)
        assert row.lease_until is None
        assert len(hook.requests) == 2
    finally:
        outbox.close()


def test_both_outboxes_read_the_alerts_through_one_implementation():
    """The alert reads are written once (`OutboxAlerts`), so the backends cannot drift:
    only how each finds the unrouted alerts is its own."""
    for name in ("unrouted_alerts", "alert", "find_alert_ids", "recent_alerts", "watermark"):
        shared = getattr(OutboxAlerts, name)
        assert getattr(Outbox, name) is shared and getattr(RedisOutbox, name) is shared, name
