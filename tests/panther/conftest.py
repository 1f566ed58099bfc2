"""Helpers for the Panther-format tests: real files in `tmp_path`, the real loader, the
real pipeline. Nothing is mocked but what a Panther test itself mocks."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from engine.activity import parse_activity
from engine.correlation.correlator import AlertChange
from engine.detection.loader import RuleSet
from engine.errors import RuleProblem
from engine.panther import PantherOptions
from engine.pipeline import Pipeline
from engine.rule_formats import check_rules, load_rules
from engine.state.store import MemoryStore
from tests.conftest import RulesDir

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures" / "panther"


class PantherDir(RulesDir):
    """A Panther-format rules directory under tmp_path."""

    def rule(
        self,
        rule_id: str,
        module: str | None = None,
        *,
        extra: str = "",
        tests: str = "",
        folder: str = "rules",
        log_types: str = "[Anthropic.Activity]",
        severity: str = "Medium",
    ) -> Path:
        """A rule YAML (and its module, when given), named after the id."""
        stem = rule_id.lower().replace(".", "_")
        head = textwrap.dedent(
            f"""\
            AnalysisType: rule
            RuleID: {rule_id}
            Enabled: true
            LogTypes: {log_types}
            Severity: {severity}
            """
        )
        if module is not None:
            head += f"Filename: {stem}.py\n"
            self.write(f"{folder}/{stem}.py", module)
        body = head + textwrap.dedent(extra).lstrip("\n")
        if tests:
            body += "Tests:\n" + textwrap.dedent(tests).lstrip("\n")
        return self.write(f"{folder}/{stem}.yml", body)

    def helper(self, name: str, code: str, folder: str = "global_helpers") -> Path:
        return self.write(f"{folder}/{name}.py", code)

    def load(self, **options: Any) -> RuleSet:
        return load_rules([self.path], PantherOptions(**options))

    def check(self, **options: Any) -> tuple[RuleSet, list[RuleProblem]]:
        return check_rules([self.path], PantherOptions(**options))


@pytest.fixture
def panther_dir(tmp_path: Path) -> PantherDir:
    return PantherDir(tmp_path / "pack")


_ids = itertools.count(1)


def activity(type: str = "org_sso_toggled", created_at: str = "2026-05-04T08:00:00Z", **fields):
    """An activity as the Compliance API sends it."""
    data: dict[str, Any] = {
        "id": f"activity_{next(_ids):05d}",
        "created_at": created_at,
        "organization_id": "org_01",
        "type": type,
        "actor": {
            "type": "user_actor",
            "email_address": "ana@example.com",
            "user_id": "user_01",
            "ip_address": "198.51.100.7",
        },
    }
    data.update(fields)
    return data


def run(ruleset: RuleSet, raws: Iterable[dict[str, Any]]) -> list[AlertChange]:
    """Every alert change the real pipeline produces for these activities."""
    changes: list[AlertChange] = []
    pipeline = Pipeline(ruleset, MemoryStore(), [changes.append])
    pipeline.run(parse_activity(raw) for raw in raws)
    pipeline.finish()
    return changes


def opened(changes: list[AlertChange]) -> list[Any]:
    return [c.alert for c in changes if c.change == "opened"]


@pytest.fixture
def cli_in_repo(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """`engine.cli.main(argv)` from the repository root: (exit code, stdout, stderr)."""
    from engine.cli import main

    monkeypatch.chdir(REPO)

    def invoke(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke
