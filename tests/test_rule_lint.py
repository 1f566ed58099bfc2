"""`detect validate` lints what the schema lets through (a bare `false` in JMESPath, a
test file that does not exist, tests that cannot fail); `detect test` recaps failures."""

from __future__ import annotations

from pathlib import Path

from engine.cli import main

HEAD = """id: acme.lint
name: Lint
severity: low
match: {type: org_sso_toggled}
"""
EVENT = (
    '{id: a1, created_at: "2026-05-07T10:00:00Z", type: org_sso_toggled, enabled: false,'
    " actor: {type: user_actor}}"
)


def _rule(tmp_path: Path, body: str) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "lint.yml").write_text(HEAD + body, encoding="utf-8")
    return rules


def test_a_bare_false_in_jmespath_is_reported_with_the_fix(tmp_path, capsys):
    rules = _rule(tmp_path, 'when: "enabled == false"\n')
    assert main(["validate", str(rules)]) == 2
    err = capsys.readouterr().err
    assert f"{rules / 'lint.yml'}:5: [when]" in err
    assert "field named 'false'" in err and "`false`" in err


def test_a_bare_number_in_jmespath_says_how_to_write_it(tmp_path, capsys):
    rules = _rule(tmp_path, 'when: "count == 5"\n')
    assert main(["validate", str(rules)]) == 2
    assert "a number in a JMESPath comparison is a literal: `5`" in capsys.readouterr().err


def test_literals_in_backquotes_pass(tmp_path, capsys):
    rules = _rule(tmp_path, 'when: "enabled == `false` && x != `null`"\n')
    assert main(["validate", str(rules)]) == 0


def test_a_missing_events_file_is_a_validate_error(tmp_path, capsys):
    body = "tests:\n  - name: from a file\n    events_file: nowhere.jsonl\n    alerts: 1\n"
    rules = _rule(tmp_path, body)
    assert main(["validate", str(rules)]) == 2
    err = capsys.readouterr().err
    assert f"{rules / 'lint.yml'}:7: [tests.0.events_file]" in err
    assert "nowhere.jsonl not found" in err


def test_a_missing_event_file_too(tmp_path, capsys):
    body = "tests:\n  - name: from a file\n    event_file: nowhere.json\n    expect: true\n"
    rules = _rule(tmp_path, body)
    assert main(["validate", str(rules)]) == 2
    assert "[tests.0.event_file]" in capsys.readouterr().err


def test_a_test_that_cannot_fail_is_a_warning(tmp_path, capsys):
    body = (
        "tests:\n  - name: nothing at all\n    events_file: empty.jsonl\n    alerts: 0\n"
        f"  - name: other type\n    event: {EVENT.replace('org_sso_toggled', 'chat_created')}\n"
        "    expect: false\n"
    )
    rules = _rule(tmp_path, body)
    (rules / "empty.jsonl").write_text("", encoding="utf-8")
    assert main(["validate", str(rules)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "'nothing at all' cannot fail" in err
    assert "other type" not in err


def test_detect_test_recaps_failures_and_can_print_only_them(tmp_path, capsys):
    body = (
        f"tests:\n  - name: fires\n    event: {EVENT}\n    expect: true\n"
        f"  - name: wrongly quiet\n    event: {EVENT}\n    expect: false\n"
    )
    rules = _rule(tmp_path, body)
    assert main(["test", str(rules)]) == 1
    out = capsys.readouterr().out
    assert "PASS  acme.lint :: fires" in out
    recap = out[out.index("failed (1):") :]
    assert "acme.lint :: wrongly quiet" in recap and "1 passed, 1 failed" in recap
    assert main(["test", str(rules), "--failures-only"]) == 1
    out = capsys.readouterr().out
    assert "PASS" not in out and "FAIL  acme.lint :: wrongly quiet" in out
