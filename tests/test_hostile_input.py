"""Issue 18, "Nothing silent": hostile rules and activities give a clear problem, a
quarantined record or a `rule_error`, never a traceback, a hang or invalid JSON. Each
reproduction of the issue is a test here."""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest

from engine.activity import parse_activity, try_parse_activity
from engine.alerts import json_safe
from engine.delivery.webhook import body_for, digest_bodies
from engine.detection.functions import RegexError, compile_regex
from engine.detection.loader import check_rules
from engine.yaml_lines import YamlError, load_yaml
from tests.conftest import at, run_detect, run_pipeline, write_jsonl

# -- regular expressions run on RE2 ------------------------------------------------------


def test_the_catastrophic_pattern_of_the_issue_runs_in_linear_time(rules_dir, make_activity):
    # `^(a+)+$` against a 29-character user agent took 18 s on Python's `re`.
    rules_dir.write(
        "redos.yml",
        "id: t.redos\nname: redos\nseverity: low\n"
        "match: {type: login, actor.user_agent: {regex: '^(a+)+$'}}\n"
        "when: \"regex_match(actor.user_agent, '^(a|aa)+$')\"\n",
    )
    agent = {"type": "user_actor", "user_agent": "a" * 5000 + "!"}
    started = time.monotonic()
    run = run_pipeline(rules_dir.load(), [make_activity(actor=agent) for _ in range(20)])
    assert time.monotonic() - started < 1
    assert run.stats.matches == 0 and run.stats.rule_errors == 0
    holds = {"type": "user_actor", "user_agent": "a" * 29}
    assert run_pipeline(rules_dir.load(), [make_activity(actor=holds)]).stats.matches == 1


@pytest.mark.parametrize(
    "pattern, reason",
    [(r"^(a)\1$", "invalid escape sequence"), ("foo(?=bar)", "invalid perl operator")],
)
def test_validate_refuses_what_re2_cannot_run_naming_file_line_and_key(
    cli, rules_dir, pattern, reason
):
    when = "regex_match(actor.email_address, '" + pattern + "')"
    rules_dir.write(
        "bad.yml",
        "id: t.bad\nname: bad\nseverity: low\nmatch:\n  type: login\n"
        f"  actor.user_agent: {{regex: {json.dumps(pattern)}}}\n"
        f"when: {json.dumps(when)}\n",
    )
    code, out, err = cli("validate", str(rules_dir.path))
    text = out + err
    assert code == 2 and "Traceback" not in text
    assert "bad.yml:6: [match.actor.user_agent]" in text and reason in text
    assert "bad.yml:7: [when]" in text and "no backreferences and no lookarounds" in text


def test_compile_regex_refuses_with_a_reason_and_logs_nothing(capfd):
    with pytest.raises(RegexError, match="lookarounds"):
        compile_regex("(?<=a)b")
    assert capfd.readouterr().err == ""
    assert compile_regex(r"(?i)^admin\d+$").search("ADMIN42") is not None


def test_the_shipped_pack_has_no_pattern_re2_refuses():
    from engine.resources import bundled_rules_dir

    _, problems = check_rules([bundled_rules_dir()])
    assert problems == []


# -- JMESPath nesting --------------------------------------------------------------------


def test_a_when_of_500_nested_parentheses_is_a_problem_not_a_recursion_error(cli, rules_dir):
    deep = "(" * 500 + "type" + ")" * 500
    rules_dir.write("deep.yml", f'id: t.deep\nname: deep\nseverity: low\nwhen: "{deep}"\n')
    code, out, err = cli("validate", str(rules_dir.path))
    assert code == 2 and "Traceback" not in out + err and "RecursionError" not in out + err
    assert "deep.yml:4: [when]" in out + err and "500 deep" in out + err


def test_deep_paths_and_templates_are_problems_too(rules_dir):
    deep = "[" * 200 + "0" + "]" * 200
    rules_dir.write(
        "deep.yml",
        f"id: t.deep\nname: deep\nseverity: low\nmatch: {{type: login}}\n"
        f"title: '{{{deep}}}'\ncontext: ['{deep}']\n",
    )
    _, problems = check_rules([rules_dir.path])
    assert {p.key for p in problems} == {"title", "context.0"}


# -- YAML aliases ------------------------------------------------------------------------


def _billion_laughs() -> str:
    lines = ["id: t.bomb", "name: bomb", "severity: low", 'a: &a ["lol","lol","lol","lol",'
             '"lol","lol","lol","lol","lol"]']  # fmt: skip
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [{','.join(['*' + previous] * 9)}]")
        previous = name
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_rule_file_is_refused_at_once(cli, rules_dir):
    text = _billion_laughs()
    assert len(text) < 600
    path = rules_dir.write("bomb.yml", text)
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(YamlError, match="aliases expand this document past 100,000"):
            load_yaml(path)
        code, out, err = cli("validate", str(rules_dir.path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5 and peak < 50_000_000
    assert code == 2 and "bomb.yml:4:" in out + err and "Traceback" not in out + err


def test_a_few_aliases_still_load(rules_dir):
    path = rules_dir.write("ok.yml", "base: &base {a: 1, b: [1, 2]}\none: *base\ntwo: *base\n")
    assert load_yaml(path)["two"] == {"a": 1, "b": [1, 2]}


def test_yaml_nested_past_the_stack_is_a_problem(rules_dir):
    path = rules_dir.write("deep.yml", "a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(YamlError):
        load_yaml(path)


# -- timestamps at the ends of time -------------------------------------------------------


@pytest.mark.parametrize(
    "created_at", ["9999-12-31T23:59:59Z", "9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z"]
)
def test_an_activity_at_the_end_of_time_is_quarantined_with_a_reason(
    tmp_path, rules_dir, make_activity, created_at
):
    rules_dir.write("all.yml", "id: t.all\nname: all\nseverity: low\nmatch: {type: login}\n")
    raws = [make_activity(created_at=created_at), make_activity(created_at=at(0))]
    assert try_parse_activity(raws[0]) is None
    with pytest.raises(ValueError, match="out of range"):
        parse_activity(raws[0])
    write_jsonl(tmp_path / "feed.jsonl", raws)
    for processes in ("1", "2"):
        result = run_detect(
            *("replay", "feed.jsonl", "--rules", str(rules_dir.path), "--processes", processes),
            *("--format", "jsonl", "--quarantine", "q.jsonl"),
            cwd=tmp_path,
        )
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert "out of range" in result.stderr and "1 rejected" in result.stderr
        assert len(result.stdout.splitlines()) == 1  # the other activity's alert
    assert "out of range" in (tmp_path / "q.jsonl").read_text()


# -- non-finite numbers ------------------------------------------------------------------


def test_nan_and_infinity_are_written_as_null_in_jsonl_output(tmp_path, rules_dir):
    rules_dir.write(
        "all.yml",
        "id: t.all\nname: all\nseverity: low\nmatch: {type: login}\ncontext: [v, w]\n",
    )
    line = (
        '{"id":"a1","created_at":"T0","type":"login","actor":{"type":"user_actor"},'
        '"v":NaN,"w":[Infinity,-Infinity,1.5]}\n'.replace("T0", at(0))
    )
    (tmp_path / "feed.jsonl").write_text(line)
    for processes in ("1", "2"):
        result = run_detect(
            *("replay", "feed.jsonl", "--rules", str(rules_dir.path), "--processes", processes),
            *("--format", "jsonl", "--no-quarantine"),
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        (text,) = result.stdout.splitlines()
        alert = json.loads(text, parse_constant=_refuse)  # strict JSON
        assert alert["context"] == {"v": None, "w": [None, None, 1.5]}
        assert alert["events"][0]["w"] == [None, None, 1.5]


def _refuse(constant: str):
    raise AssertionError(f"{constant} is not JSON")


def test_webhook_bodies_are_strict_json():
    alert = {"alert_id": "al_1", "context": {"v": float("nan")}, "_private": 1}
    body = body_for(alert)
    assert json.loads(body, parse_constant=_refuse)["context"] == {"v": None}
    assert body_for({"alert_id": "al_2", "n": 1.5}) == '{"alert_id":"al_2","n":1.5}'
    from engine.delivery.digest import DigestInfo

    info = DigestInfo("dg_1", "hook", 1_767_225_600.0, 1_767_229_200.0, "medium")
    ((text, _),) = digest_bodies([alert], info)
    assert json.loads(text, parse_constant=_refuse)["alerts"][0]["context"] == {"v": None}


def test_json_safe_keeps_clean_values_as_they_are():
    clean = {"a": [1, "x", {"b": 2.5}], "c": None}
    assert json_safe(clean) is clean
    assert json_safe({"a": (1.0, float("inf"))}) == {"a": [1.0, None]}
