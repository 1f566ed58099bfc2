"""Issue 18, "Nothing silent": a rule cannot stop detection. Whatever a rule raises
(`SystemExit`, `KeyboardInterrupt`, a `BaseException` of its own) and however long it runs,
it becomes a `rule_error` alert and the stream goes on; a rule that keeps overrunning its
time budget is quarantined. Each reproduction of the issue is a test here."""

from __future__ import annotations

import json
import logging
import signal
import time

import pytest

from engine.detection import budget
from engine.detection.evaluator import Evaluator
from tests.conftest import at, run_detect, run_pipeline, write_jsonl

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")


def _python_rule(rules_dir, name: str, code: str, extra: str = "") -> None:
    rules_dir.write(f"{name}.py", code)
    rules_dir.write(
        f"{name}.yml",
        f"id: t.{name}\nname: {name}\nseverity: low\nmatch: {{type: login}}\n"
        f"python: {name}.py\n{extra}",
    )


def _errors(run) -> list:
    """The `rule_error` alerts, in their final state."""
    return [c.alert for c in run.changes if c.change == "closed" and c.alert.kind == "rule_error"]


def _feed(make_activity, n: int = 3) -> list[dict]:
    return [make_activity(created_at=at(minutes=m)) for m in range(n)]


@pytest.mark.parametrize(
    "raise_it, error_type",
    [
        ("import sys\n    sys.exit(3)", "SystemExit"),
        ("raise KeyboardInterrupt", "KeyboardInterrupt"),
        ("raise GeneratorExit", "GeneratorExit"),
        ("raise Mine()", "Mine"),
    ],
)
def test_a_rules_base_exception_is_a_rule_error_and_the_stream_goes_on(
    rules_dir, make_activity, raise_it, error_type
):
    _python_rule(
        rules_dir,
        "quits",
        f"class Mine(BaseException):\n    pass\n\ndef rule(event):\n    {raise_it}\n",
    )
    _python_rule(rules_dir, "fine", "def rule(event):\n    return True\n")
    run = run_pipeline(rules_dir.load(), _feed(make_activity))
    (error,) = _errors(run)
    assert error.rule_id == "t.quits" and error.context["error_type"] == error_type
    assert "quits.py:" in error.context["location"]
    assert run.stats.rule_errors == 3 and run.stats.matches == 3  # `fine` saw all three


def test_a_hook_that_exits_is_a_rule_error(rules_dir, make_activity):
    _python_rule(
        rules_dir,
        "hook",
        "import sys\n\ndef rule(event):\n    return True\n\ndef title(event):\n    sys.exit(4)\n",
    )
    run = run_pipeline(rules_dir.load(), _feed(make_activity))
    (error,) = _errors(run)
    assert error.context["error_type"] == "SystemExit" and error.context["error"] == "4"


def test_a_rule_that_exits_fails_its_own_test_in_detect_test(tmp_path, rules_dir):
    rules_dir.write("quits.py", "import sys\n\ndef rule(event):\n    sys.exit(3)\n")
    event = {"id": "a1", "created_at": at(0), "type": "login", "actor": {"type": "user_actor"}}
    rules_dir.write(
        "quits.yml",
        "id: t.quits\nname: quits\nseverity: low\nmatch: {type: login}\npython: quits.py\n"
        f"tests:\n  - name: exits\n    event: {json.dumps(event)}\n    expect: true\n",
    )
    rules_dir.write(
        "other.yml",
        "id: t.other\nname: other\nseverity: low\nmatch: {type: login}\n"
        f"tests:\n  - name: holds\n    event: {json.dumps(event)}\n    expect: true\n",
    )
    result = run_detect("test", str(rules_dir.path), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "SystemExit" in result.stdout and "Traceback" not in result.stdout + result.stderr
    assert "holds" in result.stdout  # the other rule's test ran


def test_replay_with_a_rule_that_exits_goes_on_in_both_modes(tmp_path, rules_dir, make_activity):
    _python_rule(rules_dir, "quits", "import sys\n\ndef rule(event):\n    sys.exit(3)\n")
    write_jsonl(tmp_path / "feed.jsonl", _feed(make_activity, 5))
    for processes in ("1", "2"):
        result = run_detect(
            *("replay", "feed.jsonl", "--rules", str(rules_dir.path)),
            *("--processes", processes, "--format", "jsonl", "--no-quarantine"),
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        (alert,) = [json.loads(line) for line in result.stdout.splitlines()]
        assert alert["kind"] == "rule_error" and alert["event_count"] == 5
        assert "Traceback" not in result.stderr


def test_a_hung_rule_times_out_and_is_quarantined(rules_dir, make_activity, caplog):
    _python_rule(
        rules_dir,
        "hangs",
        # `except Exception` cannot swallow the timeout
        "def rule(event):\n    while True:\n        try:\n            pass\n"
        "        except Exception:\n            pass\n",
        "time_budget: 0.05\n",
    )
    _python_rule(rules_dir, "fine", "def rule(event):\n    return True\n")
    ruleset = rules_dir.load()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="engine.detection.evaluator"):
        run = run_pipeline(ruleset, _feed(make_activity, 6))
    assert time.monotonic() - started < 2  # three overruns of 50 ms, then no more
    (error,) = _errors(run)
    assert error.context["error_type"] == "RuleTimeout" and error.event_count == 3
    assert run.stats.rule_errors == 3 and run.stats.matches == 6
    assert any("t.hangs" in r.message and "quarantined" in r.message for r in caplog.records)


def test_the_alert_of_the_overrun_that_quarantines_says_so(rules_dir, make_activity):
    _python_rule(
        rules_dir,
        "slow",
        "import time\n\ndef rule(event):\n    time.sleep(5)\n",
        "time_budget: 0.02\n",
    )
    ruleset = rules_dir.load()
    evaluator = Evaluator(ruleset, quarantine_after=2)
    from engine.activity import parse_activity

    found = [evaluator.evaluate(parse_activity(raw)) for raw in _feed(make_activity, 4)]
    messages = [str(errors[0][1]) for _, errors in found if errors]
    assert len(messages) == 2 and "quarantined" in messages[1]
    assert list(evaluator.quarantined) == ["t.slow"]


def test_a_backtracking_pattern_in_python_code_is_cut_off(rules_dir, make_activity):
    # The issue's `^(a+)+$` against a 29-character user agent: 18 s, doubling per character.
    _python_rule(
        rules_dir,
        "redos",
        "import re\n\nPATTERN = re.compile(r'^(a+)+$')\n\n"
        "def rule(event):\n    return PATTERN.match(event['actor']['user_agent']) is not None\n",
        "time_budget: 0.1\n",
    )
    agent = {"type": "user_actor", "user_agent": "a" * 29 + "!"}
    started = time.monotonic()
    run = run_pipeline(rules_dir.load(), [make_activity(actor=agent)])
    assert time.monotonic() - started < 2
    (error,) = _errors(run)
    assert error.context["error_type"] == "RuleTimeout"


def test_a_hook_that_hangs_times_out(rules_dir, make_activity):
    _python_rule(
        rules_dir,
        "hook",
        "def rule(event):\n    return True\n\ndef title(event):\n    while True:\n        pass\n",
        "time_budget: 0.05\n",
    )
    run = run_pipeline(rules_dir.load(), _feed(make_activity, 1))
    (error,) = _errors(run)
    assert error.context["error_type"] == "RuleTimeout"


def test_the_operators_ctrl_c_still_stops_the_stream(rules_dir, make_activity):
    _python_rule(
        rules_dir,
        "slow",
        "import os, signal, time\n\ndef rule(event):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(1)\n",
    )
    ruleset = rules_dir.load()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(ruleset, _feed(make_activity, 1))
    finally:
        signal.signal(signal.SIGINT, previous)


def test_no_timer_outside_the_main_thread_is_a_quiet_fallback(rules_dir, make_activity):
    import threading

    _python_rule(rules_dir, "fine", "def rule(event):\n    return True\n")
    ruleset = rules_dir.load()
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(run=run_pipeline(ruleset, _feed(make_activity, 2)))
    )
    thread.start()
    thread.join()
    assert result["run"].stats.matches == 2


def test_an_alarm_between_rules_is_nobodys_failure(rules_dir, make_activity):
    # Two fast rules, a budget far shorter than the pause between activities: the alarm
    # never blames a rule that finished in time.
    for name in ("a", "b"):
        _python_rule(rules_dir, name, "def rule(event):\n    return True\n", "time_budget: 0.001\n")
    run = run_pipeline(rules_dir.load(), _feed(make_activity, 50))
    assert run.stats.rule_errors == 0 and run.stats.matches == 100
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # disarmed after each


def test_configure_checks_its_values():
    with pytest.raises(ValueError):
        budget.configure(budget=0)
    with pytest.raises(ValueError):
        budget.configure(quarantine_after=0)
    before = budget.settings.budget
    budget.configure(budget=2.5)
    try:
        assert budget.settings.budget == 2.5
    finally:
        budget.configure(budget=before)


def test_validate_refuses_a_bad_time_budget(cli, rules_dir):
    _python_rule(rules_dir, "x", "def rule(event):\n    return True\n", "time_budget: 0\n")
    code, out, err = cli("validate", str(rules_dir.path))
    assert code == 2 and "time_budget" in out + err
