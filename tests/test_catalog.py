"""rules/README.md is generated from the rule files and must not be stale."""

from __future__ import annotations

from pathlib import Path

from engine.catalog import render_catalog
from engine.cli import main
from engine.rule_formats import load_rules

ROOT = Path(__file__).resolve().parent.parent


def test_the_shipped_catalog_is_current():
    rules = ROOT / "rules"
    expected = render_catalog(load_rules([rules]), rules)
    assert (rules / "README.md").read_text(encoding="utf-8") == expected


def test_catalog_lists_every_rule_with_its_types_and_mitre(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "a.yml").write_text(
        "id: t.a\nname: A\nseverity: high\ndescription: Detects A. More words.\n"
        "mitre: ['TA0003:T1098']\nmatch: {type: [x_created, x_deleted]}\n",
        encoding="utf-8",
    )
    text = render_catalog(load_rules([tmp_path]), tmp_path)
    assert "## keys" in text
    assert "| `t.a` | high | Detects A. |  | TA0003:T1098 | `x_created`, `x_deleted` |" in text


def test_check_fails_on_a_stale_file(tmp_path, capsys):
    (tmp_path / "a.yml").write_text(
        "id: t.a\nname: A\nseverity: low\nmatch: {type: x}\n", encoding="utf-8"
    )
    out = tmp_path / "README.md"
    out.write_text("stale\n", encoding="utf-8")
    assert main(["catalog", str(tmp_path), "--out", str(out), "--check"]) == 1
    assert main(["catalog", str(tmp_path), "--out", str(out)]) == 0
    assert main(["catalog", str(tmp_path), "--out", str(out), "--check"]) == 0
