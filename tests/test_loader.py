"""Rule loading errors as `detect validate` reports them: exit code 2, and every message
names the file, the line and the key."""

from __future__ import annotations

import json

import pytest

from engine.errors import RuleLoadError
from engine.rule_formats import load_rules

GOOD = """
id: t.good
name: Good rule
severity: high
match:
  type: org_sso_toggled
  enabled: false
  actor.email_address: {in_list: admins}
title: "SSO disabled by {actor.email_address}"
dedup:
  key: "{organization_id}"
  window: 1h
"""


def problem_line(err: str, path, line: int, key: str) -> str:
    """The one reported line for `path`, checked to carry the line and key."""
    lines = [text for text in err.splitlines() if text.startswith(f"error: {path}:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}:{line}: [{key}] "), lines[0]
    return lines[0]


@pytest.fixture
def validate(cli, rules_dir):
    def run() -> tuple[int, str, str]:
        return cli("validate", str(rules_dir.path))

    return run


def test_a_good_directory_is_valid(cli, rules_dir):
    rules_dir.add_list("admins", ["ana@example.com"])
    rules_dir.write("good.yml", GOOD)
    rules_dir.write(
        "sub/other.yaml",
        """
        id: t.other
        name: Other rule
        severity: low
        enabled: false
        when: "type == 'login'"
        """,
    )
    code, out, err = cli("validate", "rules")
    assert (code, err) == (0, "")
    assert out == "2 rules valid (1 inactive), 1 named lists\n"


def test_validate_without_paths_uses_the_rules_folder_of_the_working_directory(cli, rules_dir):
    rules_dir.add_list("admins", ["ana@example.com"])
    rules_dir.write("good.yml", GOOD)
    assert cli("validate") == (0, "1 rules valid, 1 named lists\n", "")


def test_a_missing_directory_is_a_usage_error(cli, tmp_path):
    code, _, err = cli("validate", str(tmp_path / "nowhere"))
    assert code == 2
    assert f"no such file or directory: {tmp_path / 'nowhere'}" in err


def test_duplicate_rule_id_across_two_files(validate, rules_dir):
    first = rules_dir.write("a.yml", "id: t.dup\nname: A\nseverity: high\nmatch: {type: x}\n")
    second = rules_dir.write("b.yml", "name: B\nseverity: high\nid: t.dup\nmatch: {type: y}\n")
    code, _, err = validate()
    assert code == 2
    line = problem_line(err, second, 3, "id")
    assert "duplicate rule id 't.dup'" in line
    assert str(first) in line


def test_unknown_top_level_key(validate, rules_dir):
    path = rules_dir.write(
        "rule.yml", "id: t.x\nname: X\nseverity: high\nmatch: {type: x}\ncolour: red\n"
    )
    code, _, err = validate()
    assert code == 2
    assert "unknown key 'colour'" in problem_line(err, path, 5, "colour")


def test_unknown_key_inside_dedup(validate, rules_dir):
    path = rules_dir.write(
        "rule.yml",
        """
        id: t.x
        name: X
        severity: high
        match: {type: x}
        dedup:
          key: "{id}"
          windw: 1h
        """,
    )
    code, _, err = validate()
    assert code == 2
    assert "unknown key 'windw'" in problem_line(err, path, 7, "dedup.windw")


def test_bad_operator_name_inside_match(validate, rules_dir):
    path = rules_dir.write(
        "rule.yml",
        """
        id: t.x
        name: X
        severity: high
        match:
          type: x
          actor.email_address:
            eq: ana@example.com
        """,
    )
    code, _, err = validate()
    assert code == 2
    line = problem_line(err, path, 7, "match.actor.email_address.eq")
    assert "unknown key 'eq'" in line
    assert "equals" in line


def test_bad_severity(validate, rules_dir):
    path = rules_dir.write("rule.yml", "id: t.x\nname: X\nseverity: urgent\nmatch: {type: x}\n")
    code, _, err = validate()
    assert code == 2
    assert "'urgent' is not one of" in problem_line(err, path, 3, "severity")


def test_jmespath_syntax_error_in_when(validate, rules_dir):
    path = rules_dir.write(
        "rule.yml",
        """
        id: t.x
        name: X
        severity: high
        match:
          type: x
        when: "actor.ip_address[("
        """,
    )
    code, _, err = validate()
    assert code == 2
    assert "invalid JMESPath" in problem_line(err, path, 6, "when")


def test_bad_jmespath_in_a_title_template(validate, rules_dir):
    path = rules_dir.write(
        "rule.yml",
        """
        id: t.x
        name: X
        severity: high
        match:
          type: x

        title: "Login by {actor.email_address[}"
        """,
    )
    code, _, err = validate()
    assert code == 2
    assert "invalid JMESPath" in problem_line(err, path, 7, "title")


def test_unclosed_brace_in_a_dedup_template(validate, rules_dir):
    path = rules_dir.write(
        "rule.yml",
        """
        id: t.x
        name: X
        severity: high
        match: {type: x}
        dedup:
          key: "{organization_id"
        """,
    )
    code, _, err = validate()
    assert code == 2
    assert "unclosed '{'" in problem_line(err, path, 6, "dedup.key")


def test_python_file_that_raises_on_import(validate, rules_dir):
    path = rules_dir.write("rule.yml", "id: t.x\nname: X\nseverity: high\n\npython: broken.py\n")
    rules_dir.write("broken.py", 'import os\n\nraise RuntimeError("boom at import")\n')
    code, _, err = validate()
    assert code == 2
    line = problem_line(err, path, 5, "python")
    assert "broken.py failed to import: RuntimeError: boom at import (line 3 of broken.py)" in line


def test_python_file_with_a_syntax_error(validate, rules_dir):
    path = rules_dir.write("rule.yml", "id: t.x\nname: X\nseverity: high\npython: bad.py\n")
    rules_dir.write("bad.py", "def rule(event)\n    return True\n")
    code, _, err = validate()
    assert code == 2
    assert "bad.py failed to import: SyntaxError" in problem_line(err, path, 4, "python")


def test_python_file_without_rule(validate, rules_dir):
    path = rules_dir.write("rule.yml", "id: t.x\nname: X\nseverity: high\npython: norule.py\n")
    rules_dir.write("norule.py", "def title(event):\n    return 'x'\n")
    code, _, err = validate()
    assert code == 2
    line = problem_line(err, path, 4, "python")
    assert "norule.py does not define a function rule(event)" in line


def test_missing_python_file(validate, rules_dir):
    path = rules_dir.write("rule.yml", "id: t.x\nname: X\nseverity: high\npython: missing.py\n")
    code, _, err = validate()
    assert code == 2
    assert "missing.py does not exist" in problem_line(err, path, 4, "python")


UNKNOWN_LIST = """
id: t.x
name: X
severity: high
match:
  type: x
  {field}: {{in_list: nope}}
"""


def test_unknown_named_list(validate, rules_dir):
    rules_dir.add_list("admins", ["ana@example.com"])
    path = rules_dir.write("rule.yml", UNKNOWN_LIST.format(field="email"))
    code, _, err = validate()
    assert code == 2
    line = problem_line(err, path, 6, "match.email")
    assert "no named list 'nope' (known: admins)" in line


def test_unknown_named_list_on_a_dotted_path(validate, rules_dir):
    path = rules_dir.write("rule.yml", UNKNOWN_LIST.format(field="actor.email_address"))
    code, _, err = validate()
    assert code == 2
    line = problem_line(err, path, 6, "match.actor.email_address")
    assert "no named list 'nope'" in line


def test_invalid_yaml_names_the_line(validate, rules_dir):
    path = rules_dir.write(
        "rule.yml",
        """
        id: t.x
        name: X
        severity: high
        match:
          type: x
            enabled: false
        """,
    )
    code, _, err = validate()
    assert code == 2
    lines = [text for text in err.splitlines() if text.startswith(f"error: {path}:")]
    # libyaml says "in this context", the pure-Python scanner "here": the line is what counts
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {path}:6: invalid YAML: mapping values are not allowed")


def test_duplicate_yaml_key_is_an_error(validate, rules_dir):
    path = rules_dir.write(
        "rule.yml", "id: t.x\nname: X\nseverity: high\nmatch: {type: x}\nname: Y\n"
    )
    code, _, err = validate()
    assert code == 2
    assert "duplicate key 'name'" in err
    assert f"error: {path}:5:" in err


def test_every_problem_of_every_file_is_reported_at_once(validate, rules_dir):
    a = rules_dir.write("a.yml", "id: t.a\nname: A\nseverity: urgent\nmatch: {type: x}\n")
    b = rules_dir.write("b.yml", "id: t.b\nname: B\nseverity: low\nmatch: {type: x}\nfoo: 1\n")
    rules_dir.write("c.yml", GOOD.replace("{in_list: admins}", "{ends_with: '@example.com'}"))
    code, _, err = validate()
    assert code == 2
    problem_line(err, a, 3, "severity")
    problem_line(err, b, 5, "foo")
    assert err.splitlines()[-1] == "2 problem(s) in 2 file(s)"


def test_validate_json_format(cli, rules_dir):
    path = rules_dir.write("rule.yml", "id: t.x\nname: X\nseverity: urgent\nmatch: {type: x}\n")
    code, out, _ = cli("validate", "--format", "json", str(rules_dir.path))
    assert code == 2
    report = json.loads(out)
    assert report["rules"] == 0
    assert [(p["file"], p["line"], p["key"]) for p in report["problems"]] == [
        (str(path), 3, "severity")
    ]


def test_load_rules_raises_with_every_problem(rules_dir):
    path = rules_dir.write("rule.yml", "id: t.x\nname: X\nseverity: high\nmatch: {type: x}\nz: 1\n")
    with pytest.raises(RuleLoadError) as info:
        load_rules([rules_dir.path])
    assert [(p.path, p.line, p.key) for p in info.value.problems] == [(path, 5, "z")]
    assert str(info.value).startswith(f"{path}:5: [z] unknown key 'z'")


def test_lists_are_not_rules_and_both_suffixes_load(rules_dir):
    rules_dir.add_list("admins", ["ana@example.com"])
    rules_dir.write("a.yml", "id: t.a\nname: A\nseverity: low\nmatch: {type: x}\n")
    rules_dir.write("deep/b.yaml", "id: t.b\nname: B\nseverity: low\nmatch: {type: x}\n")
    rules_dir.write("notes.txt", "not a rule\n")
    ruleset = rules_dir.load()
    assert sorted(r.id for r in ruleset.rules) == ["t.a", "t.b"]
    assert sorted(ruleset.lists.lists) == ["admins"]


def test_python_rule_module_may_define_a_dataclass(rules_dir):
    rules_dir.write("rule.yml", "id: t.x\nname: X\nseverity: high\npython: dc.py\n")
    rules_dir.write(
        "dc.py",
        """
        from __future__ import annotations

        from dataclasses import dataclass


        @dataclass
        class Seen:
            ip: str


        def rule(event):
            return Seen(event.deep_get("actor", "ip_address", default="")).ip == "192.0.2.7"
        """,
    )
    assert [r.id for r in rules_dir.load().rules] == ["t.x"]
