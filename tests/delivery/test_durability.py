"""A real crash: the dispatcher process is SIGKILLed mid-batch and another one resumes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from engine.config import load_config
from engine.delivery.dispatcher import Dispatcher
from tests.delivery.conftest import SECRET, FakeClock, make_alert, save_alerts

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


def test_sigkill_mid_batch_then_restart_loses_nothing_and_repeats_nothing_sent(
    tmp_path: Path, receivers
):
    hook = receivers()
    config_path = tmp_path / "detect.yaml"
    config_path.write_text(
        "state: {path: state.db}\n"
        "destinations:\n"
        "  soar:\n"
        "    type: webhook\n"
        f"    url: {hook.url}\n"
        "    secret: ${HOOK_SECRET}\n"
        "    max_messages_per_second: 40\n"
        "    max_burst: 1\n"
    )
    db = tmp_path / "state.db"
    alerts = [make_alert(i) for i in range(60)]
    save_alerts(db, alerts)
    env = {**os.environ, "HOOK_SECRET": SECRET}
    env["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), env.get("PYTHONPATH", "")])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(config_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        give_up = time.monotonic() + 20
        while len(hook.requests) < 15 and time.monotonic() < give_up:
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
    received_before = len(hook.requests)
    assert 15 <= received_before < 60, "the kill must land mid-batch"
    with sqlite3.connect(db) as conn:
        sent = {
            row[0] for row in conn.execute("SELECT alert_id FROM deliveries WHERE status = 'sent'")
        }
    assert len(sent) >= received_before - 1

    # Restart (the clock moves past any lease the dead process held).
    config = load_config(config_path, environ={"HOOK_SECRET": SECRET})
    clock = FakeClock(time.time())
    with Dispatcher(db, config, clock=clock, sleep=clock.sleep) as dispatcher:
        report = dispatcher.dispatch_pending()
    assert report.pending == 0 and report.dead == 0
    after = [r.json()["alert_id"] for r in hook.requests[received_before:]]
    assert not sent.intersection(after), "a delivery marked sent was sent again"
    everything = [r.json()["alert_id"] for r in hook.requests]
    assert set(everything) == {a.alert_id for a in alerts}
    # At-least-once: only an attempt in flight at the kill can arrive twice.
    assert len(everything) - len(alerts) <= 1
