"""Panther rules live: the functions' fallbacks, errors and thresholds, through the real
evaluator, correlator and pipeline (panther_core's batch-mode semantics)."""

from __future__ import annotations

import pytest

from .conftest import PantherDir, activity, opened, run

HIT = "def rule(event):\n    return event.get('type') == 'org_sso_toggled'\n"


def one_alert(pack: PantherDir, module: str, extra: str = "", **fields):
    pack.rule("Test.Rule", module, extra=extra)
    changes = run(pack.load(), [activity(**fields)])
    alerts = opened(changes)
    assert len(alerts) == 1, [c.alert.to_dict() for c in changes]
    return alerts[0]


def test_title_falls_back_to_display_name_then_rule_id(panther_dir: PantherDir) -> None:
    alert = one_alert(panther_dir, HIT, "DisplayName: Shown name\n")
    assert alert.title == "Shown name" and alert.rule_name == "Shown name"
    # Without title() the dedup string is Panther's default, not the display name.
    assert alert.dedup_key == "defaultDedupString:Test.Rule"


def test_title_without_display_name_is_the_rule_id(tmp_path) -> None:
    alert = one_alert(PantherDir(tmp_path / "p"), HIT)
    assert alert.title == "Test.Rule"


def test_dedup_falls_back_to_the_title(panther_dir: PantherDir) -> None:
    alert = one_alert(panther_dir, HIT + "def title(event):\n    return 'T ' + event['type']\n")
    assert alert.title == alert.dedup_key == "T org_sso_toggled"


def test_an_empty_dedup_is_the_default_string(panther_dir: PantherDir) -> None:
    module = HIT + "def title(event):\n    return 'T'\n\ndef dedup(event):\n    return ''\n"
    assert one_alert(panther_dir, module).dedup_key == "defaultDedupString:Test.Rule"


def test_long_titles_and_dedups_are_cut_as_panther_cuts_them(panther_dir) -> None:
    module = (
        HIT
        + "def title(event):\n    return 'x' * 1500\n\ndef dedup(event):\n    return 'y' * 2000\n"
    )
    alert = one_alert(panther_dir, module)
    assert len(alert.title) == 1000 and alert.title.endswith("... (truncated)")
    assert len(alert.dedup_key) == 1000 and alert.dedup_key.startswith("yyy")


@pytest.mark.parametrize(
    ("returned", "expected"),
    [("'CRITICAL'", "critical"), ("'low'", "low"), ("'DEFAULT'", "high"), ("'urgent'", "high")],
)
def test_severity_levels_default_and_invalid(panther_dir, returned, expected) -> None:
    panther_dir.rule(
        "Test.Sev", HIT + f"def severity(event):\n    return {returned}\n", severity="High"
    )
    (alert,) = opened(run(panther_dir.load(), [activity()]))
    assert alert.severity == expected


def test_function_errors_fall_back_to_defaults_and_the_alert_fires(panther_dir) -> None:
    module = HIT + (
        "def title(event):\n    raise ValueError('no title')\n\n"
        "def dedup(event):\n    return 42\n\n"
        "def severity(event):\n    return None\n\n"
        "def alert_context(event):\n    raise KeyError('ctx')\n\n"
        "def runbook(event):\n    raise RuntimeError('rb')\n"
    )
    alert = one_alert(panther_dir, module, "Runbook: the YAML runbook\n")
    assert alert.title == "Test.Rule"  # Panther uses the rule id when title() fails
    assert alert.dedup_key == "defaultDedupString:Test.Rule"
    assert alert.severity == "medium"
    assert alert.context == {"_error": "KeyError('ctx')"}
    assert alert.runbook == "the YAML runbook"
    assert alert.kind == "detection"


def test_alert_context_must_be_a_json_mapping(panther_dir: PantherDir) -> None:
    module = HIT + "def alert_context(event):\n    return {'when': object()}\n"
    alert = one_alert(panther_dir, module)
    assert alert.context["_error"].startswith("TypeError(")


def test_alert_context_values_from_the_event_are_plain_json(panther_dir) -> None:
    module = HIT + (
        "def alert_context(event):\n"
        "    return {'actor': event.get('actor'), 'ips': event.get('p_any_ip_addresses')}\n"
    )
    alert = one_alert(panther_dir, module)
    assert alert.context["actor"]["email_address"] == "ana@example.com"
    assert alert.context["ips"] == ["198.51.100.7"]


def test_oversized_alert_context_is_replaced_by_an_error(panther_dir: PantherDir) -> None:
    module = HIT + "def alert_context(event):\n    return {'big': 'x' * 300000}\n"
    context = one_alert(panther_dir, module).context
    assert list(context) == ["_error"] and "bigger than maximum" in context["_error"]


def test_destinations_empty_suppresses_none_keeps_default(panther_dir: PantherDir) -> None:
    panther_dir.rule(
        "Test.Dest",
        HIT + "def dedup(event):\n    return event.get('organization_id')\n\n"
        "def destinations(event):\n"
        "    return {'a': [], 'b': None}.get(event.get('route'), ['secops', 'soar'])\n",
        extra="OutputIds: [static]\n",
    )
    changes = run(
        panther_dir.load(),
        [
            activity(route="a"),
            activity(route="b", organization_id="org_02"),
            activity(route="c", organization_id="org_03"),
        ],
    )
    by_org = {a.organization_ids[0]: a.destinations for a in opened(changes)}
    assert by_org == {"org_01": [], "org_02": None, "org_03": ["secops", "soar"]}


def test_output_ids_are_the_static_destinations(panther_dir: PantherDir) -> None:
    assert one_alert(panther_dir, HIT, "OutputIds: [static]\n").destinations == ["static"]


def test_description_and_reference_functions_reach_the_alert(panther_dir) -> None:
    module = HIT + (
        "def description(event):\n    return 'about ' + event['actor']['email_address']\n\n"
        "def reference(event):\n    return 'https://example.com/' + event['type']\n"
    )
    alert = one_alert(panther_dir, module, "Description: static\nReference: https://static\n")
    assert alert.description == "about ana@example.com"
    assert alert.reference == "https://example.com/org_sso_toggled"


@pytest.mark.parametrize(
    "body", ["    return event['no_such_key']\n", "    return event.get('type')\n"]
)
def test_rule_exceptions_and_non_booleans_are_rule_errors(panther_dir, body) -> None:
    panther_dir.rule("Test.Broken", "def rule(event):\n" + body)
    changes = run(panther_dir.load(), [activity(), activity()])
    (alert,) = [c.alert for c in changes if c.change == "closed"]
    assert alert.kind == "rule_error" and alert.event_count == 2
    assert alert.context["error_type"] in ("KeyError", "FunctionReturnTypeError")


def test_rules_see_panthers_p_fields_live(panther_dir: PantherDir) -> None:
    module = HIT + (
        "def title(event):\n"
        "    return event.get('p_log_type') + ' ' + str(event.event_time_epoch())\n"
    )
    alert = one_alert(panther_dir, module)
    assert alert.title == "Anthropic.Activity 1777881600"


def test_simple_detection_outputs(panther_dir: PantherDir) -> None:
    panther_dir.rule(
        "Test.Simple",
        extra="""
        Detection:
          - Key: type
            Condition: Equals
            Value: claude_user_role_updated
        AlertTitle: "{user_email} is now {current_role}"
        GroupBy:
          - KeyPath: user_id
          - DeepKey: [actor, email_address]
        AlertContext:
          - KeyName: role
            KeyValue: {KeyPath: current_role}
        DynamicSeverities:
          - ChangeTo: Critical
            Conditions:
              - KeyPath: current_role
                Condition: Equals
                Value: owner
        """,
    )
    changes = run(
        panther_dir.load(),
        [
            activity("claude_user_role_updated", current_role="admin", user_id="u1"),
            activity("claude_user_role_updated", current_role="owner", user_id="u2"),
            activity("claude_user_role_updated", user_id="u3"),
        ],
    )
    alerts = sorted(opened(changes), key=lambda a: a.dedup_key)
    assert [(a.title, a.dedup_key, a.severity) for a in alerts] == [
        ("<none> is now admin", "u1:ana@example.com", "medium"),
        ("<none> is now owner", "u2:ana@example.com", "critical"),
        ("<none> is now <none>", "u3:ana@example.com", "medium"),
    ]
    assert alerts[1].context == {"role": "owner"}


def test_a_simple_detection_without_title_or_group_by(panther_dir: PantherDir) -> None:
    panther_dir.rule("Test.Plain", extra="Detection:\n  - Condition: AlwaysTrue\n")
    (alert,) = opened(run(panther_dir.load(), [activity()]))
    assert (alert.title, alert.dedup_key) == ("Test.Plain", "defaultDedupString:Test.Plain")


def test_simple_detections_pinning_type_are_indexed_by_it(panther_dir: PantherDir) -> None:
    panther_dir.rule(
        "Test.Pinned",
        extra="Detection:\n  - KeyPath: type\n    Condition: IsIn\n    Values: [a, b]\n",
    )
    (rule,) = panther_dir.load().rules
    assert rule.types == frozenset({"a", "b"})


def test_inline_filters_run_before_the_rule(panther_dir: PantherDir) -> None:
    panther_dir.rule(
        "Test.Filtered",
        "def rule(event):\n    raise AssertionError('must not run')\n",
        extra="InlineFilters:\n  - KeyPath: type\n    Condition: Equals\n    Value: other\n",
    )
    assert opened(run(panther_dir.load(), [activity()])) == []


def test_skipped_rules_are_not_evaluated(panther_dir: PantherDir) -> None:
    panther_dir.rule(
        "Test.Okta", "def rule(event):\n    return True\n", log_types="[Okta.SystemLog]"
    )
    assert opened(run(panther_dir.load(), [activity()])) == []


# -- thresholds: Panther's window opens at the first match ------------------------------

THRESHOLD = """
def rule(event):
    return event.get('type') == 'sso_login_failed'

def dedup(event):
    return event.deep_get('actor', 'ip_address')
"""


def failures(*minutes: float, ip: str = "203.0.113.9") -> list[dict]:
    return [
        activity(
            "sso_login_failed",
            created_at=f"2026-05-04T08:{int(m):02d}:{int(m * 60) % 60:02d}Z",
            actor={"type": "unauthenticated_user_actor", "ip_address": ip},
        )
        for m in minutes
    ]


@pytest.fixture
def threshold_rule(panther_dir: PantherDir):
    panther_dir.rule("Test.Threshold", THRESHOLD, extra="Threshold: 3\nDedupPeriodMinutes: 10\n")
    return panther_dir.load()


def test_threshold_fires_once_count_matches_joined_the_window(threshold_rule) -> None:
    changes = run(threshold_rule, failures(0, 1, 2, 3, 4))
    (alert,) = opened(changes)
    final = [c.alert for c in changes if c.change == "closed"]
    assert alert.event_count == 3
    assert final[0].event_count == 5 and final[0].first_event_at.minute == 0


def test_threshold_window_is_anchored_at_the_first_match(threshold_rule) -> None:
    # 6, 12 and 13 fall within ten minutes, so a sliding window would fire at 13; Panther's
    # window opened at 0 holds only 0 and 6, and the one opened at 12 only 12 and 13.
    assert opened(run(threshold_rule, failures(0, 6, 12, 13))) == []


def test_threshold_counts_per_dedup_string(threshold_rule) -> None:
    events = failures(0, 1, ip="192.0.2.1") + failures(2, ip="192.0.2.2")
    assert opened(run(threshold_rule, sorted(events, key=lambda e: e["created_at"]))) == []


def test_a_new_window_opens_after_the_old_one(threshold_rule) -> None:
    alerts = opened(run(threshold_rule, failures(0, 1, 2, 10, 11, 12)))
    assert [a.first_event_at.minute for a in alerts] == [0, 10]


def test_panther_rules_never_make_the_evaluator_build_the_native_event(panther_dir, monkeypatch):
    from engine.activity import parse_activity
    from engine.detection import evaluator as evaluator_module
    from engine.detection.evaluator import Evaluator

    for n in range(2):
        panther_dir.rule(f"Test.Sso{n}", "def rule(event):\n    return event.get('type') != 'x'\n")
    evaluator = Evaluator(panther_dir.load())
    monkeypatch.setattr(
        evaluator_module.Event, "of", lambda *args: pytest.fail("built an Event for Panther")
    )
    matches, errors = evaluator.evaluate(parse_activity(activity()))
    assert errors == []
    assert sorted(m.rule.id for m in matches) == ["Test.Sso0", "Test.Sso1"]
