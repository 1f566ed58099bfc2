"""Packs you compose: `builtin` beside rules folders, `rule_overrides:` from the
configuration, and the line that says which packs and how many rules are active."""

from __future__ import annotations

import json
import re
from pathlib import Path

from engine.cli import main
from engine.resources import bundled_rules_dir, demo_feed_path
from engine.rule_formats import load_rules

RULE = """id: mine.{name}
name: My rule {name}
severity: low
match: {{type: {type}}}
tests:
  - name: holds
    event: {{id: a1, created_at: "2026-05-07T10:00:00Z", type: {type}, actor: {{type: user_actor}}}}
    expect: true
"""


def _shipped() -> tuple[int, int]:
    """(all rules, active rules) of the shipped pack, counted, never written down."""
    ruleset = load_rules([bundled_rules_dir()])
    return len(ruleset.rules) + len(ruleset.skipped), len(ruleset.rules)


def _mine(tmp_path: Path) -> Path:
    mine = tmp_path / "mine"
    mine.mkdir()
    for name, kind in (("one", "org_sso_toggled"), ("two", "api_key_created")):
        (mine / f"{name}.yml").write_text(RULE.format(name=name, type=kind), encoding="utf-8")
    return mine


def test_builtin_and_a_folder_are_evaluated_together(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    mine = _mine(tmp_path)
    total, active = _shipped()
    feed = str(demo_feed_path())
    assert main(["replay", feed, "--rules", "builtin", "--rules", str(mine)]) == 0
    assert f"· {active + 2} rules ·" in capsys.readouterr().err
    assert main(["validate", "builtin", str(mine)]) == 0
    out = capsys.readouterr().out
    assert f"rules: builtin ({total}) + {mine} (2): {active + 2} active" in out


def test_the_default_pack_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 0
    assert "default: no ./rules, so the shipped pack" in capsys.readouterr().out


def _config(tmp_path: Path, overrides: str) -> Path:
    path = tmp_path / "detect.yaml"
    path.write_text(f"rules: [builtin]\nrule_overrides:\n{overrides}", encoding="utf-8")
    return path


def _alerts(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_an_override_changes_a_shipped_rules_severity_and_switches_one_off(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    feed = str(demo_feed_path())
    assert main(["replay", feed, "--format", "jsonl"]) == 0
    before = _alerts(capsys.readouterr().out)
    rule = "anthropic.auth.admin_login_new_address"
    assert {a["severity"] for a in before if a["rule_id"] == rule} == {"medium"}
    assert any(a["rule_id"] == "anthropic.data.org_data_export" for a in before)
    config = _config(
        tmp_path,
        f"  {rule}: {{severity: high, dedup_window: 12h}}\n"
        "  anthropic.data.org_data_export: {enabled: false}\n",
    )
    assert main(["replay", feed, "--format", "jsonl", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    after = _alerts(captured.out)
    assert {a["severity"] for a in after if a["rule_id"] == rule} == {"high"}
    assert not any(a["rule_id"] == "anthropic.data.org_data_export" for a in after)
    active = _shipped()[1]
    assert f"· {active - 1} rules ·" in captured.err


def test_an_unknown_rule_id_is_refused_with_a_suggestion(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, "  anthropic.data.org_data_exprt: {enabled: false}\n")
    assert main(["replay", str(demo_feed_path()), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "unknown rule id 'anthropic.data.org_data_exprt'" in err
    assert "did you mean 'anthropic.data.org_data_export'" in err


def test_a_bad_override_value_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = _config(
        tmp_path,
        "  anthropic.data.org_data_export: {severity: urgent, lists: {no_such: [x]}}\n",
    )
    assert main(["replay", str(demo_feed_path()), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "rule_overrides.anthropic.data.org_data_export.severity: 'urgent'" in err
    assert "no named list 'no_such'" in err


def test_an_override_adds_entries_to_a_named_list(tmp_path):
    from engine.detection.overrides import apply_overrides

    ruleset = load_rules([bundled_rules_dir()])
    name = sorted(ruleset.lists.lists)[0]
    rule = ruleset.rules[0].id
    assert apply_overrides(ruleset, {rule: {"lists": {name: ["Added.Entry@example.com"]}}}) == []
    assert "added.entry@example.com" in ruleset.lists.get(name)


def test_validate_names_the_packs(capsys):
    total, active = _shipped()
    assert main(["validate", "builtin"]) == 0
    assert f"rules: builtin ({total}): {active} active" in capsys.readouterr().out


def test_the_readme_overrides_apply_to_the_shipped_pack():
    from engine.detection.overrides import apply_overrides

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = text[text.index("rule_overrides:") :].split("\n  #")[0]
    ids = re.findall(r"^  ([a-z_.]+): \{", block, re.M)
    assert ids == ["anthropic.data.artifact_published", "anthropic.auth.admin_login_new_address"]
    ruleset = load_rules([bundled_rules_dir()])
    assert apply_overrides(ruleset, {rule_id: {"enabled": True} for rule_id in ids}) == []
