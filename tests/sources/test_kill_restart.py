"""SIGKILL a real `detect run --once` at several points of a backfill, restart it, and
prove nothing was skipped and nothing was evaluated twice: the alerts (ids and event
counts) equal `detect replay` of the same feed, and exactly every activity was counted."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime

from .conftest import KEY, activity, db_alerts, db_meta, feed, replay_alerts, write_config


def test_sigkill_at_many_points_loses_nothing_and_doubles_nothing(start_mock, ruleset, tmp_path):
    items = feed(4000, seed=9)
    # An activity long before the lookback, so the backfill pages (100 at a time) from an
    # anchor instead of reading one big first page.
    old = activity("activity_0000before", datetime(2025, 1, 1, tzinfo=UTC))
    mock = start_mock([old, *items])  # the real clock: the feed lies months in the past
    config = write_config(tmp_path, mock.url, lookback="300d", page_size=100)
    env = {**os.environ, "TEST_COMPLIANCE_KEY": KEY, "NO_COLOR": "1"}
    command = [sys.executable, "-m", "engine", "run", "--once", "--config", str(config)]
    rng = random.Random(20260504)
    outcomes = []
    # Requests into each run (an anchor query, then one page of 100 per request): about
    # 30 of the 41 pages, so every run is killed before it can finish.
    for point in (3, 7, 2, 9, 5, 6):
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        target = len(mock.requests) + point
        # Kill a few milliseconds after the API answered: mid-evaluation, mid-commit or
        # mid-request, wherever the process happens to be.
        delay = rng.uniform(0.0, 0.03)

        def kill(request, proc=proc, target=target, delay=delay):
            if request.number == target:
                threading.Timer(delay, proc.kill).start()

        mock.on_request = kill
        out, err = proc.communicate(timeout=60)
        outcomes.append(proc.returncode)
        assert KEY not in out and KEY not in err
    mock.on_request = None
    assert outcomes.count(-signal.SIGKILL) >= 5, outcomes

    final = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert final.returncode == 0, final.stderr
    assert KEY not in final.stdout + final.stderr

    state = tmp_path / "state.db"
    live = {
        alert_id: row["event_count"]
        for alert_id, row in db_alerts(state).items()
        if row["kind"] == "detection"
    }
    assert live == replay_alerts(items, ruleset, tmp_path)
    assert db_meta(state, "source")["activities"] == len(items)
