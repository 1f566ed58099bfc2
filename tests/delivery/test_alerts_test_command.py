"""`detect alerts test --destination NAME` for every destination type: the real path,
the receiver's answer, non-zero exit when the destination refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config
from engine.runs.probe import send_test
from tests.delivery.conftest import SECRET
from tests.delivery.test_commands import detect
from tests.delivery.test_email import Mailbox

KEY = "R0UTINGKEY0123456789abcdefABCDEF"


def config_for(tmp_path: Path, url: str, smtp_port: int) -> Path:
    path = tmp_path / "detect.yaml"
    path.write_text(
        "state: {path: state.db}\n"
        "destinations:\n"
        f"  chat-slack: {{type: slack, url: '{url}'}}\n"
        f"  soar: {{type: webhook, url: '{url}', secret: '{SECRET}'}}\n"
        "  term: {type: console}\n"
        f"  teams: {{type: teams, url: '{url}'}}\n"
        f"  gchat: {{type: google_chat, url: '{url}'}}\n"
        f"  pager: {{type: pagerduty, url: '{url}', routing_key: {KEY}}}\n"
        f"  jira: {{type: templated_webhook, url: '{url}', template: {{summary: '{{title}}'}}}}\n"
        "  low-digest:\n"
        "    type: teams\n"
        f"    url: '{url}'\n"
        "    digest: {below: high, every: 1h}\n"
        "  mail:\n"
        "    type: email\n"
        f"    smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none, "
        "from: detect@example.com, to: [secops@example.com]}\n"
    )
    return path


@pytest.fixture
def world(tmp_path, receivers, monkeypatch):
    pytest.importorskip("aiosmtpd")
    from aiosmtpd.controller import Controller

    from tests.delivery.conftest import free_port

    monkeypatch.chdir(tmp_path)
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    answers: list = []
    hook = receivers(lambda r: answers.pop(0) if answers else (202, "", {}))
    yield config_for(tmp_path, hook.url, port), hook, box, answers
    controller.stop()


NAMES = ["chat-slack", "soar", "term", "teams", "gchat", "pager", "jira", "low-digest", "mail"]


@pytest.mark.parametrize("name", NAMES)
def test_every_type_sends_a_marked_test_alert(world, capsys, name):
    config_path, hook, box, _ = world
    code, out, err = detect(
        capsys, "alerts", "test", "--config", str(config_path), "--destination", name
    )
    assert code == 0, err
    assert "accepted" in out
    if name == "mail":
        (message,) = box.messages
        assert "[TEST]" in message["Subject"]
    elif name == "term":
        assert "[TEST] detect test alert for destination term" in out
    else:
        (request,) = hook.requests
        assert b"[TEST]" in request.body or b"detect test alert" in request.body
    # Nothing was written to the real state database.
    assert not (config_path.parent / "state.db").exists()


@pytest.mark.parametrize("name", ["teams", "pager", "jira", "gchat", "soar"])
def test_a_refusal_exits_non_zero_with_the_receivers_answer(world, capsys, name):
    config_path, _hook, _, answers = world
    answers.append((400, '{"status":"invalid event","errors":["Event object is invalid"]}', {}))
    code, out, err = detect(
        capsys, "alerts", "test", "--config", str(config_path), "--destination", name
    )
    assert code == 1
    assert "refused" in err and "HTTP 400" in err and "Event object is invalid" in err
    assert KEY not in out + err


def test_mail_refusal_shows_the_smtp_answer(world, capsys):
    config_path, _, box, _ = world
    box.script = ["550 5.1.1 Mailbox unavailable"]
    code, _, err = detect(
        capsys, "alerts", "test", "--config", str(config_path), "--destination", "mail"
    )
    assert code == 1 and "SMTP 550: 5.1.1 Mailbox unavailable" in err


def test_429_is_retried_within_the_timeout(world, clock):
    config_path, hook, _, answers = world
    answers.append((429, "slow down", {"Retry-After": "5"}))
    result = send_test(load_config(config_path), "pager", 60, clock=clock, sleep=clock.sleep)
    assert result.accepted and result.attempts == 2
    assert hook.requests[1].at - hook.requests[0].at >= 5
    answers.append((503, "down", {}))
    answers.extend([(503, "down", {})] * 50)
    result = send_test(load_config(config_path), "teams", 30, clock=clock, sleep=clock.sleep)
    assert result.status == "pending" and "HTTP 503" in result.reason


def test_unknown_destination_is_an_invalid_call(world, capsys):
    config_path, *_ = world
    code, _, err = detect(
        capsys, "alerts", "test", "--config", str(config_path), "--destination", "nope"
    )
    assert code == 2 and "no destination" in err
