"""`Tests:` of Panther rules through `detect test` and pytest: panther_analysis_tool's
verdicts, mocks, destinations, and the opt-in exact checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from engine.testing.runner import collect, run_tests

from .conftest import FIXTURES, REPO, PantherDir

LOG = "    Log: {type: hit, actor: {email_address: Ana@Example.com}}\n"


def results(pack: PantherDir, **options) -> dict[str, tuple[bool, list[str]]]:
    ruleset = pack.load(**options)
    return {r.test.name: (r.passed, r.failures) for r in run_tests(collect(ruleset), ruleset)}


def case(name: str, expected: bool, extra: str = "", log: str = LOG) -> str:
    return f"- Name: {name}\n  ExpectedResult: {str(expected).lower()}\n" + extra + log[2:]


def test_verdicts_follow_panther_analysis_tool(panther_dir: PantherDir) -> None:
    panther_dir.rule(
        "Test.Verdicts",
        "def rule(event):\n    return event.get('type') == 'hit'\n\n"
        "def title(event):\n    return event['missing']\n",
        tests=case("positive with a failing title", True)
        + case("negative with a failing title", False, log="    Log: {type: miss}\n")
        + case("wrong expectation", False),
    )
    found = results(panther_dir)
    assert found["positive with a failing title"] == (
        False,
        ["title() raised KeyError: 'missing'"],
    )
    assert found["negative with a failing title"] == (True, [])
    assert found["wrong expectation"][1] == ["ExpectedResult: false, but the rule returned True"]


def test_mocks_apply_to_one_test_and_are_restored(panther_dir: PantherDir) -> None:
    panther_dir.helper("lookups", "def owner(x):\n    return 'real'\n")
    panther_dir.rule(
        "Test.Mocked",
        "from lookups import owner\n\ndef rule(event):\n    return owner(event) == 'mocked'\n",
        tests=case("mocked", True, "  Mocks:\n    - objectName: owner\n      returnValue: mocked\n")
        + case("not mocked any more", False)
        + case("unknown name", True, "  Mocks:\n    - objectName: nope\n      returnValue: x\n"),
    )
    ruleset = panther_dir.load()
    found = {r.test.name: r for r in run_tests(collect(ruleset), ruleset)}
    assert found["mocked"].passed and found["not mocked any more"].passed
    assert not found["unknown name"].passed
    assert "no 'nope' to replace" in found["unknown name"].failures[0]
    module = ruleset.rules[0].module
    assert module.owner(None) == "real"


def test_expected_destinations(panther_dir: PantherDir) -> None:
    panther_dir.rule(
        "Test.Dest",
        "def rule(event):\n    return True\n\n"
        "def destinations(event):\n    return {'q': [], 'n': None}.get(event['type'], ['pager'])\n",
        tests=case("named", True, "  ExpectedDestinations: [pager]\n")
        + case("suppressed", True, "  ExpectedDestinations: []\n", "    Log: {type: q}\n")
        + case("default is not none", True, "  ExpectedDestinations: []\n", "    Log: {type: n}\n")
        + case("unexpected name", True, "  ExpectedDestinations: [slack]\n"),
    )
    verdicts = {k: v[0] for k, v in results(panther_dir).items()}
    assert verdicts == {
        "named": True,
        "suppressed": True,
        "default is not none": False,
        "unexpected name": False,
    }


def test_printed_output_is_shown_on_failure(panther_dir: PantherDir) -> None:
    panther_dir.rule(
        "Test.Printing",
        "def rule(event):\n    print('saw', event['type'])\n    return False\n",
        tests=case("fails", True),
    )
    (passed, failures) = results(panther_dir)["fails"]
    assert not passed and failures[-2:] == ["the rule printed:", "  saw hit"]


def test_simple_detection_tests_run_without_a_backend(panther_dir: PantherDir) -> None:
    panther_dir.rule(
        "Test.Simple",
        extra="Detection:\n  - Key: type\n    Condition: Equals\n    Value: hit\n",
        tests=case("hit", True) + case("miss", True, log="    Log: {type: miss}\n"),
    )
    found = results(panther_dir)
    assert found["hit"] == (True, [])
    assert found["miss"] == (False, ["ExpectedResult: true, but the rule returned False"])


STRICT_RULE = """
def rule(event):
    return True

def title(event):
    return 'Hello ' + event.deep_get('actor', 'email_address')

def severity(event):
    return 'high'

def alert_context(event):
    return {'who': event.deep_get('actor', 'EMAIL_ADDRESS')}
"""


def test_strict_mode_checks_title_dedup_severity_and_context(panther_dir: PantherDir) -> None:
    panther_dir.rule(
        "Test.Strict",
        STRICT_RULE,
        tests=case(
            "all right",
            True,
            "  ExpectedTitle: Hello Ana@Example.com\n  ExpectedDedup: Hello Ana@Example.com\n"
            "  ExpectedSeverity: High\n  ExpectedAlertContext: {who: Ana@Example.com}\n",
        )
        + case(
            "all wrong",
            True,
            "  ExpectedTitle: Bye\n  ExpectedDedup: x\n  ExpectedSeverity: Low\n"
            "  ExpectedAlertContext: {who: nobody, what: x}\n",
        ),
    )
    found = results(panther_dir, strict=True)
    assert found["all right"] == (True, [])
    passed, failures = found["all wrong"]
    assert not passed
    labels = [line for line in failures if line.endswith(":")]
    assert labels == [
        "ExpectedTitle:",
        "ExpectedDedup:",
        "ExpectedSeverity:",
        "ExpectedAlertContext[who]:",
        "ExpectedAlertContext[what]:",
    ]


def test_outputs_built_from_nested_values_are_panthers(panther_dir: PantherDir) -> None:
    """A title quoting a nested list and the event time, and a rule matching on a list's
    text: the expected values are what panther_analysis_tool 1.11 prints for this rule."""
    panther_dir.rule(
        "Test.Text",
        "def rule(event):\n    return \"'public'\" in str(event.get('audience'))\n\n"
        "def title(event):\n"
        "    return f\"{event.get('audience')} at {event.event_time_epoch()}\"\n",
        tests=case(
            "public",
            True,
            "  ExpectedTitle: \"ImmutableList(({'type': 'public'},)) at 0\"\n",
            log="    Log: {type: x, created_at: '2026-05-04T08:00:00Z',"
            " audience: [{type: public}]}\n",
        )
        + case("organization", False, log="    Log: {type: x, audience: [{type: org}]}\n"),
    )
    found = results(panther_dir, strict=True)
    assert found == {"public": (True, []), "organization": (True, [])}


def test_test_names_and_lines_in_the_native_runner(panther_dir: PantherDir) -> None:
    path = panther_dir.rule(
        "Test.Lines",
        "def rule(event):\n    return True\n",
        tests=case("first", True) + case("second", True),
    )
    ruleset = panther_dir.load()
    tests = collect(ruleset)
    assert [(t.name, t.line) for t in tests] == [("first", 8), ("second", 11)]
    assert tests[0].node_id == "Test.Lines::first" and tests[0].rule.path == path
    assert [t.name for t in collect(ruleset, "SECOND")] == ["second"]


def test_detect_test_on_the_fixture_pack(cli_in_repo) -> None:
    code, out, err = cli_in_repo("test", "fixtures/panther", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["passed"] == 25 and report["failed"] == 0
    assert "skipped: AWS.Console.RootLogin" in err


def test_detect_validate_reports_skipped_rules(cli_in_repo) -> None:
    code, out, err = cli_in_repo("validate", "fixtures/panther")
    assert code == 0 and out.startswith("6 rules valid (1 inactive)")
    assert "skipped: AWS.Console.RootLogin (LogTypes AWS.CloudTrail" in err


def test_cli_helpers_and_strict_options(cli, tmp_path) -> None:
    pack = PantherDir(tmp_path / "pack")
    helpers = PantherDir(tmp_path / "shared")
    helpers.write("greeting.py", "def hello():\n    return 'hi'\n")
    pack.rule(
        "Test.Cli",
        "from greeting import hello\n\ndef rule(event):\n    return hello() == 'hi'\n",
        tests=case("uses the helper", True, "  ExpectedSeverity: Medium\n"),
    )
    code, _, err = cli("test", str(pack.path))
    assert code == 2 and "--panther-strict" in err
    code, _, err = cli("test", str(pack.path), "--panther-strict")
    assert code == 2 and "neither a global helper" in err
    code, out, _ = cli("test", str(pack.path), "--panther-strict", "--helpers", str(helpers.path))
    assert code == 0 and "PASS  Test.Cli :: uses the helper" in out


def test_pytest_collects_panther_tests() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(FIXTURES),
            "-o",
            "addopts=",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "25 passed" in done.stdout
