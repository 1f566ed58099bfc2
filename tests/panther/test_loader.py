"""Loading Panther-format files: Panther's schema, skipped rules, the native side by side."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.errors import RuleLoadError
from engine.panther.rule import PantherRule

from .conftest import FIXTURES, PantherDir

MODULE = "def rule(event):\n    return event.get('type') == 'hit'\n"


def problems_of(pack: PantherDir, **options):
    _, problems = pack.check(**options)
    return problems


def test_the_fixture_pack_loads_with_one_rule_skipped_for_its_log_type() -> None:
    from engine.rule_formats import load_rules

    ruleset = load_rules([FIXTURES])
    active = sorted(r.id for r in ruleset.rules)
    assert active == [
        "Anthropic.APIKey.Created",
        "Anthropic.AdminRole.Granted",
        "Anthropic.OrgSettings.Opened",
        "Anthropic.SSO.Disabled",
        "Anthropic.SignIn.Failures",
    ]
    (skipped,) = ruleset.skipped
    assert skipped.id == "AWS.Console.RootLogin"
    assert "AWS.CloudTrail" in skipped.skip_reason
    assert all(isinstance(r, PantherRule) for r in ruleset.rules)


def test_yaml_fields_map_onto_the_rule(panther_dir: PantherDir) -> None:
    panther_dir.rule(
        "Test.Fields",
        MODULE,
        extra="""
        DisplayName: A display name
        Description: what
        Runbook: do this
        Reference: https://example.com
        Tags: [a, b]
        Reports:
          MITRE ATT&CK: ["TA0005:T1562.001"]
          CIS: ["1.1"]
        OutputIds: [secops]
        DedupPeriodMinutes: 15
        Threshold: 3
        """,
    )
    (rule,) = panther_dir.load().rules
    assert (rule.id, rule.name, rule.severity) == ("Test.Fields", "A display name", "medium")
    assert (rule.description, rule.runbook, rule.reference) == (
        "what",
        "do this",
        "https://example.com",
    )
    assert rule.tags == ["a", "b"] and rule.mitre == ["TA0005:T1562.001"]
    assert rule.destinations == ["secops"]
    assert rule.dedup_window == timedelta(minutes=15)
    assert rule.threshold.count == 3 and rule.threshold.anchored
    assert rule.threshold.window == timedelta(minutes=15)


@pytest.mark.parametrize(("minutes", "window"), [(None, 60), (0, 60), (3, 5), (1440, 1440)])
def test_dedup_period_follows_panthers_limits(panther_dir: PantherDir, minutes, window) -> None:
    extra = f"DedupPeriodMinutes: {minutes}\n" if minutes is not None else ""
    panther_dir.rule("Test.Window", MODULE, extra=extra)
    (rule,) = panther_dir.load().rules
    assert rule.dedup_window == timedelta(minutes=window)


def test_threshold_of_one_is_no_threshold(panther_dir: PantherDir) -> None:
    panther_dir.rule("Test.One", MODULE, extra="Threshold: 1\n")
    assert panther_dir.load().rules[0].threshold is None


def test_unknown_keys_are_errors_with_file_line_and_key(panther_dir: PantherDir) -> None:
    path = panther_dir.rule("Test.Unknown", MODULE, extra="Colour: blue\n")
    (problem,) = problems_of(panther_dir)
    assert problem.path == path and problem.key == "Colour" and problem.line == 7
    assert "unknown key 'Colour'" in problem.message


def test_required_keys_and_types(panther_dir: PantherDir) -> None:
    panther_dir.write(
        "rules/bad.yml",
        """
        AnalysisType: rule
        RuleID: "Bad<id>"
        Enabled: "yes"
        LogTypes: Anthropic.Activity
        Severity: high
        Threshold: true
        """,
    )
    found = {p.key: (p.line, p.message) for p in problems_of(panther_dir)}
    assert found["RuleID"] == (2, 'must be non-empty and must not contain < > & " or %')
    assert found["Enabled"] == (3, "must be true or false, not a string")
    assert found["LogTypes"] == (4, "must be a list of strings, not a string")
    assert "capitalised" in found["Severity"][1]
    assert found["Threshold"] == (6, "must be an integer, not a boolean")
    assert found[""] == (1, "needs one of 'Filename' and 'Detection'")


def test_filename_and_detection_are_exclusive(panther_dir: PantherDir) -> None:
    panther_dir.rule("Test.Both", MODULE, extra="Detection:\n  - Condition: AlwaysTrue\n")
    (problem,) = problems_of(panther_dir)
    assert problem.key == "Detection" and "not both" in problem.message


def test_test_entries_follow_panthers_schema(panther_dir: PantherDir) -> None:
    panther_dir.rule(
        "Test.Tests",
        MODULE,
        tests="""
        - Name: number mock
          ExpectedResult: true
          Mocks:
            - objectName: x
              returnValue: 10
          Log: {type: hit}
        - Name: no log
          ExpectedResult: true
        - Name: typo
          ExpectedResult: true
          Lg: {}
          Log: {type: hit}
        """,
    )
    messages = {p.key: p.message for p in problems_of(panther_dir)}
    assert "string or a boolean" in messages["Tests[0].Mocks[0].returnValue"]
    assert "missing required key 'Log'" in messages["Tests[1]"]
    assert "unknown key 'Lg'" in messages["Tests[2].Lg"]


def test_extension_keys_need_strict_mode(panther_dir: PantherDir) -> None:
    panther_dir.rule(
        "Test.Strict",
        MODULE,
        tests="""
        - Name: titled
          ExpectedResult: true
          ExpectedTitle: Test.Strict
          Log: {type: hit}
        """,
    )
    (problem,) = problems_of(panther_dir, strict=False)
    assert problem.key == "Tests[0].ExpectedTitle" and "--panther-strict" in problem.message
    assert problems_of(panther_dir, strict=True) == []


def test_strict_mode_from_the_environment(panther_dir: PantherDir, monkeypatch) -> None:
    panther_dir.rule(
        "Test.Env",
        MODULE,
        tests="- Name: t\n  ExpectedResult: true\n  ExpectedSeverity: medium\n  Log: {type: hit}\n",
    )
    monkeypatch.setenv("DETECT_PANTHER_STRICT", "1")
    assert problems_of(panther_dir) == []


def test_disabled_signals_and_other_log_types_are_skipped_with_a_reason(panther_dir) -> None:
    panther_dir.rule("Test.Active", MODULE, extra="Status: Experimental\n")
    panther_dir.write(
        "rules/disabled.yml",
        """
        AnalysisType: rule
        RuleID: Test.Disabled
        Enabled: false
        Filename: disabled.py
        LogTypes: [Anthropic.Activity]
        Severity: Low
        """,
    )
    panther_dir.write("rules/disabled.py", MODULE)
    panther_dir.rule("Test.Signal", MODULE, extra="CreateAlert: false\n")
    panther_dir.rule("Test.Other", MODULE, log_types="[Okta.SystemLog]")
    ruleset = panther_dir.load()
    assert [r.id for r in ruleset.rules] == ["Test.Active"]
    reasons = {r.id: r.skip_reason for r in ruleset.skipped}
    assert reasons["Test.Disabled"] == "Enabled: false"
    assert "signal" in reasons["Test.Signal"]
    assert "Okta.SystemLog" in reasons["Test.Other"]


def test_other_analysis_types(panther_dir: PantherDir) -> None:
    panther_dir.write(
        "policies/p.yml",
        "AnalysisType: policy\nPolicyID: Some.Policy\nEnabled: true\nFilename: p.py\n"
        "Severity: Low\n",
    )
    panther_dir.write(
        "packs/p.yml", "AnalysisType: pack\nPackID: Pack\nPackDefinition: {IDs: []}\n"
    )
    panther_dir.write("rules/odd.yml", "AnalysisType: sandwich\nRuleID: x\n")
    ruleset, problems = panther_dir.check()
    assert [r.id for r in ruleset.skipped] == ["Some.Policy"]
    assert "policies check cloud resources" in ruleset.skipped[0].skip_reason
    (problem,) = problems
    assert problem.key == "AnalysisType" and "sandwich" in problem.message


def test_derived_detections_are_refused_by_name(panther_dir: PantherDir) -> None:
    panther_dir.write(
        "rules/derived.yml",
        "AnalysisType: rule\nRuleID: Derived\nBaseDetection: Base\nSeverity: Low\n",
    )
    (problem,) = problems_of(panther_dir)
    assert problem.key == "BaseDetection" and "not supported" in problem.message


def test_duplicate_rule_ids_across_formats(panther_dir: PantherDir) -> None:
    panther_dir.rule("Same.Id", MODULE)
    panther_dir.write(
        "native/same.yml",
        "id: Same.Id\nname: native\nseverity: low\nmatch: {type: hit}\n",
    )
    (problem,) = problems_of(panther_dir)
    assert "duplicate rule id 'Same.Id'" in problem.message


def test_module_problems_name_the_line(panther_dir: PantherDir) -> None:
    panther_dir.rule("Test.Broken", "x = 1\ndef rule(event):\n    return 1 / 0 == 1\nboom()\n")
    panther_dir.rule("Test.NoRule", "def title(event):\n    return 't'\n")
    panther_dir.write(
        "rules/missing.yml",
        "AnalysisType: rule\nRuleID: Test.Missing\nEnabled: true\nFilename: nowhere.py\n"
        "LogTypes: [Anthropic.Activity]\nSeverity: Low\n",
    )
    messages = sorted(p.message for p in problems_of(panther_dir))
    assert any("test_broken.py line 4: NameError" in m for m in messages)
    assert any("does not define a function rule(event)" in m for m in messages)
    assert any("nowhere.py does not exist" in m for m in messages)


def test_unique_with_a_threshold_is_refused(panther_dir: PantherDir) -> None:
    panther_dir.rule(
        "Test.Unique",
        MODULE + "def unique(event):\n    return 'x'\n",
        extra="Threshold: 5\n",
    )
    (problem,) = problems_of(panther_dir)
    assert "unique()" in problem.message


def test_invalid_yaml_is_a_problem(panther_dir: PantherDir) -> None:
    panther_dir.write("rules/bad.yml", "AnalysisType: rule\nRuleID: [unclosed\n")
    (problem,) = problems_of(panther_dir)
    assert problem.line in (2, 3) and "invalid YAML" in problem.message


def test_load_rules_raises_listing_every_problem(panther_dir: PantherDir) -> None:
    panther_dir.rule("A.One", MODULE, extra="Colour: x\n")
    panther_dir.rule("A.Two", MODULE, extra="Flavour: y\n")
    with pytest.raises(RuleLoadError) as raised:
        panther_dir.load()
    assert len(raised.value.problems) == 2
