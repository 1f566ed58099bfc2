"""Fixtures for the ingestion tests: the mock API as a real server on 127.0.0.1, real
SQLite files, and one fake clock shared by the server and the poller so hours of polling
run in milliseconds and every wait is asserted rather than waited."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from engine.activity import format_timestamp, parse_timestamp
from engine.config import Config
from engine.detection.loader import RuleSet
from engine.feedgen import generate
from engine.rule_formats import load_rules
from engine.runs.replay import ReplayOptions, replay
from engine.tools.mock_api import MockComplianceAPI

RULES = Path(__file__).parent / "rules"
# Distinctive enough that finding it anywhere in output is never a coincidence.
KEY = "sk-ant-api03-TESTKEY-Zq8vN3xR7wP2mK9sL4tY6uB1cD5eF0gH-detect"


class FakeClock:
    """Epoch seconds that move only when something sleeps (or the test advances them)."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    @property
    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, tz=UTC)


@cache
def _feed(count: int, seed: int) -> tuple[str, ...]:
    return tuple(json.dumps(a) for a in generate(count, seed=seed))


def feed(count: int, seed: int = 3) -> list[dict[str, Any]]:
    """A generated feed (fresh dicts on every call, generated once per session)."""
    return [json.loads(line) for line in _feed(count, seed)]


def end_of(activities: list[dict[str, Any]]) -> datetime:
    return max(parse_timestamp(a["created_at"]) for a in activities)


def start_of(activities: list[dict[str, Any]]) -> datetime:
    return min(parse_timestamp(a["created_at"]) for a in activities)


def activity(
    ident: str, created_at: datetime, type_: str = "claude_chat_viewed", **fields: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": ident,
        "created_at": format_timestamp(created_at),
        "organization_id": "org_01Aa",
        "organization_uuid": "6f1c2b9e-4d3a-4e8b-9a51-2c7d8e0f1a23",
        "actor": {
            "type": "user_actor",
            "email_address": "ana@example.com",
            "user_id": "user_01Ana",
            "ip_address": "192.0.2.7",
            "user_agent": "Mozilla/5.0",
        },
        "type": type_,
    }
    data.update(fields)
    return data


def spaced(count: int, start: datetime, step: timedelta, prefix: str = "a") -> list[dict]:
    """`count` activities `step` apart from `start`, ids sortable by time."""
    return [activity(f"activity_{prefix}{i:06d}", start + i * step) for i in range(count)]


@pytest.fixture(scope="session")
def ruleset() -> RuleSet:
    return load_rules([RULES])


@pytest.fixture
def start_mock() -> Iterator[Callable[..., MockComplianceAPI]]:
    """Start mock APIs on 127.0.0.1 (any free port); all are stopped after the test."""
    started: list[MockComplianceAPI] = []

    def start(activities: Any = (), **kwargs: Any) -> MockComplianceAPI:
        kwargs.setdefault("api_key", KEY)
        mock = MockComplianceAPI(activities, **kwargs).start()
        started.append(mock)
        return mock

    yield start
    for mock in started:
        mock.stop()


def make_config(tmp_path: Path, base_url: str, **source: Any) -> Config:
    source.setdefault("api_key", KEY)
    values = {
        "source": {"base_url": base_url, **source},
        "rules": [str(RULES)],
        "state": {"path": str(tmp_path / "state.db")},
        "destinations": {},
        "quarantine": str(tmp_path / "quarantine.jsonl"),
    }
    return Config.model_validate(values)


def write_config(tmp_path: Path, base_url: str, name: str = "detect.yaml", **source: Any) -> Path:
    """A detect.yaml as a user writes it; the key comes from the environment."""
    lines = [
        "source:",
        f"  base_url: {base_url}",
        "  api_key: ${TEST_COMPLIANCE_KEY}",
    ]
    for key, value in source.items():
        lines.append(f"  {key}: {json.dumps(value)}")
    lines += [
        f"rules: [{json.dumps(str(RULES))}]",
        "state:",
        f"  path: {json.dumps(str(tmp_path / 'state.db'))}",
        f"quarantine: {json.dumps(str(tmp_path / 'quarantine.jsonl'))}",
    ]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def replay_alerts(activities: list[dict[str, Any]], ruleset: RuleSet, tmp_path: Path) -> dict:
    """{alert_id: event_count} from `detect replay` of the same activities."""
    path = tmp_path / "replayed.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in activities), encoding="utf-8")
    out = io.StringIO()
    replay([str(path)], ruleset, ReplayOptions(format="jsonl", quarantine=None), out, io.StringIO())
    alerts = [json.loads(line) for line in out.getvalue().splitlines()]
    return {a["alert_id"]: a["event_count"] for a in alerts}


def db_alerts(path: Path) -> dict[str, dict[str, Any]]:
    """Every alert row of a state database: {alert_id: {event_count, notify, kind, rule_id}}."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT alert_id, body, notify FROM alerts").fetchall()
    finally:
        db.close()
    result = {}
    for alert_id, body, notify in rows:
        data = json.loads(body)
        result[alert_id] = {
            "event_count": data["event_count"],
            "notify": notify,
            "kind": data["kind"],
            "rule_id": data["rule_id"],
        }
    return result


def db_meta(path: Path, key: str) -> Any:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    finally:
        db.close()
    return json.loads(row[0]) if row else None
