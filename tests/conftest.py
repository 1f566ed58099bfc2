"""Shared helpers for the engine's own tests: real files in `tmp_path`, real stages.

Nothing here is a mock: rules are YAML files on disk loaded by the real loader, activities
are plain JSON-shaped dicts validated by the real model, and alerts come out of the real
pipeline. Time is always event time, built from one fixed instant.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.activity import format_timestamp, parse_activity
from engine.correlation.correlator import AlertChange
from engine.detection.loader import RuleSet
from engine.pipeline import Pipeline, Stats
from engine.rule_formats import load_rules
from engine.state.store import MemoryStore, StateStore

T0 = datetime(2026, 5, 7, 10, 0, 0, tzinfo=UTC)


def at(seconds: float = 0, *, minutes: float = 0, hours: float = 0) -> str:
    """Event-time text `T0 + offset`, in the API's `Z` form (no fraction when whole)."""
    moment = T0 + timedelta(seconds=seconds, minutes=minutes, hours=hours)
    if moment.microsecond == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return format_timestamp(moment)


def moment(seconds: float = 0, *, minutes: float = 0, hours: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds, minutes=minutes, hours=hours)


DEFAULT_ACTOR = {
    "type": "user_actor",
    "email_address": "ana@example.com",
    "user_id": "user_01",
    "ip_address": "192.0.2.7",
}


class ActivityFactory:
    """Builds activities as the API sends them; ids are numbered per test."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def __call__(
        self,
        type: str = "login",
        *,
        created_at: str | None = None,
        actor: dict[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": f"activity_{next(self._ids):04d}",
            "created_at": created_at or at(0),
            "type": type,
            "actor": dict(actor if actor is not None else DEFAULT_ACTOR),
            "organization_id": "org_01",
        }
        data.update(fields)
        return data


@pytest.fixture
def make_activity() -> ActivityFactory:
    return ActivityFactory()


class RulesDir:
    """A rules directory under `tmp_path` that tests write YAML, Python and lists into."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, text: str) -> Path:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return target.resolve()

    def add_list(self, name: str, entries: list[str]) -> Path:
        body = "".join(f"- {json.dumps(entry)}\n" for entry in entries)
        return self.write(f"lists/{name}.yml", body)

    def load(self) -> RuleSet:
        return load_rules([self.path])


@pytest.fixture
def rules_dir(tmp_path: Path) -> RulesDir:
    return RulesDir(tmp_path / "rules")


def load_rule(tmp_path: Path, text: str, name: str = "rule.yml") -> RuleSet:
    """Write one rule file into a fresh rules directory and load it."""
    folder = RulesDir(tmp_path / "rules")
    folder.write(name, text)
    return folder.load()


@dataclass
class Run:
    """What a pipeline run produced: every alert change, in order, and the stats."""

    changes: list[AlertChange] = field(default_factory=list)
    stats: Stats | None = None

    @property
    def opened(self) -> list[Any]:
        return [c.alert for c in self.changes if c.change == "opened"]

    @property
    def final(self) -> list[dict[str, Any]]:
        """The alerts in their final JSON form, in the order they closed."""
        return [c.alert.to_dict() for c in self.changes if c.change == "closed"]


def run_pipeline(
    ruleset: RuleSet,
    raws: Iterable[dict[str, Any]],
    store: StateStore | None = None,
    finish: bool = True,
) -> Run:
    """Feed activities, in the order given, through the real pipeline."""
    result = Run()
    pipeline = Pipeline(
        ruleset, store if store is not None else MemoryStore(), [result.changes.append]
    )
    pipeline.run(parse_activity(raw) for raw in raws)
    result.stats = pipeline.finish() if finish else pipeline.suspend()
    return result


def write_jsonl(path: Path, raws: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in raws), encoding="utf-8")
    return path


def run_detect(
    *args: str, cwd: Path, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m engine ARGS` in a separate process (exit codes, stdin, fresh state)."""
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """`engine.cli.main(argv)` run from `tmp_path` (so default paths such as
    `.detect/quarantine.jsonl` and `./detect.yaml` resolve there); returns
    `(exit code, stdout, stderr)`."""
    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FORCE_COLOR", raising=False)

    def invoke(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


# -- a real redis-server for the Redis state (tests/state/, the workers and the outbox) --

REDIS_MISSING = "redis-server not installed (apt-get install redis-server)"


@dataclass
class RedisServer:
    """A redis-server process of the tests' own, on a free loopback port."""

    process: subprocess.Popen[bytes]
    port: int
    folder: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **options: Any) -> Any:
        import redis

        return redis.Redis.from_url(self.url, **options)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_redis_server(folder: Path, *settings: str) -> RedisServer:
    """redis-server in `folder` (its files and log there), with `settings` after the
    tests' defaults (`--appendonly yes --save ''`, loopback only); skips the test when no
    binary or no Python client can be had. Waits until it answers PING."""
    import shutil
    import time

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(REDIS_MISSING)
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        pytest.skip("the redis client is not installed (pip install '.[redis]')")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "redis.log"
    for _ in range(3):  # again when the free port was taken before the server bound it
        port = _free_port()
        command = [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(folder),
            "--appendonly", "yes",
            "--save", "",
            "--logfile", str(log),
            *settings,
        ]  # fmt: skip
        server = RedisServer(subprocess.Popen(command, stdout=subprocess.DEVNULL), port, folder)
        client = redis.Redis(
            host="127.0.0.1", port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        deadline = time.monotonic() + 10
        while server.process.poll() is None and time.monotonic() < deadline:
            try:
                client.ping()
                return server
            except (redis.AuthenticationError, redis.ResponseError):
                return server  # it answers, and wants credentials
            except redis.ConnectionError:
                time.sleep(0.01)
            finally:
                client.close()
        server.stop()
    tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
    raise RuntimeError(f"redis-server did not start in {folder}: {tail}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterable[str]:
    """The URL of one redis-server for the whole session (`--appendonly yes --save ''`,
    a free loopback port, a temporary folder). Tests share it: each takes its own key
    prefix (`redis_prefix`) instead of flushing it."""
    server = start_redis_server(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()


_prefixes = itertools.count(1)


@pytest.fixture
def redis_prefix(redis_server: str, request: pytest.FixtureRequest) -> str:
    """A key prefix no other test of the session uses (`t{n}:{test name}:`)."""
    name = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    return f"t{next(_prefixes)}:{name}:"


@pytest.fixture
def redis_client(redis_server: str) -> Iterable[Any]:
    """A client of the session's redis-server (replies as bytes, as `open_redis`'s)."""
    import redis

    client = redis.Redis.from_url(redis_server)
    try:
        yield client
    finally:
        client.close()
