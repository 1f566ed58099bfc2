"""The README's examples are real: its configuration loads, its tour rule validates and
passes its own tests, and the commands it names exist."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from engine.cli import build_parser, main
from engine.config import load_config

README = Path(__file__).resolve().parent.parent / "README.md"


def _block(after: str, language: str = "yaml") -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no {language} block after {after!r}"
    return match.group(1)


def test_the_configuration_example_loads(tmp_path, monkeypatch):
    for name in ("ANTHROPIC_COMPLIANCE_API_KEY", "SLACK_WEBHOOK_URL", "DETECT_WEBHOOK_SECRET"):
        monkeypatch.setenv(name, f"value-of-{name.lower()}-long-enough-for-a-secret")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/x")
    path = tmp_path / "detect.yaml"
    path.write_text(_block("## Configuration"), encoding="utf-8")
    config = load_config(path)
    assert set(config.destinations) == {"secops", "soar", "terminal"}
    assert config.source.overlap.total_seconds() == 600


def test_the_tour_rule_validates_and_its_tests_pass(tmp_path, monkeypatch, capsys):
    rules = tmp_path / "rules" / "posture"
    rules.mkdir(parents=True)
    text = README.read_text(encoding="utf-8")
    start = text.index("# rules/posture/sso_off.yml")
    rule = text[start : text.index("```", start)]
    (rules / "sso_off.yml").write_text(rule, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "rules"]) == 0
    assert main(["test", "rules", "-k", "sso"]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out


def test_every_command_in_the_table_exists():
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## Commands") : text.index("## Configuration")]
    named = set(re.findall(r"`detect ([a-z-]+)", table))
    choices = build_parser()._subparsers._group_actions[0].choices
    assert named and named <= set(choices)


def test_the_tour_threshold_rule_validates_passes_and_replays(tmp_path, monkeypatch, capsys):
    text = README.read_text(encoding="utf-8")
    start = text.index("# rules/auth/sign_in_failures.yml")
    rule = text[start : text.index("```", start)]
    events = re.search(r"events_file: (\S+)", rule).group(1)
    assert (README.parent / events).is_file(), f"the tour names {events}, which is missing"
    (tmp_path / "rules" / "auth").mkdir(parents=True)
    (tmp_path / "rules" / "auth" / "sign_in_failures.yml").write_text(rule, encoding="utf-8")
    (tmp_path / events).parent.mkdir(parents=True)
    shutil.copy(README.parent / events, tmp_path / events)
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "rules"]) == 0
    assert main(["test", "rules"]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out
    assert main(["replay", events, "--rules", "builtin", "--rules", "rules"]) == 0
    assert "acme.auth.sign_in_failures" in capsys.readouterr().out
