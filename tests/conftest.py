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
