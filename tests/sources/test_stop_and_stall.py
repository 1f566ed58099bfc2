"""Issue 18, the last rule-isolation items: `detect run` stops between two activities on
SIGTERM (the half-evaluated page is dropped, not committed, and read again on the next
start), and a pipeline that makes no progress while activities wait shows in `detect
status` and raises a `source_health` alert."""

from __future__ import annotations

import json
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
import json
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
    print(f"the stop took {took:.2f} s")
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


BLOCKING_RULE = """\
import os
import time

RELEASE = os.environ.get("RELEASE_FILE")
blocked = []


def rule(event):
    if RELEASE and not blocked:
        blocked.append(True)
        # Stuck past its budget: the budget's interruption is swallowed every time, as
        # native code that never returns to Python would never see it.
        while not os.path.exists(RELEASE):
            try:
                time.sleep(0.02)
            except BaseException:
                pass
    return False
"""


class _Runner:
    """What the watchdog looks at: the pipeline's progress, the page in hand, health."""

    def __init__(self, health) -> None:
        self.pipeline = type("P", (), {"progress": 0})()
        self.in_hand = 0
        self.health = health


class _Health:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def stalled(self, now, since, pending, after) -> None:
        self.calls.append(("stalled", now - since, pending))

    def progressing(self, now) -> None:
        self.calls.append(("progressing",))


def test_the_watchdog_opens_a_stall_after_its_threshold_and_closes_it(tmp_path):
    from datetime import timedelta

    from engine.runs.live import Watchdog

    clock = [1_000.0]
    health = _Health()
    runner = _Runner(health)
    path = tmp_path / "state.db.pipeline"
    dog = Watchdog(runner, after=timedelta(minutes=5), path=path, clock=lambda: clock[0])
    assert dog.interval == 10.0
    runner.in_hand = 800
    runner.pipeline.progress = 3
    assert not dog.check()
    clock[0] += 299
    assert not dog.check()  # stuck 4m59s: not yet
    clock[0] += 1
    assert dog.check()
    assert health.calls == [("stalled", timedelta(minutes=5), 800)]
    clock[0] += 60
    assert dog.check() and len(health.calls) == 1  # one episode, one alert
    record = json.loads(path.read_text())
    assert record["stalled"] and record["pending"] == 800 and record["pid"] == os.getpid()
    runner.pipeline.progress += 1
    assert not dog.check()
    assert health.calls[-1] == ("progressing",)
    # Nothing pending is never a stall, however long the page takes to arrive.
    runner.in_hand = 0
    clock[0] += 3600
    assert not dog.check()
    dog.stop()
    assert not path.exists()


def test_a_rule_stuck_past_its_budget_shows_in_status_and_raises_a_stalled_alert(
    start_mock, tmp_path
):
    items = feed(40, seed=12)
    old = activity("activity_0000before", datetime(2025, 1, 1, tzinfo=UTC))
    mock = start_mock([old, *items])
    rules = tmp_path / "blocking_rules"
    rules.mkdir()
    (rules / "blocks.py").write_text(BLOCKING_RULE, encoding="utf-8")
    (rules / "blocks.yml").write_text(
        "id: t.blocks\nname: blocks\nseverity: low\npython: blocks.py\n", encoding="utf-8"
    )
    config = _config(
        tmp_path, mock.url, [RULES, rules], lookback='"300d"', stall_alert_after='"1s"'
    )
    release = tmp_path / "release"
    env = {**os.environ, "TEST_COMPLIANCE_KEY": KEY, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--config", str(config)],
        env={**env, "RELEASE_FILE": str(release)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    status_command = [sys.executable, "-m", "engine", "status", "--config", str(config)]
    try:
        shown = {}

        def stalled() -> bool:
            done = subprocess.run(
                status_command,
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                check=False,
            )
            shown["text"] = done.stdout
            return "stalled for" in done.stdout

        try:
            _wait_for(stalled, timeout=15, step=0.2)
        except AssertionError:
            proc.kill()
            raise AssertionError(shown.get("text", "") + proc.communicate()[1]) from None
        (line,) = [row for row in shown["text"].splitlines() if row.startswith("pipeline")]
        assert "40 activities pending since" in line, line
        release.touch()
        state = tmp_path / "state.db"

        def evaluated() -> bool:
            source = db_meta(state, "source") if state.exists() else None
            return bool(source) and source.get("activities") == len(items)

        _wait_for(evaluated, timeout=30, step=0.1)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert "the pipeline moves again" in err
    (stall,) = [a for a in db_alerts(state).values() if a["rule_id"] == "source_health.stalled"]
    assert stall["kind"] == "source_health" and stall["notify"]
