"""`detect init`: what it writes is a pack that validates and passes its tests, a
configuration that loads, and it never overwrites a file without --force."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from engine.cli import main
from engine.cli.init import files


@pytest.fixture
def inited(tmp_path: Path, capsys) -> Path:
    assert main(["init", str(tmp_path / "deploy")]) == 0
    capsys.readouterr()
    return tmp_path / "deploy"


def test_writes_every_file(inited: Path) -> None:
    for name in files():
        assert (inited / name).is_file(), name
    rule = (inited / "rules" / "example_sso_disabled.yml").read_text()
    first = rule.splitlines()[0]
    assert first == "# yaml-language-server: $schema=../rules.schema.json"
    assert (inited / "rules" / "../rules.schema.json").resolve().is_file()


def test_validate_and_test_are_green(inited: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(inited)
    assert main(["validate", "rules"]) == 0
    assert main(["test", "rules"]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out and "events_file" not in out
    assert main(["validate"]) == 0
    assert main(["test"]) == 0


def test_mutation_score_meets_the_ci_snippet(inited: Path, capsys) -> None:
    assert main(["test", "--mutate", str(inited / "rules"), "--min-score", "90"]) == 0


def test_config_loads_with_secrets_from_the_environment(inited: Path, monkeypatch) -> None:
    from engine.config import load_config

    text = (inited / "detect.yaml").read_text()
    assert "${ANTHROPIC_COMPLIANCE_API_KEY}" in text
    monkeypatch.setenv("ANTHROPIC_COMPLIANCE_API_KEY", "sk-ant-test")
    config = load_config(inited / "detect.yaml")
    assert any(str(p).endswith("rules") for p in config.rules)


def test_snippets_run_validate_test_and_mutate(inited: Path) -> None:
    ci = yaml.safe_load((inited / "snippets" / "github-actions.yml").read_text())
    runs = [s.get("run", "") for s in ci["jobs"]["rules"]["steps"]]
    assert "detect validate rules" in runs and "detect test rules" in runs
    assert "detect test --mutate rules --min-score 90" in runs
    hooks = yaml.safe_load((inited / "snippets" / "pre-commit-config.yaml").read_text())
    ids = [h["id"] for h in hooks["repos"][0]["hooks"]]
    assert ids == ["detect-validate", "detect-test"]


def test_refuses_to_overwrite(inited: Path, capsys) -> None:
    config = inited / "detect.yaml"
    config.write_text("# mine\n")
    assert main(["init", str(inited)]) == 2
    err = capsys.readouterr().err
    assert "already exist" in err and "--force" in err and str(config) in err
    assert config.read_text() == "# mine\n"
    assert main(["init", str(inited), "--force"]) == 0
    assert config.read_text() != "# mine\n"


def test_refuses_a_file_as_the_directory(tmp_path: Path, capsys) -> None:
    target = tmp_path / "file"
    target.write_text("")
    assert main(["init", str(target)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_default_is_the_current_directory(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert (tmp_path / "detect.yaml").is_file()
    assert os.listdir(tmp_path / "rules")
