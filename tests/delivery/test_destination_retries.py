"""Every new HTTP destination through 429 with Retry-After and 5xx: each alert accepted
exactly once, none early, the same body on every attempt; and a SIGKILLed dispatcher
whose restart loses nothing and repeats only the message in flight, with the same body
and under the same idempotency id where the service has one (PagerDuty's dedup_key,
Google Chat's thread key, the signed templated webhook's webhook-id, the email
Message-ID; Teams has none)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from engine.config import load_config
from engine.delivery.dispatcher import Dispatcher
from engine.delivery.google_chat import thread_key
from engine.delivery.webhook import message_id, verify
from tests.delivery.conftest import SECRET, FakeClock, Request, make_alert, save_alerts
from tests.delivery.destinations import (
    chat_problem,
    destination,
    hostile_alert,
    pagerduty_problem,
    run,
    teams_problem,
)

KEY = "R0UTINGKEY0123456789abcdefABCDEF"
ALERT_ID = re.compile(rb"al_[0-9a-f]{24}")

CONFIGS = {
    "teams": {},
    "google_chat": {},
    "pagerduty": {"routing_key": KEY},
    "templated_webhook": {"template": {"id": "{alert_id}", "text": "{title}"}, "secret": SECRET},
}


class Flaky:
    """429 (Retry-After: 3) to every 4th request, 503 to the next, else accepted."""

    def __init__(self) -> None:
        self.count = 0
        self.accepted: list[bytes] = []
        self.answers: list[tuple[float, int]] = []

    def __call__(self, request: Request):
        self.count += 1
        if self.count % 4 == 1:
            self.answers.append((request.at, 429))
            return 429, '{"error": "rate limited"}', {"Retry-After": "3"}
        if self.count % 4 == 2:
            self.answers.append((request.at, 503))
            return 503, "Service Unavailable", {}
        self.answers.append((request.at, 202))
        self.accepted.append(ALERT_ID.search(request.body).group(0))
        return 202, "", {}


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_429_and_5xx_each_alert_accepted_once(db, clock, receivers, kind):
    flaky = Flaky()
    hook = receivers(flaky)
    alerts = [hostile_alert(i) for i in range(12)]
    save_alerts(db, alerts)
    config = destination(kind, url=hook.url, max_messages_per_second=50, **CONFIGS[kind])
    report = run(db, clock, {kind: config})
    assert report.sent == 12 and report.dead == 0 and report.pending == 0
    assert Counter(flaky.accepted) == Counter(a.alert_id.encode() for a in alerts)
    for (at, status), (next_at, _) in zip(flaky.answers, flaky.answers[1:], strict=False):
        if status == 429:
            assert next_at - at >= 3, "sent again before Retry-After"
    by_alert: dict[bytes, set[bytes]] = {}
    for request in hook.requests:
        by_alert.setdefault(ALERT_ID.search(request.body).group(0), set()).add(request.body)
    assert all(len(bodies) == 1 for bodies in by_alert.values()), "a retry changed the body"


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from engine.config import load_config
    from engine.delivery.dispatcher import Dispatcher

    config = load_config(Path(sys.argv[1]))
    with Dispatcher(config.state.path, config) as dispatcher:
        dispatcher.dispatch_pending()
    """
)


def _kill_mid_batch(config_path: Path, ready, env: dict[str, str]) -> None:
    """Run a dispatcher process and SIGKILL it as soon as `ready()`."""
    env = {**os.environ, **env}
    env["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), env.get("PYTHONPATH", "")])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(config_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        give_up = time.monotonic() + 20
        while not ready() and time.monotonic() < give_up:
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL


class HoldOne:
    """Answers like the service, except that the `hold_at`th request is kept waiting (the
    dispatcher's one request in flight) until `release`: the SIGKILL lands mid-request."""

    def __init__(self, answer, hold_at: int) -> None:
        self.answer = answer
        self.hold_at = hold_at
        self.count = 0
        self.held = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, request: Request):
        with self._lock:
            self.count += 1
            hold = self.count == self.hold_at
        if hold:
            self.held.set()
            self.release.wait(30)
        return self.answer(request)


def _header(request: Request, name: str) -> str:
    return {k.lower(): v for k, v in request.headers.items()}[name]


def _schema_checked(problem, status: int, body: str):
    def answer(request: Request):
        reason = problem(request)
        return (400, reason, {}) if reason else (status, body, {})

    return answer


def _alert_in_body(request: Request) -> str:
    return ALERT_ID.search(request.body).group(0).decode()


def _signed_webhook_id(request: Request) -> str:
    stamp = int(_header(request, "webhook-timestamp"))
    assert verify(SECRET, request.headers, request.body, now=stamp), "bad signature"
    return _header(request, "webhook-id")


# kind: (extra config, env, the receiver's answer, the alert a request carries, the
# idempotency id it carries (None: the service has none), that id for an alert)
SIGKILL_CASES = {
    "pagerduty": (
        {"routing_key": "${PD_KEY}"},
        {"PD_KEY": KEY},
        _schema_checked(lambda r: pagerduty_problem(r, KEY), 202, '{"status":"success"}'),
        lambda r: r.json()["dedup_key"],
        lambda r: r.json()["dedup_key"],
        lambda alert, name: alert.alert_id,
    ),
    "teams": (
        {},
        {},
        _schema_checked(teams_problem, 202, ""),
        _alert_in_body,
        None,
        None,
    ),
    "google_chat": (
        {},
        {},
        _schema_checked(chat_problem, 200, '{"name": "spaces/AAA/messages/BBB"}'),
        _alert_in_body,
        lambda r: r.json()["thread"]["threadKey"],
        lambda alert, name: thread_key(alert.to_state()),
    ),
    "templated_webhook": (
        {"template": {"id": "{alert_id}", "text": "{title}"}, "secret": "${HOOK_SECRET}"},
        {"HOOK_SECRET": SECRET},
        lambda r: (200, "ok", {}),
        lambda r: r.json()["id"],
        _signed_webhook_id,
        lambda alert, name: message_id(alert.alert_id, name),
    ),
}


@pytest.mark.parametrize("kind", sorted(SIGKILL_CASES))
def test_http_destination_survives_sigkill_only_the_message_in_flight_repeats(
    tmp_path, receivers, kind
):
    extra, env, answer, alert_of, idempotency_id, expected_id = SIGKILL_CASES[kind]
    receiver = HoldOne(answer, hold_at=10)
    hook = receivers(receiver)
    name = f"to-{kind}"
    config_path = tmp_path / "detect.yaml"
    destination = {"type": kind, "url": hook.url, "max_messages_per_second": 40, **extra}
    config_path.write_text(
        yaml.safe_dump({"state": {"path": "state.db"}, "destinations": {name: destination}})
    )
    db = tmp_path / "state.db"
    alerts = [make_alert(i) for i in range(30)]
    save_alerts(db, alerts)
    try:
        _kill_mid_batch(config_path, receiver.held.is_set, env)
    finally:
        receiver.release.set()
    before = list(hook.requests)
    assert len(before) == 10, "the kill must land while the 10th request is in flight"
    in_flight = alert_of(before[-1])
    with sqlite3.connect(db) as conn:
        sent = {r[0] for r in conn.execute("SELECT alert_id FROM deliveries WHERE status='sent'")}
    assert sent == {alert_of(r) for r in before[:-1]} and in_flight not in sent

    config = load_config(config_path, environ=env)
    clock = FakeClock(time.time())
    with Dispatcher(db, config, clock=clock, sleep=clock.sleep) as dispatcher:
        report = dispatcher.dispatch_pending()
    assert report.dead == 0 and report.pending == 0

    after = hook.requests[len(before) :]
    assert not sent & {alert_of(r) for r in after}, "a delivery marked sent was sent again"
    by_alert: dict[str, list[Request]] = {}
    for request in hook.requests:
        by_alert.setdefault(alert_of(request), []).append(request)
    assert set(by_alert) == {a.alert_id for a in alerts}, "an alert was lost"
    repeated = {alert_id for alert_id, copies in by_alert.items() if len(copies) > 1}
    assert repeated == {in_flight}, "only the message in flight at the kill may repeat"
    first, again = by_alert[in_flight]
    assert again.body == first.body
    if idempotency_id is not None:
        ids = {a.alert_id: expected_id(a, name) for a in alerts}
        assert len(set(ids.values())) == len(alerts)
        for alert_id, copies in by_alert.items():
            assert {idempotency_id(c) for c in copies} == {ids[alert_id]}
        assert idempotency_id(again) == idempotency_id(first)


def test_email_survives_sigkill_duplicates_share_the_message_id(tmp_path):
    pytest.importorskip("aiosmtpd")
    from aiosmtpd.controller import Controller

    from tests.delivery.conftest import free_port
    from tests.delivery.test_email import Mailbox

    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        config_path = tmp_path / "detect.yaml"
        config_path.write_text(
            "state: {path: state.db}\n"
            "destinations:\n"
            "  mail:\n"
            "    type: email\n"
            "    max_messages_per_second: 40\n"
            f"    smtp: {{host: 127.0.0.1, port: {port}, security: none, "
            "from: detect@example.com, to: [secops@example.com]}\n"
        )
        db = tmp_path / "state.db"
        alerts = [make_alert(i) for i in range(40)]
        save_alerts(db, alerts)
        _kill_mid_batch(config_path, lambda: len(box.messages) >= 10, {})
        assert 10 <= len(box.messages) < 40
        config = load_config(config_path)
        clock = FakeClock(time.time())
        with Dispatcher(db, config, clock=clock, sleep=clock.sleep) as dispatcher:
            assert dispatcher.dispatch_pending().dead == 0
    finally:
        controller.stop()
    ids = Counter(m["Message-ID"] for m in box.messages)
    assert set(ids) == {f"<{a.alert_id}_mail@detect.invalid>" for a in alerts}
    assert sum(ids.values()) - len(alerts) <= 1
