"""Every new HTTP destination through 429 with Retry-After and 5xx: each alert accepted
exactly once, none early, the same body on every attempt; and a SIGKILLed dispatcher
whose restart loses nothing and repeats at most the message in flight, under the same
idempotency id (PagerDuty's dedup_key, the email Message-ID)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from engine.config import load_config
from engine.delivery.dispatcher import Dispatcher
from tests.delivery.conftest import SECRET, FakeClock, Request, make_alert, save_alerts
from tests.delivery.destinations import destination, hostile_alert, run

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


def _kill_mid_batch(config_path: Path, received, env: dict[str, str]) -> None:
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
        while received() < 10 and time.monotonic() < give_up:
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


def test_pagerduty_survives_sigkill_duplicates_share_the_dedup_key(tmp_path, receivers):
    hook = receivers(lambda r: (202, '{"status":"success"}', {}))
    config_path = tmp_path / "detect.yaml"
    config_path.write_text(
        "state: {path: state.db}\n"
        "destinations:\n"
        "  pager:\n"
        "    type: pagerduty\n"
        f"    url: {hook.url}\n"
        "    routing_key: ${PD_KEY}\n"
        "    max_messages_per_second: 40\n"
    )
    db = tmp_path / "state.db"
    alerts = [make_alert(i) for i in range(40)]
    save_alerts(db, alerts)
    _kill_mid_batch(config_path, lambda: len(hook.requests), {"PD_KEY": KEY})
    before = len(hook.requests)
    assert 10 <= before < 40, "the kill must land mid-batch"
    config = load_config(config_path, environ={"PD_KEY": KEY})
    clock = FakeClock(time.time())
    with Dispatcher(db, config, clock=clock, sleep=clock.sleep) as dispatcher:
        assert dispatcher.dispatch_pending().dead == 0
    keys = Counter(r.json()["dedup_key"] for r in hook.requests)
    assert set(keys) == {a.alert_id for a in alerts}
    assert sum(keys.values()) - len(alerts) <= 1  # only the one in flight, same dedup_key


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
        _kill_mid_batch(config_path, lambda: len(box.messages), {})
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
