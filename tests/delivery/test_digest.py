"""Digests: low and info alerts batched per period, against real loopback receivers, a
real SQLite state file and an injected clock (the FakeClock starts on an hour boundary,
so `every: 1h` periods are [WALL0, WALL0 + 1h), [WALL0 + 1h, WALL0 + 2h), …)."""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from engine.config import Config, StateConfig, load_config
from engine.delivery.channels import build_channel
from engine.delivery.dispatcher import Dispatcher, deliver_pending
from engine.delivery.outbox import Outbox
from engine.delivery.slack import DIGEST_TITLE, escape
from engine.delivery.webhook import public_alert, verify
from engine.errors import ConfigError
from tests.delivery.conftest import (
    SECRET,
    SLACK_TOTAL_LIMIT,
    WALL0,
    FakeClock,
    SlackLike,
    all_text,
    make_alert,
    save_alerts,
    slack,
    slack_like,
    slack_problem,
    webhook,
)

HOUR = 3600.0
DIGEST = {"below": "medium", "every": "1h"}
# A raw `<` that starts a Slack control sequence: a mention, a link, a special command.
CONTROL = re.compile(r"<[!@#]|<https?:|<mailto:")


def dispatcher(db, clock: FakeClock, destinations, **options: Any) -> Dispatcher:
    return Dispatcher(
        db, destinations, clock=clock, sleep=clock.sleep, rng=random.Random(3), **options
    )


def rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT alert_id, destination, purpose, status, digest_id, reason FROM deliveries "
            "ORDER BY delivery_id"
        ).fetchall()


def low(index: int, **changes: Any):
    changes.setdefault("severity", "low")
    return make_alert(index, **changes)


def listed_ids(payload: dict[str, Any]) -> list[str]:
    """The alert ids a Slack digest lists, in order (one per alert line)."""
    found = []
    for block in payload["blocks"]:
        if block["type"] == "section":
            found += re.findall(r"^• .*`(al_[0-9a-f]{24})`$", block["text"]["text"], re.M)
    return found


def test_low_alerts_wait_for_their_period_and_arrive_as_one_message(db, clock, receivers):
    hook = receivers(SlackLike())
    medium = make_alert(0, severity="medium")
    lows = [low(1), low(2, severity="info"), low(3, rule_id="anthropic.keys.created")]
    save_alerts(db, [medium, *lows])
    destinations = {"secops": slack(hook.url, digest=DIGEST)}
    with dispatcher(db, clock, destinations) as d:
        report = d.dispatch_pending()
        # The medium alert goes alone, at once; the others wait for the period.
        assert (report.sent, report.in_digests) == (1, 3)
        assert "SSO disabled by ana0" in hook.requests[0].json()["text"]
        clock.sleep(HOUR - 1)
        assert d.dispatch_pending().sent == 0
        clock.sleep(1)
        report = d.dispatch_pending()
        assert (report.sent, report.digested, report.in_digests) == (1, 3, 0)
        # A later alert opens the next period; nothing is listed twice.
        save_alerts(db, [low(4)])
        assert d.dispatch_pending().sent == 0
        clock.sleep(HOUR)
        assert d.dispatch_pending().sent == 1
    first, digest, second = hook.bodies()[0], hook.bodies()[1], hook.bodies()[2]
    assert "[HIGH]" not in first["text"] and first["blocks"][0]["text"]["text"].count("MEDIUM")
    assert slack_problem(digest) is None
    assert digest["blocks"][0]["text"]["text"].endswith("Digest · 3 alerts below MEDIUM")
    assert sorted(listed_ids(digest)) == sorted(a.alert_id for a in lows)
    assert listed_ids(second) == [low(4).alert_id]
    text = "\n".join(all_text(digest))
    # Grouped by rule with counts, each alert with severity, title, events and id.
    assert "*By rule*" in text and "`anthropic.sso.disabled`: 2 alerts, 2 events" in text
    assert ":large_blue_circle: INFO · SSO disabled by ana2@example.com · 1 event" in text
    assert "Period 2027-01-15T08:00:00Z to 2027-01-15T09:00:00Z" in text
    states = {(r[0], r[2]): (r[3], r[5]) for r in rows(db)}
    for alert in lows:
        status, reason = states[(alert.alert_id, "opened")]
        assert status == "sent" and reason.startswith("sent in digest dg_")


def test_passes_like_the_background_loop_send_the_digest_as_the_period_closes(db, clock, receivers):
    hook = receivers()
    save_alerts(db, [low(1), low(2)])
    with dispatcher(db, clock, {"soar": webhook(hook.url, digest=DIGEST)}) as d:
        clock.sleep(600)  # routed ten minutes into the period
        # A bounded pass (the background loop's, or --once's) never waits for the period.
        d.dispatch_pending(deadline=clock() + 120)
        assert clock() == WALL0 + 600 and hook.requests == []
        clock.sleep(HOUR - 601)
        d.dispatch_pending(deadline=clock() + 1)
        assert hook.requests == []
        clock.sleep(1)
        d.dispatch_pending(deadline=clock() + 1)
    (request,) = hook.requests
    assert request.at == pytest.approx(WALL0 + HOUR)
    body = request.json()
    assert body["period_start"] == "2027-01-15T08:00:00Z"
    assert body["period_end"] == "2027-01-15T09:00:00Z"
    assert body["early"] is False


def test_300_alerts_split_into_numbered_messages_within_slack_limits(db, clock, receivers):
    slack_receiver = SlackLike()
    hook = receivers(slack_receiver)
    rules = ["anthropic.sso.disabled", "anthropic.keys.created", "anthropic.files.shared"]
    alerts = [
        low(i, rule_id=rules[i % 3], title=f"Routine change {i} by user{i}@example.com " * 3)
        for i in range(300)
    ]
    save_alerts(db, alerts)
    with dispatcher(db, clock, {"secops": slack(hook.url, digest=DIGEST)}) as d:
        d.dispatch_pending()
        clock.sleep(HOUR)
        report = d.dispatch_pending()
    parts = len(hook.requests)
    assert report.digested == 300 and report.dead == 0 and report.sent == parts > 1
    assert slack_receiver.rate_limited == 0  # paced like any Slack message
    listed: list[str] = []
    for number, payload in enumerate(hook.bodies(), start=1):
        assert slack_problem(payload) is None
        assert len(payload["blocks"]) <= 50
        assert sum(len(t) for t in all_text(payload)) < SLACK_TOTAL_LIMIT
        header = payload["blocks"][0]["text"]["text"]
        assert f"Digest {number}/{parts} · 300 alerts below MEDIUM" in header
        assert payload["text"].startswith(f"[DIGEST {number}/{parts}]")
        listed += listed_ids(payload)
    # Every alert listed exactly once: none dropped, none repeated.
    assert Counter(listed) == Counter(a.alert_id for a in alerts)
    # A rule's group that continues into the next message says so.
    assert any("_(continued)_" in "\n".join(all_text(p)) for p in hook.bodies()[1:])
    digests = [r for r in rows(db) if r[2] == "digest"]
    assert len(digests) == parts and all(r[3] == "sent" for r in digests)
    numbered = [f"{n}of{parts}" for n in range(1, 1 + parts)]
    assert [r[0].rsplit("-", 1)[1] for r in digests] == numbered


def test_hostile_event_data_is_escaped_as_in_single_alerts(db, clock, receivers):
    hook = receivers(SlackLike())
    title = (
        "<!channel> <https://evil.example|click> *bold* _it_ ~gone~ `code` & 東京 — Zoë 🚀\u202e "
        + "x" * 5000
    )
    alerts = [
        low(1, title=title, rule_name="<!here> *name*"),
        low(2, title="line\nbreak <@U123> " + "é" * 5000, event_count=7),
    ]
    alerts[0].events[0]["actor"]["user_agent"] = "<http://evil|Open runbook> " + "A" * 5000
    save_alerts(db, alerts)
    with dispatcher(db, clock, {"secops": slack(hook.url, digest=DIGEST)}) as d:
        d.dispatch_pending()
        clock.sleep(HOUR)
        assert d.dispatch_pending().sent == 1
    (payload,) = hook.bodies()
    assert slack_problem(payload) is None
    texts = all_text(payload)
    for text in texts:
        assert not CONTROL.search(text), text[:200]
    joined = "\n".join(texts)
    # Exactly the escaping a single Slack alert gets: the same function, the same output.
    assert escape(title, DIGEST_TITLE) in joined
    assert "&lt;!channel&gt; &lt;https://evil.example|click&gt;" in joined
    assert "东京" not in joined and "東京 — Zoë 🚀" in joined
    assert "\u202e" not in joined
    assert "line break &lt;@U123&gt;" in joined and "7 events" in joined
    assert "&lt;!here&gt; *name*" in joined
    assert max(len(line) for line in joined.splitlines()) < 400  # 5,000 characters cut


def test_429_with_retry_after_and_5xx_retried_each_digest_delivered_once(db, clock, receivers):
    answers = iter([(429, "rate_limited", {"Retry-After": "30"}), (503, "", {})])
    slack_hook = receivers(lambda r: next(answers, (200, "ok", {})))
    hook_answers = iter([(500, "", {}), (502, "", {})])
    hook = receivers(lambda r: next(hook_answers, (200, "ok", {})))
    alerts = [low(i) for i in range(5)]
    save_alerts(db, alerts)
    destinations = {
        "secops": slack(slack_hook.url, digest=DIGEST),
        "soar": webhook(hook.url, digest=DIGEST),
    }
    with dispatcher(db, clock, destinations) as d:
        d.dispatch_pending()
        clock.sleep(HOUR)
        report = d.dispatch_pending()
        assert report.sent == 2 and report.retried == 4 and report.dead == 0
        assert d.dispatch_pending().sent == 0
    assert len(slack_hook.requests) == 3 and len(hook.requests) == 3
    assert slack_hook.requests[1].at - slack_hook.requests[0].at >= 30
    for receiver in (slack_hook, hook):
        assert len({r.body for r in receiver.requests}) == 1  # the same message each time
    # The webhook: one signed request, the same webhook-id on every attempt.
    assert len({r.headers["webhook-id"] for r in hook.requests}) == 1
    last = hook.requests[-1]
    assert verify(SECRET, last.headers, last.body, now=last.at)
    assert last.headers["detect-event"] == "alert.digest"
    body = last.json()
    assert body["schema"] == "detect.digest/v1" and body["digest_id"].startswith("dg_")
    assert last.headers["webhook-id"] == f"{body['digest_id']}_soar_digest"
    assert (body["part"], body["parts"], body["alert_count"]) == (1, 1, 5)
    stored = {a.alert_id: public_alert(a.to_state()) for a in alerts}
    assert body["alerts"] == [json.loads(json.dumps(stored[a["alert_id"]])) for a in body["alerts"]]
    assert {a["alert_id"] for a in body["alerts"]} == set(stored)
    assert {r[3] for r in rows(db)} == {"sent"}


def test_a_dead_digest_takes_its_alerts_with_it_and_retry_sends_it_whole(db, clock, receivers):
    state = {"archived": True}
    hook = receivers(
        lambda r: (410, "channel_is_archived", {}) if state["archived"] else (200, "ok", {})
    )
    alerts = [low(i) for i in range(3)]
    save_alerts(db, alerts)
    destinations = {"secops": slack(hook.url, digest=DIGEST)}
    with dispatcher(db, clock, destinations) as d:
        d.dispatch_pending()
        clock.sleep(HOUR)
        assert d.dispatch_pending().dead == 1
    members = [r for r in rows(db) if r[2] == "opened"]
    assert all(r[3] == "dead" for r in members)
    assert all(re.fullmatch(r"digest dg_\w+: HTTP 410: channel_is_archived", r[5]) for r in members)
    outbox = Outbox(db)
    try:
        assert outbox.requeue(clock()) == 1
        assert {r[3] for r in rows(db) if r[2] == "opened"} == {"digest"}
    finally:
        outbox.close()
    state["archived"] = False
    with dispatcher(db, clock, destinations) as d:
        assert d.dispatch_pending().sent == 1
    assert hook.requests[-1].body == hook.requests[0].body
    assert {r[3] for r in rows(db)} == {"sent"}


def crashing(after_send: bool):
    """A channel factory whose first digest send kills the "process": after the receiver
    has it (the documented duplicate) or before anything leaves."""

    class Crash(BaseException):
        pass

    def factory(name, config):
        channel = build_channel(name, config)
        send = channel.send

        def send_then_die(payload, msg_id, timestamp, purpose):
            if purpose == "digest":
                if after_send:
                    send(payload, msg_id, timestamp, purpose)
                raise Crash
            return send(payload, msg_id, timestamp, purpose)

        channel.send = send_then_die
        return channel

    return factory, Crash


def test_killed_before_the_period_closed_a_fresh_dispatcher_loses_nothing(db, clock, receivers):
    hook = receivers()
    alerts = [low(i) for i in range(4)]
    save_alerts(db, alerts[:2])
    destinations = {"soar": webhook(hook.url, digest=DIGEST)}
    first = dispatcher(db, clock, destinations)
    first.dispatch_pending()  # routed into the digest; then "killed" (never closed)
    save_alerts(db, alerts[2:])  # committed while no dispatcher ran
    clock.sleep(HOUR)
    with dispatcher(db, clock, destinations) as second:
        report = second.dispatch_pending()
        # The closed period goes out; what is routed now belongs to the next one.
        assert (report.sent, report.digested, report.in_digests) == (1, 2, 2)
        clock.sleep(HOUR)
        assert second.dispatch_pending().sent == 1
    listed = [[a["alert_id"] for a in r.json()["alerts"]] for r in hook.requests]
    assert listed == [[a.alert_id for a in alerts[:2]], [a.alert_id for a in alerts[2:]]]


@pytest.mark.parametrize("after_send", [False, True])
def test_killed_while_sending_the_digest_resends_the_same_message_only(
    db, clock, receivers, after_send
):
    hook = receivers()
    alerts = [low(i) for i in range(6)]
    save_alerts(db, alerts)
    destinations = {"soar": webhook(hook.url, digest=DIGEST)}
    factory, crash = crashing(after_send)
    first = dispatcher(db, clock, destinations, channel_factory=factory)
    first.dispatch_pending()
    clock.sleep(HOUR)
    with pytest.raises(crash):
        first.dispatch_pending()
    assert len(hook.requests) == int(after_send)
    # The digest was sealed and recorded before anything was sent.
    sealed = [r for r in rows(db) if r[2] == "digest"]
    assert len(sealed) == 1 and sealed[0][3] == "pending"
    assert {r[4] for r in rows(db) if r[2] == "opened"} == {sealed[0][0]}
    save_alerts(db, [low(10)])  # arrives after the restart: the next period's
    clock.sleep(60)  # past the claim the dead process held
    with dispatcher(db, clock, destinations) as second:
        assert second.dispatch_pending().sent == 1
        assert second.dispatch_pending().sent == 0
    bodies = [r.body for r in hook.requests]
    # At most the one in flight at the kill arrives twice, identical, under one id.
    assert len(bodies) == 1 + int(after_send) and len(set(bodies)) == 1
    assert len({r.headers["webhook-id"] for r in hook.requests}) == 1
    listed = [a["alert_id"] for a in hook.requests[-1].json()["alerts"]]
    assert sorted(listed) == sorted(a.alert_id for a in alerts)
    by_alert = {r[0]: r[3] for r in rows(db) if r[2] == "opened"}
    assert by_alert.pop(low(10).alert_id) == "digest"
    assert set(by_alert.values()) == {"sent"}


def test_silenced_alerts_never_enter_a_digest(db, clock, receivers):
    hook = receivers()
    outbox = Outbox(db)
    outbox.add_silence("anthropic.noisy.*", None, clock(), clock() + 86400, "migration", "t", 0)
    alerts = [low(1), low(2, rule_id="anthropic.noisy.thing"), low(3, dedup_key="org_test")]
    save_alerts(db, alerts)
    destinations = {"soar": webhook(hook.url, digest=DIGEST)}
    with dispatcher(db, clock, destinations) as d:
        assert d.dispatch_pending().silenced == 1
        # A silence set while alerts wait keeps them out as well.
        outbox.add_silence(None, "org_test", clock(), clock() + 86400, "test org", "t", 0)
        clock.sleep(HOUR)
        report = d.dispatch_pending()
        assert (report.sent, report.digested, report.silenced) == (1, 1, 1)
    outbox.close()
    (request,) = hook.requests
    assert [a["alert_id"] for a in request.json()["alerts"]] == [alerts[0].alert_id]
    states = {r[0]: (r[3], r[5]) for r in rows(db) if r[2] == "opened"}
    assert states[alerts[1].alert_id][0] == "silenced"
    assert states[alerts[2].alert_id][0] == "silenced"
    assert "test org" in states[alerts[2].alert_id][1]


def test_every_alert_silenced_sends_no_digest(db, clock, receivers):
    hook = receivers()
    save_alerts(db, [low(1)])
    destinations = {"soar": webhook(hook.url, digest=DIGEST)}
    with dispatcher(db, clock, destinations) as d:
        d.dispatch_pending()
        d.outbox.add_silence("anthropic.*", None, clock(), clock() + 86400, "quiet", "t", 0)
        clock.sleep(HOUR)
        assert d.dispatch_pending().sent == 0
    assert hook.requests == [] and [r[3] for r in rows(db)] == ["silenced"]


def test_console_prints_a_digest_as_one_block(db, clock):
    from engine.config import DestinationConfig

    stream = io.StringIO()
    save_alerts(db, [low(1), low(2), make_alert(3)])
    terminal = {"terminal": DestinationConfig(type="console", digest=DIGEST)}
    with dispatcher(db, clock, terminal, stream=stream) as d:
        assert d.dispatch_pending().sent == 1
        clock.sleep(HOUR)
        assert d.dispatch_pending().sent == 1
    printed = stream.getvalue()
    assert printed.count("[DIGEST]") == 1
    block = printed[printed.index("[DIGEST]") :]
    assert block.startswith("[DIGEST] 2 alerts below MEDIUM · 2027-01-15T08:00:00Z")
    assert "anthropic.sso.disabled · 2 alerts, 2 events" in block
    assert "[LOW] SSO disabled by ana1@example.com · 1 event · al_" in block
    assert "[HIGH] SSO disabled by ana3@example.com" in printed[: printed.index("[DIGEST]")]


def test_replay_deliver_flushes_open_digests_early(db, clock, receivers):
    hook = receivers()
    save_alerts(db, [low(1), low(2)])
    clock.sleep(600)
    config = Config(
        state=StateConfig(path=db), destinations={"soar": webhook(hook.url, digest=DIGEST)}
    )
    report = deliver_pending(config, clock=clock, sleep=clock.sleep)
    assert report.sent == 1 and report.digested == 2 and report.in_digests == 0
    body = hook.requests[0].json()
    assert body["early"] is True
    assert (body["period_start"], body["period_end"]) == (
        "2027-01-15T08:00:00Z",
        "2027-01-15T08:10:00Z",
    )


def test_a_pass_without_flush_leaves_the_open_period_waiting(db, clock, receivers):
    hook = receivers()
    save_alerts(db, [low(1)])
    config = Config(
        state=StateConfig(path=db), destinations={"soar": webhook(hook.url, digest=DIGEST)}
    )
    report = deliver_pending(config, clock=clock, sleep=clock.sleep, flush_digests=False)
    assert report.sent == 0 and report.in_digests == 1 and hook.requests == []


def test_shutdown_of_a_background_dispatcher_flushes(db, receivers):
    hook = receivers()
    save_alerts(db, [low(1), low(2)])
    d = Dispatcher(db, {"soar": webhook(hook.url, digest=DIGEST)})
    d.start(poll_interval=60.0)
    d.close()
    (request,) = hook.requests
    assert request.json()["early"] is True and request.json()["alert_count"] == 2


def test_a_destination_that_stops_batching_sends_the_waiting_alerts_one_by_one(
    db, clock, receivers
):
    hook = receivers()
    save_alerts(db, [low(1), low(2)])
    with dispatcher(db, clock, {"soar": webhook(hook.url, digest=DIGEST)}) as d:
        d.dispatch_pending()
    with dispatcher(db, clock, {"soar": webhook(hook.url)}) as d:
        assert d.dispatch_pending().sent == 2
    assert [r.json()["schema"] for r in hook.requests] == ["detect.alert/v1"] * 2


def test_alerts_list_and_status_show_the_digest_state(db, clock, receivers, capsys):
    from engine.cli.alerts import cmd_list

    hook = receivers()
    save_alerts(db, [low(1)])
    with dispatcher(db, clock, {"soar": webhook(hook.url, digest=DIGEST)}) as d:
        d.dispatch_pending()

    class Args:
        config = None
        state = str(db)
        dead = False
        pending = False
        rule = None
        limit = 20
        format = "text"

    assert cmd_list(Args()) == 0
    out = capsys.readouterr().out
    assert "soar digest (waiting for the period to close)" in out
    assert "outbox: 1 digest" in out
    Args.pending = True
    assert cmd_list(Args()) == 0
    assert "soar  digest (waiting for the period to close)" in capsys.readouterr().out


def test_an_existing_state_file_without_the_digest_column_still_opens(db):
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE deliveries (delivery_id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "alert_id TEXT NOT NULL, destination TEXT NOT NULL, purpose TEXT NOT NULL, "
            "status TEXT NOT NULL, queued_at REAL NOT NULL, next_attempt_at REAL NOT NULL, "
            "attempts INTEGER NOT NULL DEFAULT 0, last_attempt_at REAL, lease_until REAL, "
            "finished_at REAL, http_status INTEGER, reason TEXT NOT NULL DEFAULT '', "
            "notice TEXT NOT NULL DEFAULT '', payload TEXT, event_count INTEGER, "
            "summary_due INTEGER NOT NULL DEFAULT 0, UNIQUE (alert_id, destination, purpose))"
        )
        conn.execute(
            "INSERT INTO deliveries (alert_id, destination, purpose, status, queued_at, "
            "next_attempt_at) VALUES ('al_1', 'soar', 'opened', 'sent', 1, 1)"
        )
    outbox = Outbox(db)
    try:
        (delivery,) = outbox.deliveries(["al_1"])["al_1"]
        assert delivery.status == "sent" and delivery.digest_id is None
        assert outbox.open_digests() == {}
    finally:
        outbox.close()


@pytest.mark.parametrize(
    ("digest", "message"),
    [
        ("{below: info, every: 1h}", "[destinations.soar.digest.below] `below: info`"),
        ("{below: urgent, every: 1h}", "`below` must be one of low, medium, high, critical"),
        ("{below: medium, every: 10s}", "[destinations.soar.digest.every] `every`"),
        ("{below: medium, every: hourly}", "'hourly' is not a duration like 90s"),
        ("{below: medium}", "[destinations.soar.digest.every] required key missing"),
        ("{below: low, every: 1h, at: 9am}", "[destinations.soar.digest.at] unknown key"),
        ("{below: medium, every: 1h}\n    min_severity: medium", "is not above `min_severity"),
    ],
)
def test_the_digest_configuration_is_validated_with_clear_errors(tmp_path, digest, message):
    path = tmp_path / "detect.yaml"
    path.write_text(
        "destinations:\n  soar:\n    type: webhook\n    url: https://soar.example.com/x\n"
        f"    secret: {SECRET}\n    digest: {digest}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message in str(error.value)
    assert f"{path}:" in str(error.value)
    assert SECRET not in str(error.value) and "soar.example.com" not in str(error.value)


def test_a_digest_configuration_loads(tmp_path):
    path = tmp_path / "detect.yaml"
    path.write_text("destinations:\n  t:\n    type: console\n    digest: {below: High, every: 1d}")
    digest = load_config(path).destinations["t"].digest
    assert digest is not None and digest.below == "high" and digest.every.days == 1


def test_two_processes_never_seal_the_same_alerts_twice(db, clock, receivers):
    hook = receivers()
    save_alerts(db, [low(1), low(2)])
    with dispatcher(db, clock, {"soar": webhook(hook.url, digest=DIGEST)}) as d:
        d.dispatch_pending()
    first, second = Outbox(db), Outbox(db)
    try:
        # Both read the waiting alerts; the first to commit wins, the other writes nothing.
        ids = [m.delivery_id for m, _ in first.digest_members("soar", clock() + HOUR)]
        assert [m.delivery_id for m, _ in second.digest_members("soar", clock() + HOUR)] == ids
        assert first.seal_digest("soar", [("dg_a", "{}", ids)], [], clock())
        assert not second.seal_digest("soar", [("dg_b", "{}", ids)], [], clock())
    finally:
        first.close()
        second.close()
    assert [r[0] for r in rows(db) if r[2] == "digest"] == ["dg_a"]


def test_retrying_one_alert_of_a_dead_digest_sends_it_alone(db, clock, receivers):
    state = {"archived": True}
    hook = receivers(
        lambda r: (410, "channel_is_archived", {}) if state["archived"] else (200, "ok", {})
    )
    alerts = [low(1), low(2)]
    save_alerts(db, alerts)
    destinations = {"soar": webhook(hook.url, digest=DIGEST)}
    with dispatcher(db, clock, destinations) as d:
        d.dispatch_pending()
        clock.sleep(HOUR)
        d.dispatch_pending()
        state["archived"] = False
        assert d.outbox.requeue(clock(), alert_id=alerts[0].alert_id) == 1
        assert d.dispatch_pending().sent == 1
    assert hook.requests[-1].json()["alert_id"] == alerts[0].alert_id
    states = {r[0]: r[3] for r in rows(db)}
    assert (states[alerts[0].alert_id], states[alerts[1].alert_id]) == ("sent", "dead")


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from engine.config import load_config
    from engine.delivery.dispatcher import deliver_pending

    deliver_pending(load_config(Path(sys.argv[1])))  # as replay --deliver: flushes
    """
)


def test_sigkill_while_a_digest_part_is_in_flight_loses_and_relists_nothing(
    tmp_path: Path, receivers
):
    """A real process, killed by the receiver the moment the third message of a split
    digest reaches it (so that one is in flight: received, never recorded)."""
    child: dict[str, subprocess.Popen[bytes]] = {}

    def kill_on_the_third(request):
        if len(hook.requests) == 3:
            child["process"].send_signal(signal.SIGKILL)
            child["process"].wait(timeout=10)
        return slack_like(request)

    hook = receivers(kill_on_the_third)
    config_path = tmp_path / "detect.yaml"
    config_path.write_text(
        "state: {path: state.db}\n"
        "destinations:\n"
        "  secops:\n"
        "    type: slack\n"
        f"    url: {hook.url}\n"
        "    max_messages_per_second: 50\n"
        "    digest: {below: medium, every: 1h}\n"
    )
    db = tmp_path / "state.db"
    alerts = [low(i, title=f"Routine change {i} by user{i}@example.com " * 3) for i in range(300)]
    save_alerts(db, alerts)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), env.get("PYTHONPATH", "")])
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(config_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    child["process"] = process
    try:
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            errors = process.stderr.read().decode(errors="replace")
            process.stderr.close()
    assert process.returncode == -signal.SIGKILL, errors
    assert len(hook.requests) == 3
    sealed = [r for r in rows(db) if r[2] == "digest"]
    parts = len(sealed)
    assert parts > 3 and [r[3] for r in sealed[:2]] == ["sent", "sent"]
    assert {r[3] for r in sealed[2:]} == {"pending"}

    # Restart: a fresh process's dispatcher, its clock past the dead one's claim.
    clock = FakeClock(time.time() + 60)
    config = load_config(config_path)
    report = deliver_pending(config, clock=clock, sleep=clock.sleep)
    assert report.sent == parts - 2 and report.dead == 0 and report.pending == 0
    bodies = [r.body for r in hook.requests]
    # Only the message in flight at the kill arrives twice, byte for byte.
    assert len(bodies) == parts + 1 and bodies[2] == bodies[3]
    assert len(set(bodies)) == parts
    listed = [i for body in dict.fromkeys(bodies) for i in listed_ids(json.loads(body))]
    assert Counter(listed) == Counter(a.alert_id for a in alerts)
    assert {r[3] for r in rows(db)} == {"sent"}
