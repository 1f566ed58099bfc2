"""`detect run --metrics-port`: `/metrics` in the Prometheus text format and `/healthz`.

A real `detect run` process polls the mock API while the test scrapes it with a real HTTP
client: the counters move as activities arrive, and `/healthz` turns 503 while the API is
scripted to fail and 200 again once it answers. The same figures in process, on an
injected clock, pin the values that depend on time (poll lag, silence, the stall)."""

from __future__ import annotations

import io
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from engine.config import Config
from engine.rule_formats import load_rules
from engine.runs import build
from engine.runs.live import Watchdog, build_runner
from engine.runs.metrics import Family, LiveMetrics, MetricsServer, exposition
from engine.tools.mock_api import MockComplianceAPI, ScriptedResponse

from .sources.conftest import KEY, RULES, FakeClock, activity

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The exposition format, strictly: every sample after its family's HELP and TYPE,
    families contiguous and declared once, counters named `_total`, names and label
    values well formed, no series twice. {(name, labels): value}."""
    assert text.endswith("\n")
    helped: set[str] = set()
    types: dict[str, str] = {}
    current = None
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert NAME.fullmatch(name) and name not in helped and help_text, line
            helped.add(name)
            current = name
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name == current and name not in types, line
            assert kind in ("counter", "gauge"), line
            assert name.endswith("_total") == (kind == "counter"), line
            types[name] = kind
        else:
            match = SAMPLE.fullmatch(line)
            assert match, f"not a sample: {line!r}"
            name, labels_text, value = match.groups()
            assert name == current and name in types, f"{name} outside its family"
            assert name.startswith("detect_")
            labels: list[tuple[str, str]] = []
            if labels_text:
                rest = labels_text
                while rest:
                    label = LABEL.match(rest)
                    assert label, f"bad labels in {line!r}"
                    raw = label.group(2)
                    unescaped = re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m[1], m[1]), raw)
                    labels.append((label.group(1), unescaped))
                    rest = rest[label.end() :]
                    assert rest == "" or rest.startswith(","), line
                    rest = rest[1:]
            number = float(value)
            assert not math.isnan(number), line
            key = (name, tuple(labels))
            assert key not in samples, f"{key} twice"
            samples[key] = number
    return samples


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(labels.items())))


def test_label_values_are_escaped_and_read_back():
    family = Family("detect_rule_matches_total", "counter", "back\\slash\nand a line")
    family.add(3, rule='a "quoted" \\ rule\nwith a line')
    text = exposition([family])
    assert '{rule="a \\"quoted\\" \\\\ rule\\nwith a line"} 3' in text
    assert "# HELP detect_rule_matches_total back\\\\slash\\nand a line" in text
    assert parse(text) == {
        ("detect_rule_matches_total", (("rule", 'a "quoted" \\ rule\nwith a line'),)): 3
    }


def test_health_and_time_figures_on_an_injected_clock(tmp_path):
    """Before the first poll 503; after it 200, with poll lag and silence exact on the
    clock; a failing API 503 with the reason (the key never shown); a stall 503."""
    newest = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    items = [
        activity("activity_01", newest - timedelta(minutes=3), "claude_chat_deleted"),
        activity("activity_02", newest, "org_sso_toggled"),
    ]
    clock = FakeClock(newest + timedelta(minutes=30))
    mock = MockComplianceAPI(items, api_key=KEY, clock=clock).start()
    try:
        config = Config.model_validate(
            {
                "source": {
                    "base_url": mock.url,
                    "api_key": KEY,
                    "lookback": "1d",
                    "max_retries": 0,
                },
                "state": {"path": str(tmp_path / "state.db")},
                "destinations": {"terminal": {"type": "console"}},
            }
        )
        store = build.open_store(config.state.path)
        dispatcher = build.dispatcher(config, io.StringIO(), clock=clock, sleep=clock.sleep)
        runner = build_runner(config, load_rules([RULES]), store, clock=clock, sleep=clock.sleep)
        watchdog = Watchdog(runner, after=timedelta(seconds=60), clock=clock)
        view = LiveMetrics(
            runner,
            watchdog=watchdog,
            dispatcher=dispatcher,
            state=config.state.path,
            destinations=config.destinations,
            clock=clock,
        )
        server = MetricsServer("127.0.0.1", 0).serve(view)
        try:
            health = requests.get(f"{server.url}/healthz", timeout=5)
            assert health.status_code == 503
            assert health.json()["reason"] == "no successful poll yet"

            assert runner.cycle().ok
            dispatcher.dispatch_pending()
            health = requests.get(f"{server.url}/healthz", timeout=5)
            assert health.status_code == 200, health.text
            scraped = requests.get(f"{server.url}/metrics", timeout=5)
            assert scraped.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            samples = parse(scraped.text)
            assert value(samples, "detect_activities_read_total") == 2
            assert value(samples, "detect_rule_matches_total", rule="ingest.admin_change") == 1
            assert value(samples, "detect_rule_matches_total", rule="ingest.upload_burst") == 0
            assert value(samples, "detect_alerts_total", severity="high") == 1
            assert value(samples, "detect_alerts_total", severity="low") == 1
            assert value(samples, "detect_delivery_attempts_total", destination="terminal") == 2
            assert value(samples, "detect_delivery_failures_total", destination="terminal") == 0
            assert value(samples, "detect_outbox_pending", destination="terminal") == 0
            assert value(samples, "detect_source_silence_seconds") == 30 * 60
            # The checkpoint settles `overlap` (10 minutes) behind the pass's start.
            assert value(samples, "detect_poll_lag_seconds") == 10 * 60
            assert value(samples, "detect_up") == 1
            assert value(samples, "detect_build_info", version=_version()) == 1

            clock.advance(90)
            mock.script(ScriptedResponse(500))
            assert not runner.cycle().ok
            health = requests.get(f"{server.url}/healthz", timeout=5)
            assert health.status_code == 503
            assert health.json()["reason"].startswith("polling is failing since 2026-05-04T12:31")
            assert KEY not in health.text
            assert (
                value(parse(requests.get(f"{server.url}/metrics", timeout=5).text), "detect_up")
                == 0
            )

            assert runner.cycle().ok
            assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
            runner.in_hand = 500  # a page in hand, and no progress for the threshold
            watchdog.check()
            clock.advance(61)
            assert watchdog.check()
            health = requests.get(f"{server.url}/healthz", timeout=5)
            assert health.status_code == 503 and "stalled" in health.json()["reason"]
            samples = parse(requests.get(f"{server.url}/metrics", timeout=5).text)
            assert value(samples, "detect_pipeline_stalled") == 1
            assert requests.get(f"{server.url}/other", timeout=5).status_code == 404
        finally:
            server.close()
            dispatcher.close()
            store.close()
    finally:
        mock.stop()


def _version() -> str:
    from engine import __version__

    return __version__


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "detect.yaml"
    path.write_text(
        f"""source:
  base_url: {url}
  api_key: ${{TEST_COMPLIANCE_KEY}}
  poll_interval: 1s
  lookback: 1d
  max_retries: 0
rules: [{json.dumps(str(RULES))}]
state:
  path: state.db
quarantine: quarantine.jsonl
destinations:
  terminal:
    type: console
""",
        encoding="utf-8",
    )
    return path


class Lines:
    """A process's stderr, read line by line on a thread."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def find(self, pattern: str) -> re.Match[str] | None:
        for line in list(self.lines):
            if found := re.search(pattern, line):
                return found
        return None


def _until(condition, timeout: float = 20.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        time.sleep(step)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_a_real_detect_run_serves_moving_counters_and_its_health(tmp_path):
    start = datetime.now(tz=UTC) - timedelta(hours=2)
    first = [
        activity(f"activity_a{i:03d}", start + timedelta(seconds=i), "claude_chat_viewed")
        for i in range(20)
    ]
    mock = MockComplianceAPI(first, api_key=KEY).start()
    env = {**os.environ, "TEST_COMPLIANCE_KEY": KEY, "NO_COLOR": "1"}
    for name in ("DETECT_LOG_LEVEL", "DETECT_LOG_FORMAT"):
        env.pop(name, None)
    config = _config(tmp_path, mock.url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--metrics-port", "0", "--config", str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        err = Lines(proc.stderr)
        url = _until(lambda: err.find(r"metrics: (http://\S+)/metrics"))[1]
        assert err.lines[0] == f"rules: {RULES} (6): 6 active [rules: in the configuration]"

        def scrape() -> dict:
            response = requests.get(f"{url}/metrics", timeout=5)
            assert response.status_code == 200
            return parse(response.text)

        _until(lambda: requests.get(f"{url}/healthz", timeout=5).status_code == 200)
        before = _until(
            lambda: (s := scrape()) and s[("detect_activities_read_total", ())] == 20 and s
        )
        assert value(before, "detect_alerts_total", severity="high") == 0
        assert value(before, "detect_rule_matches_total", rule="ingest.admin_change") == 0

        mock.extend(
            [
                activity("activity_b001", start + timedelta(minutes=5), "org_sso_toggled"),
                activity("activity_b002", start + timedelta(minutes=6), "claude_chat_deleted"),
            ]
        )
        after = _until(
            lambda: (s := scrape()) and s[("detect_activities_read_total", ())] == 22 and s
        )
        assert value(after, "detect_rule_matches_total", rule="ingest.admin_change") == 1
        assert value(after, "detect_alerts_total", severity="high") == 1
        assert value(after, "detect_alerts_total", severity="low") == 1
        _until(
            lambda: value(scrape(), "detect_delivery_attempts_total", destination="terminal") == 2
        )

        mock.script(ScriptedResponse(503, message="scripted outage"))
        # (a Response is falsy on a 503: the body is what is returned)
        failing = _until(
            lambda: (r := requests.get(f"{url}/healthz", timeout=5)).status_code == 503 and r.json()
        )
        assert "polling is failing" in failing["reason"]
        _until(lambda: requests.get(f"{url}/healthz", timeout=5).status_code == 200)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        mock.stop()
    assert "Traceback" not in "\n".join(err.lines)
    assert KEY not in "\n".join(err.lines)


@pytest.mark.parametrize("where", ["flag", "config"])
def test_a_busy_metrics_port_stops_the_start_in_one_line(where, tmp_path, capsys, monkeypatch):
    """From --metrics-port or from `metrics:` in detect.yaml."""
    from engine.cli import main

    monkeypatch.setenv("TEST_COMPLIANCE_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with MockComplianceAPI(api_key=KEY) as mock:
            config = _config(tmp_path, mock.url)
            command = ["run", "--once", "--config", str(config)]
            if where == "flag":
                command += ["--metrics-port", str(port)]
            else:
                with config.open("a", encoding="utf-8") as handle:
                    handle.write(f"metrics:\n  port: {port}\n  address: 127.0.0.1\n")
            assert main(command) == 2
            assert not mock.requests
    finally:
        taken.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"]
