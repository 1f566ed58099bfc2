"""Issue 18, the last rule-isolation items: `detect run` stops between two activities on
SIGTERM (the half-evaluated page is dropped, not committed, and read again on the next
start), and a pipeline that makes no progress while activities wait shows in `detect
status` and raises a `source_health` alert."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.rule_formats import load_rules

from .conftest import KEY, RULES, activity, db_alerts, db_meta, feed, replay_alerts

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")

SLOW_RULE = """\
import os
import time

PAUSE = float(os.environ.get("SLOW_RULE_SECONDS", "0"))


def rule(event):
    time.sleep(PAUSE)
    return event.get("type") == "claude_chat_viewed"
"""


def _slow_rules(tmp_path: Path) -> Path:
    rules = tmp_path / "slow_rules"
    rules.mkdir()
    (rules / "slow.py").write_text(SLOW_RULE, encoding="utf-8")
    (rules / "slow.yml").write_text(
        "id: t.slow\nname: slow\nseverity: low\npython: slow.py\n"
        'title: "{actor.email_address} viewed a chat"\n'
        'dedup:\n  key: "{actor.user_id}"\n  window: 1h\n',
        encoding="utf-8",
    )
    return rules


def _config(tmp_path: Path, url: str, rules: list[Path], **source: str | int) -> Path:
    lines = ["source:", f"  base_url: {url}", "  api_key: ${TEST_COMPLIANCE_KEY}"]
    lines += [f"  {key}: {value}" for key, value in source.items()]
    lines += ["rules:", *(f"  - {rule_dir}" for rule_dir in rules)]
    lines += [
        "state:",
        f"  path: {tmp_path / 'state.db'}",
        f"quarantine: {tmp_path / 'quarantine.jsonl'}",
    ]
    path = tmp_path / "detect.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _wait_for(condition, timeout: float, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(step)


def test_sigterm_stops_between_two_activities_and_a_restart_evaluates_the_rest(
    start_mock, tmp_path
):
    items = feed(150, seed=11)
    old = activity("activity_0000before", datetime(2025, 1, 1, tzinfo=UTC))
    mock = start_mock([old, *items])
    slow = _slow_rules(tmp_path)
    config = _config(tmp_path, mock.url, [RULES, slow], lookback='"300d"', page_size=30)
    env = {**os.environ, "TEST_COMPLIANCE_KEY": KEY, "NO_COLOR": "1"}
    command = [sys.executable, "-m", "engine", "run", "--config", str(config)]
    # 0.2 s per activity, under the 1 s budget: a page of 30 takes 6 s.
    proc = subprocess.Popen(
        command,
        env={**env, "SLOW_RULE_SECONDS": "0.2"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The anchor query, the first page, and the second page's request: the first
        # page is committed, the second is being evaluated.
        _wait_for(lambda: len(mock.requests) >= 3, timeout=30)
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert took < 5, f"the stop took {took:.1f} s"
    assert "Traceback" not in err, err
    assert "not committed" in err
    state = tmp_path / "state.db"
    committed = db_meta(state, "source")["activities"]
    assert committed % 30 == 0 and 30 <= committed < len(items)

    final = subprocess.run(
        [*command, "--once"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert final.returncode == 0, final.stderr
    live = {
        alert_id: row["event_count"]
        for alert_id, row in db_alerts(state).items()
        if row["kind"] == "detection"
    }
    assert any(row["rule_id"] == "t.slow" for row in db_alerts(state).values())
    assert live == replay_alerts(items, load_rules([RULES, slow]), tmp_path)
    assert db_meta(state, "source")["activities"] == len(items)
