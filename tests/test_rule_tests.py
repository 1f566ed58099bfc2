"""`detect test` (exit codes, diffs, `-k`, JSON) and the pytest plugin that collects the
same inline tests as pytest items."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

SSO_RULE = """
id: t.sso
name: SSO disabled
severity: high
match:
  type: org_sso_toggled
  enabled: false
title: "SSO disabled by {actor.email_address}"
dedup:
  key: "{organization_id}"
context: [actor.ip_address]
tests:
  - name: disabled fires
    event:
      id: a1
      created_at: "2026-05-07T10:00:00Z"
      type: org_sso_toggled
      enabled: false
      organization_id: org_01
      actor: {type: user_actor, email_address: ana@example.com, ip_address: 192.0.2.7}
    expect: true
    title: SSO disabled by ana@example.com
    dedup: org_01
    severity: high
    context: {actor.ip_address: 192.0.2.7}
  - name: enabled wrongly expected to fire
    event:
      id: a2
      created_at: "2026-05-07T10:00:00Z"
      type: org_sso_toggled
      enabled: true
      actor: {type: user_actor}
    expect: true
"""

BRUTE_RULE = """
id: t.brute
name: Brute force
severity: medium
match: {type: login_failed}
dedup: {key: "{organization_id}"}
threshold: {count: 3, window: 10m}
tests:
  - name: three failures in ten minutes fire once
    events_file: failures.jsonl
    alerts: 1
    dedup: org_01
"""


def failure(n: int, minute: int) -> str:
    return json.dumps(
        {
            "id": f"f{n}",
            "created_at": f"2026-05-07T10:{minute:02d}:00Z",
            "type": "login_failed",
            "organization_id": "org_01",
            "actor": {"type": "user_actor", "user_id": "user_01"},
        }
    )


@pytest.fixture
def test_rules(rules_dir):
    rules_dir.write("sso.yml", SSO_RULE)
    rules_dir.write("brute.yml", BRUTE_RULE)
    rules_dir.write(
        "failures.jsonl", "\n".join(failure(n, m) for n, m in enumerate([0, 3, 5, 7])) + "\n"
    )
    return rules_dir


def test_detect_test_reports_a_failure_with_a_diff_and_exits_1(cli, test_rules):
    code, out, _ = cli("test", str(test_rules.path))
    assert code == 1
    path = test_rules.path.resolve() / "sso.yml"
    assert out.splitlines() == [
        "PASS  t.brute :: three failures in ten minutes fire once",
        "PASS  t.sso :: disabled fires",
        "FAIL  t.sso :: enabled wrongly expected to fire",
        f"      at {path}:25",
        "      expect (rule holds):",
        "        - expected: True",
        "        + actual:   False",
        "",
        "failed (1):",
        f"  t.sso :: enabled wrongly expected to fire  ({path}:25) expect (rule holds):",
        "2 passed, 1 failed",
    ]


def test_detect_test_diffs_a_wrong_title(cli, rules_dir):
    rules_dir.write(
        "sso.yml",
        SSO_RULE.replace("title: SSO disabled by ana@example.com", "title: SSO off by ana"),
    )
    code, out, _ = cli("test", str(rules_dir.path), "-k", "disabled fires")
    assert code == 1
    assert "      title:\n        - expected: 'SSO off by ana'\n" in out
    assert "        + actual:   'SSO disabled by ana@example.com'\n" in out
    assert out.endswith("0 passed, 1 failed\n")


def test_k_selects_tests(cli, test_rules):
    code, out, _ = cli("test", str(test_rules.path), "-k", "DISABLED FIRES")
    assert code == 0
    assert out.splitlines() == ["PASS  t.sso :: disabled fires", "1 passed, 0 failed"]
    code, out, _ = cli("test", str(test_rules.path), "-k", "t.brute")
    assert code == 0
    assert out.splitlines()[-1] == "1 passed, 0 failed"


def test_k_selecting_nothing(cli, test_rules):
    code, out, err = cli("test", str(test_rules.path), "-k", "no such test")
    assert code == 0
    assert out == "0 passed, 0 failed\n"
    assert err == "no tests matched\n"


def test_json_format(cli, test_rules):
    code, out, _ = cli("test", str(test_rules.path), "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert (report["passed"], report["failed"]) == (2, 1)
    assert [(r["rule_id"], r["test"], r["passed"]) for r in report["results"]] == [
        ("t.brute", "three failures in ten minutes fire once", True),
        ("t.sso", "disabled fires", True),
        ("t.sso", "enabled wrongly expected to fire", False),
    ]
    failed = report["results"][2]
    assert failed["line"] == 25
    assert failed["file"].endswith("sso.yml")
    assert failed["failures"] == [
        "expect (rule holds):",
        "  - expected: True",
        "  + actual:   False",
    ]


def test_a_stateful_test_counting_the_wrong_number_of_alerts(cli, rules_dir):
    rules_dir.write("brute.yml", BRUTE_RULE.replace("alerts: 1", "alerts: 2"))
    rules_dir.write("failures.jsonl", "\n".join(failure(n, m) for n, m in enumerate([0, 3, 5])))
    code, out, _ = cli("test", str(rules_dir.path))
    assert code == 1
    assert "      alerts:\n        - expected: 2\n        + actual:   1\n" in out
    assert "org_01" in out


def test_an_invalid_rule_file_exits_2(cli, test_rules):
    bad = test_rules.write(
        "bad.yml", "id: t.bad\nname: Bad\nseverity: high\nmatch: {type: x}\nx: 1\n"
    )
    code, out, err = cli("test", str(test_rules.path))
    assert code == 2
    assert out == ""
    assert f"error: {bad}:5: [x] unknown key 'x'" in err


def test_all_passing_exits_0(cli, rules_dir):
    rules_dir.write("brute.yml", BRUTE_RULE)
    rules_dir.write("failures.jsonl", "\n".join(failure(n, m) for n, m in enumerate([0, 3, 5])))
    code, out, _ = cli("test", str(rules_dir.path))
    assert code == 0
    assert out.splitlines()[-1] == "1 passed, 0 failed"


# -- the pytest plugin ---------------------------------------------------------------------


def pytest_in(folder, *args: str) -> subprocess.CompletedProcess[str]:
    plugin_active = any(
        ep.value == "engine.testing.pytest_plugin" for ep in entry_points(group="pytest11")
    )
    extra = [] if plugin_active else ["-p", "engine.testing.pytest_plugin"]
    (folder / "pytest.ini").write_text("[pytest]\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *extra, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_pytest_collects_rule_tests_and_reports_a_failing_one(test_rules, tmp_path):
    collected = pytest_in(tmp_path, "--collect-only", "-q", "rules")
    assert collected.returncode == 0, collected.stdout + collected.stderr
    items = [line for line in collected.stdout.splitlines() if "::" in line]
    assert items == [
        "rules/brute.yml::t.brute::three failures in ten minutes fire once",
        "rules/sso.yml::t.sso::disabled fires",
        "rules/sso.yml::t.sso::enabled wrongly expected to fire",
    ]
    result = pytest_in(tmp_path, "-rA", "rules")
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "PASSED rules/sso.yml::t.sso::disabled fires" in out
    assert "FAILED rules/sso.yml::t.sso::enabled wrongly expected to fire" in out
    assert "expect (rule holds):\n  - expected: True\n  + actual:   False" in out
    assert "1 failed, 2 passed" in out


def test_pytest_reports_an_invalid_rule_file(rules_dir, tmp_path):
    rules_dir.write(
        "bad.yml",
        "id: t.bad\nname: Bad\nseverity: urgent\nmatch: {type: x}\n"
        "tests:\n  - {name: n, event: {}, expect: true}\n",
    )
    result = pytest_in(tmp_path, "rules")
    assert result.returncode == 1
    assert "invalid rule file:" in result.stdout
    assert "[severity] 'urgent' is not one of" in result.stdout
