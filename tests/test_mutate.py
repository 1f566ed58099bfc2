"""`detect test --mutate`: mutants of a rule's definition, run against its own tests."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from engine.cli import main
from engine.rule_formats import load_rules
from engine.testing.mutants import generate
from engine.testing.mutate import mutate_rules

REPO = Path(__file__).resolve().parent.parent


def _event(number: int, minute: int, **extra: object) -> str:
    fields = {
        "id": f"activity_{number:04d}",
        "created_at": f"2026-05-04T10:{minute:02d}:00.000000Z",
        "organization_id": "org_1",
        "type": "sso_login_failed",
        "actor": {"type": "user_actor", "ip_address": "192.0.2.7"},
        **extra,
    }
    return json.dumps(fields)


def _threshold_rule(tests: str) -> str:
    return textwrap.dedent(
        """\
        id: test.failures
        name: Failures
        severity: low
        match:
          type: sso_login_failed
          actor.ip_address: {exists: true}
        threshold: {count: 3, window: 10m}
        title: "failures from {actor.ip_address}"
        dedup: {key: "{actor.ip_address}"}
        tests:
        """
    ) + textwrap.indent(textwrap.dedent(tests), "  ")


FAR_TESTS = """\
- name: ten failures fire
  events: [{ten}]
  alerts: 1
- name: one failure is quiet
  events: [{one}]
  alerts: 0
- name: a success is not a failure
  event: {success}
  expect: false
"""


def _far(tmp_path: Path) -> Path:
    ten = ", ".join(_event(i, i) for i in range(10))
    tests = FAR_TESTS.format(
        ten=ten, one=_event(50, 0), success=_event(60, 0, type="sso_login_succeeded")
    )
    (tmp_path / "failures.yml").write_text(_threshold_rule(tests))
    return tmp_path


def test_tests_far_from_the_threshold_leave_the_count_mutants_alive(tmp_path, capsys):
    rules = _far(tmp_path)
    assert main(["test", "--mutate", str(rules), "--min-score", "100"]) == 1
    out = capsys.readouterr().out
    assert "survived: threshold.count 3 -> 4" in out
    assert "no test fires with exactly 3 matches" in out
    assert "survived: threshold.count 3 -> 2" in out
    assert "no test sits at count-1" in out
    assert "survived: guard `actor.ip_address: {exists: true}` removed" in out
    assert "no test activity lacks actor.ip_address" in out
    assert "below the minimum score 100%" in out
    assert "pack mutation score" in out and "rules in" in out  # the elapsed time


def test_boundary_tests_kill_the_count_mutants(tmp_path, capsys):
    three = ", ".join(_event(i, 0) for i in range(2)) + ", " + _event(2, 9)
    two = ", ".join(_event(10 + i, i) for i in range(2))
    edge = ", ".join(_event(20 + i, m) for i, m in enumerate((0, 5, 10)))
    bare = ", ".join(
        _event(30 + i, i, actor={"type": "user_actor", "ip_address": None}) for i in range(3)
    )
    tests = f"""\
    - name: three failures, the last just inside ten minutes, fire
      events: [{three}]
      alerts: 1
      dedup: 192.0.2.7
    - name: two failures are quiet
      events: [{two}]
      alerts: 0
    - name: the third failure exactly ten minutes after the first is outside
      events: [{edge}]
      alerts: 0
    - name: failures without an address are not counted
      events: [{bare}]
      alerts: 0
    - name: a success is not a failure
      event: {_event(60, 0, type="sso_login_succeeded")}
      expect: false
    """
    (tmp_path / "failures.yml").write_text(_threshold_rule(tests))
    assert main(["test", "--mutate", str(tmp_path), "--min-score", "100"]) == 0
    out = capsys.readouterr().out
    assert "100.0%  test.failures" in out
    assert "survived:" not in out


def test_json_report_and_scores(tmp_path, capsys):
    rules = _far(tmp_path)
    assert main(["test", "--mutate", str(rules), "--format", "json"]) == 0  # no minimum
    report = json.loads(capsys.readouterr().out)
    (rule,) = report["rules"]
    assert rule["rule_id"] == "test.failures"
    assert rule["survived"] >= 3
    assert rule["killed"] + rule["survived"] + rule["equivalent"] + rule["invalid"] == len(
        rule["results"]
    )
    survivors = {r["change"] for r in rule["results"] if r["status"] == "survived"}
    assert "threshold.count 3 -> 4" in survivors
    count = next(r for r in rule["results"] if r["change"] == "threshold.count 3 -> 4")
    assert count["line"] == 7 and count["hint"].startswith("no test fires with exactly 3")
    assert report["score"] == pytest.approx(
        100 * report["killed"] / (report["killed"] + report["survived"]), abs=0.1
    )
    assert report["seconds"] > 0


def test_a_rule_whose_tests_fail_is_reported_and_fails(tmp_path, capsys):
    rules = _far(tmp_path)
    text = (rules / "failures.yml").read_text().replace("alerts: 1", "alerts: 2")
    (rules / "failures.yml").write_text(text)
    assert main(["test", "--mutate", str(rules)]) == 1
    assert "its own tests fail" in capsys.readouterr().out


def _rule(tmp_path: Path, text: str, python: str | None = None):
    (tmp_path / "rule.yml").write_text(textwrap.dedent(text))
    if python is not None:
        (tmp_path / "rule_code.py").write_text(textwrap.dedent(python))
    (rule,) = load_rules([tmp_path]).rules
    return rule


def test_mutants_of_every_kind_of_definition(tmp_path):
    rule = _rule(
        tmp_path,
        """\
        id: test.kinds
        name: Kinds
        severity: low
        match:
          type: [a, b]
          actor.ip_address: {exists: true, not_cidr: 10.0.0.0/8}
          count: {gt: 3}
          actor.type: user_actor
        when: "x == `1`"
        threshold: {count: 2, window: 1h, distinct: user_id}
        dedup: {key: "{organization_id}:{actor.user_id}"}
        """,
    )
    changes = {m.change for m in generate(rule)}
    assert {
        "threshold.count 2 -> 3",
        "threshold.count 2 -> 1",
        "threshold.window 1h halved to 30m",
        "threshold.window 1h doubled to 2h",
        "threshold.distinct (user_id) removed",
        "`count: {gt: 3}` became `gte`",
        "`actor.ip_address: {not_cidr: 10.0.0.0/8}` became `cidr`",
        "`exists: true` removed from `actor.ip_address`",
        "`type: [a, b]` became `{not_in: [a, b]}`",
        "`actor.type: user_actor` became `{not_equals: user_actor}`",
        "condition `actor.type: user_actor` removed",
        "`when` negated: !(x == `1`)",
        "`when` removed",
        "dedup key part {organization_id} removed ('{actor.user_id}')",
        "dedup key part {actor.user_id} removed ('{organization_id}')",
    } <= changes
    equivalent = {m.change: m.equivalent for m in generate(rule) if m.equivalent}
    # not_cidr is false on a missing address: the exists beside it decides nothing.
    assert "`exists: true` removed from `actor.ip_address`" in equivalent


def test_new_value_and_sequence_mutants_and_their_equivalents(tmp_path):
    rule = _rule(
        tmp_path,
        """\
        id: test.new
        name: New
        severity: low
        match:
          type: x
          actor.ip_address: {exists: true}
        new_value: {of: actor.ip_address, per: actor.user_id, forget: 30d}
        """,
    )
    mutants = {m.change: m for m in generate(rule)}
    assert mutants["guard `actor.ip_address: {exists: true}` removed"].equivalent
    for change in (
        "new_value.forget 30d halved to 15d",
        "new_value.forget 30d doubled to 60d",
        "new_value.forget 30d removed (the default 90d)",
        "new_value.per (actor.user_id) removed",
        "new_value.learn_from matches -> all",
        "new_value.alert_on_first false -> true",
    ):
        assert change in mutants and mutants[change].equivalent is None

    sequence = tmp_path / "seq"
    sequence.mkdir()
    rule = _rule(
        sequence,
        """\
        id: test.seq
        name: Seq
        severity: low
        sequence:
          within: 15m
          steps:
            - {match: {type: failed}, by: actor.user_id}
            - {match: {type: failed}, by: actor.user_id}
            - {match: {type: ok, actor.user_id: {exists: true}}, by: actor.user_id}
        """,
    )
    mutants = {m.change: m for m in generate(rule)}
    assert mutants["sequence steps 1 and 2 swapped"].equivalent == "the two steps are identical"
    assert mutants["sequence steps 2 and 3 swapped"].equivalent is None
    assert "sequence step 3 removed" in mutants
    assert "sequence.within 15m halved to 450s" in mutants
    # A step skips activities without its `by` value: a guard on that path is equivalent.
    assert mutants["guard `actor.user_id: {exists: true}` removed"].equivalent


def test_python_rule_comparisons_are_flipped(tmp_path, capsys):
    far = _event(1, 0, type="x", n=10)
    low = _event(2, 0, type="x", n=0)
    _rule(
        tmp_path,
        f"""\
        id: test.python
        name: Python
        severity: low
        match: {{type: x}}
        python: rule_code.py
        tests:
          - name: far above fires
            event: {far}
            expect: true
          - name: far below is quiet
            event: {low}
            expect: false
        """,
        """\
        def rule(event):
            return event.get("type") == "x" and event.get("n") > 3
        """,
    )
    assert main(["test", "--mutate", str(tmp_path), "--min-score", "100"]) == 1
    out = capsys.readouterr().out
    assert "rule_code.py:2 in rule(): `>` became `>=`" in out
    # The match's type is checked by rule() as well: dropping it is equivalent.
    assert "(1 equivalent)" in out
    ruleset = load_rules([tmp_path])
    (report,) = mutate_rules(ruleset).rules
    kinds = {r.mutant.change: r.status for r in report.results}
    assert kinds["rule_code.py:2 in rule(): `==` became `!=`"] == "killed"
    assert kinds["rule_code.py:2 in rule(): `and` became `or`"] == "killed"


def test_the_shipped_pack_meets_its_minimum_score(capsys):
    assert main(["test", "--mutate", str(REPO / "rules"), "--min-score", "90"]) == 0
    out = capsys.readouterr().out
    assert "pack mutation score" in out
