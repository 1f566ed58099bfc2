"""Delivery tests: real HTTP receivers on 127.0.0.1, a real SQLite state file, and a fake
clock injected into the dispatcher so days of retries take milliseconds.

The receivers record every request with the fake clock's time, answer whatever a test
scripts (200 `ok`, 429 with Retry-After, 5xx, 4xx with Slack's error strings, a hang), and
the Slack one enforces Slack's documented limits like Slack would: a message over a limit
is answered `400 invalid_blocks` / `msg_blocks_too_long`, not accepted.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.alerts import Alert
from engine.config import DestinationConfig
from engine.state.sqlite import SqliteStore

T0 = datetime(2026, 5, 7, 10, 0, 0, tzinfo=UTC)
WALL0 = 1_800_000_000.0
SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0zMmJ5dGVzISE="  # 32 bytes


class FakeClock:
    """Wall-clock seconds that move only when the dispatcher sleeps."""

    def __init__(self, start: float = WALL0) -> None:
        self.now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []
        self.on_advance: list[Callable[[float], None]] = []

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        with self._lock:
            self.now += max(seconds, 0.0)
            now = self.now
        for hook in self.on_advance:
            hook(now)


@dataclass
class Request:
    at: float
    real: float
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Answer = tuple[int, str, dict[str, str]]
Behaviour = Callable[[Request], Answer]


def ok(_: Request) -> Answer:
    return 200, "ok", {}


@dataclass
class Receiver:
    clock: Callable[[], float]
    behaviour: Behaviour = ok
    requests: list[Request] = field(default_factory=list)
    hang: float = 0.0
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/T0001/B0002/XyZsecretPathToken42"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                request = Request(
                    receiver.clock(), time.monotonic(), self.path, dict(self.headers), body
                )
                receiver.requests.append(request)
                if receiver.hang:
                    receiver._release.wait(receiver.hang)
                status, text, headers = receiver.behaviour(request)
                data = text.encode()
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the sender gave up (timeout): nothing to answer

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self) -> list[Any]:
        return [r.json() for r in self.requests]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- Slack's rules, as a receiver enforces them ------------------------------------------

SLACK_TOTAL_LIMIT = 12000


def _texts(block: dict[str, Any]) -> list[str]:
    found = []
    if isinstance(block.get("text"), dict):
        found.append(block["text"]["text"])
    for item in block.get("fields", []) + block.get("elements", []):
        found.append(item["text"])
    return found


def slack_problem(payload: Any) -> str | None:
    """Slack's answer to a payload that breaks a limit, or None when it would post."""
    if not isinstance(payload, dict):
        return "invalid_payload"
    if not payload.get("text"):
        return "missing_text_or_fallback_or_attachments"
    blocks = payload.get("blocks", [])
    if len(blocks) > 50:
        return "invalid_blocks"
    total = 0
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            text = block["text"]
            if text["type"] != "plain_text" or len(text["text"]) > 150:
                return "invalid_blocks"
        elif kind == "section":
            if "text" in block and len(block["text"]["text"]) > 3000:
                return "invalid_blocks"
            fields = block.get("fields", [])
            if len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                return "invalid_blocks"
            if "text" not in block and not fields:
                return "invalid_blocks"
        elif kind == "context":
            elements = block.get("elements", [])
            if not elements or len(elements) > 10:
                return "invalid_blocks"
            if any(len(e["text"]) > 3000 for e in elements):
                return "invalid_blocks"
        elif kind != "divider":
            return "invalid_blocks"
        total += sum(len(t) for t in _texts(block))
    if total > SLACK_TOTAL_LIMIT:
        return "msg_blocks_too_long"
    return None


def slack_like(request: Request) -> Answer:
    try:
        payload = request.json()
    except ValueError:
        return 400, "invalid_payload", {}
    problem = slack_problem(payload)
    if problem is not None:
        return 400, problem, {}
    return 200, "ok", {}


class SlackLike:
    """Slack's incoming webhook as a receiver: its limits and error strings, and its rate
    (about one message a second: faster gets `429 rate_limited` with `Retry-After: 1`)."""

    def __init__(self, min_interval: float = 1.0) -> None:
        self.min_interval = min_interval
        self.last: float | None = None
        self.rate_limited = 0

    def __call__(self, request: Request) -> Answer:
        if self.last is not None and request.at - self.last < self.min_interval - 1e-6:
            self.rate_limited += 1
            return 429, "rate_limited", {"Retry-After": "1"}
        self.last = request.at
        return slack_like(request)


def all_text(payload: dict[str, Any]) -> list[str]:
    texts = [payload["text"]]
    for block in payload["blocks"]:
        texts.extend(_texts(block))
    return texts


# -- alerts in a real state database ------------------------------------------------------


def make_alert(index: int, **changes: Any) -> Alert:
    opened = T0 + timedelta(seconds=index)
    fields: dict[str, Any] = dict(
        alert_id=f"al_{index:024x}",
        kind="detection",
        rule_id="anthropic.sso.disabled",
        rule_name="SSO disabled",
        severity="high",
        title=f"SSO disabled by ana{index}@example.com",
        dedup_key=f"org_{index}",
        opened_at=opened,
        window_end=opened + timedelta(hours=1),
        description="Single sign-on was turned off.",
        runbook="1. Ask the admin why.\n2. Turn it back on.",
        tags=["defense-evasion"],
        mitre=["TA0005:T1562.001"],
        event_count=1,
        first_event_at=opened,
        last_event_at=opened,
        organization_ids=["org_01ABC"],
        indicators={
            "emails": [f"ana{index}@example.com"],
            "ip_addresses": ["192.0.2.7"],
            "actor_ids": ["user_01"],
        },
        context={"actor.ip_address": "192.0.2.7"},
        events=[
            {
                "id": f"act_{index}",
                "created_at": opened.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "type": "org_sso_toggled",
                "actor": {
                    "type": "user_actor",
                    "email_address": f"ana{index}@example.com",
                    "ip_address": "192.0.2.7",
                    "user_agent": "Mozilla/5.0",
                },
                "organization_id": "org_01ABC",
            }
        ],
    )
    fields.update(changes)
    return Alert(**fields)


def save_alerts(db: Path, alerts: list[Alert], watermark: str | None = None) -> None:
    """Commit alerts the way the correlator does: `notify` for new ones, one transaction."""
    store = SqliteStore(db)
    for alert in alerts:
        store.save_alert(alert.to_state(), notify=True)
    if watermark is not None:
        store.set_meta("watermark", watermark)
    store.commit()
    store.close()


def grow(db: Path, alert: Alert, count: int, watermark: str | None = None) -> None:
    """Events join an open alert (no new notification), as dedup does."""
    alert.event_count = count
    alert.last_event_at = alert.opened_at + timedelta(minutes=count)
    store = SqliteStore(db)
    store.save_alert(alert.to_state(), notify=False)
    if watermark is not None:
        store.set_meta("watermark", watermark)
    store.commit()
    store.close()


def slack(url: str, **options: Any) -> DestinationConfig:
    return DestinationConfig.model_validate({"type": "slack", "url": url, **options})


def webhook(url: str, **options: Any) -> DestinationConfig:
    options.setdefault("secret", SECRET)
    return DestinationConfig.model_validate({"type": "webhook", "url": url, **options})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def receivers(clock: FakeClock) -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def make(behaviour: Behaviour = ok, **options: Any) -> Receiver:
        receiver = Receiver(clock, behaviour, **options).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()
