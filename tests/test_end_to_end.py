"""The whole product as a user runs it: `detect run --once` polls a Compliance API (the
mock, on loopback), evaluates the shipped rules and delivers to a Slack-like receiver and
a signed webhook, both real HTTP servers; a second run sends nothing twice."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.resources import bundled_rules_dir, demo_feed_path
from engine.tools.mock_api import MockComplianceAPI

KEY = "sk-ant-test-e2e-very-distinctive-key-0123456789"
SECRET = "an-e2e-signing-secret-of-plenty-bytes"
SEVERE = ("high", "critical")


class Recorder:
    """An HTTP receiver that answers 200 `ok` and keeps every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                recorder.requests.append((dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    slack, webhook = Recorder(), Recorder()
    yield slack, webhook
    slack.stop()
    webhook.stop()


def _config(tmp_path: Path, api: str, slack: str, webhook: str) -> Path:
    path = tmp_path / "detect.yaml"
    path.write_text(
        f"""
source:
  base_url: {api}
  api_key: ${{E2E_KEY}}
  lookback: 2000d
rules: [{json.dumps(str(bundled_rules_dir()))}]
state:
  path: state.db
quarantine: quarantine.jsonl
destinations:
  secops:
    type: slack
    url: {slack}
    min_severity: high
    kinds: [detection]
  soar:
    type: webhook
    url: {webhook}
    secret: ${{E2E_SECRET}}
    kinds: [detection]
""",
        encoding="utf-8",
    )
    return path


def _run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "E2E_KEY": KEY, "E2E_SECRET": SECRET}
    return subprocess.run(
        [sys.executable, "-m", "engine", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
        timeout=120,
        check=False,
    )


def _verify(headers: dict[str, str], body: bytes) -> None:
    """Standard Webhooks verification, as a receiver writes it."""
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(SECRET.encode(), signed, hashlib.sha256).digest())
    offered = [s.split(",", 1)[1] for s in headers["webhook-signature"].split()]
    assert expected.decode() in offered


def test_run_once_polls_evaluates_and_delivers_exactly_once(tmp_path, receivers):
    slack, webhook = receivers
    activities = [json.loads(line) for line in demo_feed_path().read_text().splitlines()]
    api = MockComplianceAPI(activities, api_key=KEY).start()
    try:
        config = _config(tmp_path, api.url, slack.url, webhook.url)
        first = _run(config, "run", "--once")
        assert first.returncode == 0, first.stderr
        replayed = subprocess.run(
            [
                sys.executable,
                "-m",
                "engine",
                "replay",
                str(demo_feed_path()),
                "--rules",
                str(bundled_rules_dir()),
                "--format",
                "jsonl",
                "--no-quarantine",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        expected = [json.loads(line) for line in replayed.stdout.splitlines()]
        expected_ids = {a["alert_id"] for a in expected if a["kind"] == "detection"}
        assert expected_ids

        hooked = [json.loads(body) for _, body in webhook.requests]
        assert {a["alert_id"] for a in hooked} == expected_ids
        for headers, body in webhook.requests:
            _verify(headers, body)

        severe = {a["alert_id"] for a in expected if a["severity"] in SEVERE}
        assert severe
        assert len(slack.requests) == len(severe)
        texts = [json.loads(body)["text"] for _, body in slack.requests]
        assert all(any(word in t.upper() for word in ("HIGH", "CRITICAL")) for t in texts)

        for output in (first.stdout, first.stderr):
            assert KEY not in output and SECRET not in output

        # A second run catches up from the checkpoint and notifies nobody again.
        before = (len(slack.requests), len(webhook.requests))
        second = _run(config, "run", "--once")
        assert second.returncode == 0, second.stderr
        assert (len(slack.requests), len(webhook.requests)) == before
    finally:
        api.stop()
