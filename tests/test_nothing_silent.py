"""Issue 18, "Nothing silent": secrets never leave through an error text, a run with no
rules is an error, the rule time budget comes from `detect.yaml`, and an unwritable
quarantine is one line (docs/reliability.md)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine import secrets
from engine.cli import main
from engine.config import load_config
from engine.detection import budget
from engine.errors import ConfigError
from engine.tools.mock_api import MockComplianceAPI, ScriptedResponse

RULES = Path(__file__).parent / "sources" / "rules"
KEY = "sk-ant-api03-NOTHINGSILENT-Zq8vN3xR7wP2mK9sL4tY6uB1cD5eF0gH"
HOOK_SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0zMmJ5dGVzISE="
LEAK = "SECRETSECRET"


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    saved = (budget.settings.budget, budget.settings.quarantine_after)
    yield
    secrets.forget_all()
    budget.settings.budget, budget.settings.quarantine_after = saved


# -- a secret with a control character is refused at load -------------------------------


def test_a_key_with_a_line_break_is_refused_at_load_without_echoing_it(tmp_path):
    path = tmp_path / "detect.yaml"
    path.write_text("source:\n  api_key: ${CKEY}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"CKEY": f"sk-ant-api03-{LEAK}\nabc"})
    message = str(info.value)
    assert message.startswith(f"{path}:2: [source.api_key] environment variable CKEY")
    assert "control character" in message
    assert LEAK not in message and "abc" not in message


@pytest.mark.parametrize(
    ("yaml", "field"),
    [
        ('source:\n  api_key: "sk-ant-api03-SECRETSECRET\\tabc"\n', "source.api_key"),
        (
            "destinations:\n  hook:\n    type: webhook\n    url: https://example.com/h\n"
            '    secret: "whsec_SECRETSECRET\\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"\n',
            "destinations.hook.secret",
        ),
        (
            "destinations:\n  chat:\n    type: slack\n"
            '    url: "https://hooks.slack.com/services/SECRETSECRET\\r\\nX"\n',
            "destinations.chat.url",
        ),
        (
            "destinations:\n  teams:\n    type: teams\n"
            '    url: "https://example.webhook.office.com/SECRETSECRET\\u0000"\n',
            "destinations.teams.url",
        ),
        (
            'destinations:\n  pd:\n    type: pagerduty\n    routing_key: "R0SECRETSECRET\\n"\n',
            "destinations.pd.routing_key",
        ),
        (
            "destinations:\n  mail:\n    type: email\n    smtp:\n      host: 127.0.0.1\n"
            "      from: a@example.com\n      to: [b@example.com]\n      username: u\n"
            '      password: "pw-SECRETSECRET\\n"\n',
            "destinations.mail.smtp.password",
        ),
    ],
)
def test_every_secret_with_a_control_character_is_refused(tmp_path, yaml, field):
    path = tmp_path / "detect.yaml"
    path.write_text(yaml)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert f"[{field}]" in message
    assert LEAK not in message


def test_detect_run_with_a_newline_key_exits_2_and_prints_no_secret(tmp_path, capsys, monkeypatch):
    path = tmp_path / "detect.yaml"
    path.write_text(f"source:\n  api_key: ${{CKEY}}\nrules: [{RULES}]\n")
    monkeypatch.setenv("CKEY", f"sk-ant-api03-{LEAK}\nabc")
    assert main(["run", "--once", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "CKEY" in err and LEAK not in err
    assert len(err.strip().splitlines()) == 1


# -- one redaction ------------------------------------------------------------------------


def test_redact_covers_the_forms_libraries_quote():
    url = "https://hooks.slack.com/services/T0001/B0002/XyZsecretPathToken42"
    secrets.register([f"sk-ant-api03-{LEAK}", url, "short"])
    quoted = repr(f"Bearer sk-ant-api03-{LEAK}")
    assert LEAK not in secrets.redact(f"InvalidHeader: header value: {quoted}")
    # requests quotes the path of a URL it could not reach, not the URL
    text = "Max retries exceeded with url: /services/T0001/B0002/XyZsecretPathToken42"
    assert "XyZsecret" not in secrets.redact(text)
    assert secrets.redact("a short word") == "a short word"
    assert secrets.redact_value({"e": [f"x sk-ant-api03-{LEAK}"]}) == {"e": ["x [redacted]"]}


def test_the_log_filter_redacts_messages_arguments_and_tracebacks():
    secrets.register([KEY])
    logger = logging.getLogger("test.nothing_silent")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    logger.addHandler(handler)
    secrets.install_log_redaction(logger)
    try:
        logger.warning("failed with %s", KEY)
        try:
            raise ValueError(f"bad key {KEY}")
        except ValueError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    assert len(records) == 2
    assert all(KEY not in r and "[redacted]" in r for r in records)


class _Receiver:
    """A webhook receiver on loopback that answers 200 and keeps every body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.bodies.append(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _state_bytes(state: Path) -> bytes:
    return b"".join(p.read_bytes() for p in state.parent.iterdir() if p.name.startswith(state.name))


def test_an_api_error_quoting_a_secret_is_redacted_in_log_status_state_and_alert(
    tmp_path, capsys, caplog, monkeypatch
):
    receiver = _Receiver()
    state = tmp_path / "state.db"
    config = tmp_path / "detect.yaml"
    with MockComplianceAPI(api_key=KEY) as mock:
        config.write_text(
            f"source:\n  base_url: {mock.url}\n  api_key: ${{CKEY}}\n  max_retries: 0\n"
            f"rules: [{RULES}]\nstate:\n  path: {state}\n"
            f"quarantine: {tmp_path / 'q.jsonl'}\n"
            "destinations:\n  hook:\n    type: webhook\n    url: ${HOOK_URL}\n"
            "    secret: ${HOOK_SECRET}\n"
        )
        monkeypatch.setenv("CKEY", KEY)
        monkeypatch.setenv("HOOK_URL", receiver.url)
        monkeypatch.setenv("HOOK_SECRET", HOOK_SECRET)
        try:
            assert main(["run", "--once", "--config", str(config)]) == 0
            # The key is revoked, and the API's error text quotes it (and, for good
            # measure, the webhook's secret): a fatal error after a success alerts at once.
            mock.script(
                ScriptedResponse(
                    401,
                    "authentication_error",
                    message=f"invalid x-api-key {KEY} (hook {HOOK_SECRET})",
                )
            )
            caplog.set_level(logging.INFO)
            assert main(["run", "--once", "--config", str(config), "--deliver-timeout", "10"]) == 1
        finally:
            receiver.close()
    assert "authentication_error" in caplog.text and "[redacted]" in caplog.text
    assert KEY not in caplog.text and HOOK_SECRET not in caplog.text
    capsys.readouterr()

    assert main(["status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "last error" in out and "[redacted]" in out
    assert KEY not in out and HOOK_SECRET not in out

    raw = _state_bytes(state)
    assert b"[redacted]" in raw
    assert KEY.encode() not in raw and HOOK_SECRET.encode() not in raw

    health = [json.loads(b) for b in receiver.bodies if b"source_health" in b]
    assert health, receiver.bodies
    assert any("[redacted]" in json.dumps(body) for body in health)
    for body in receiver.bodies:
        assert KEY.encode() not in body and HOOK_SECRET.encode() not in body


# -- zero rules, or a rules path that does not exist ------------------------------------


def test_run_once_with_a_typo_in_rules_exits_2_and_leaves_no_checkpoint(tmp_path, capsys):
    from engine.feedgen import generate

    state = tmp_path / "state.db"
    config = tmp_path / "detect.yaml"
    with MockComplianceAPI(list(generate(50, seed=3)), api_key=KEY) as mock:
        config.write_text(
            f"source:\n  base_url: {mock.url}\n  api_key: {KEY}\n"
            f"rules: [rulez]\nstate:\n  path: {state}\n"
        )
        assert main(["run", "--once", "--config", str(config)]) == 2
        assert not mock.requests
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: rules path {tmp_path / 'rulez'} does not exist"]
    assert not state.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "--rules", "{missing}", "{feed}"],
        ["replay", "--rules", "{empty}", "{feed}"],
        ["test", "{missing}"],
        ["test", "{empty}"],
        ["validate", "{missing}"],
        ["validate", "{empty}"],
        ["noise", "--rules", "{missing}", "{feed}"],
        ["noise", "--rules", "{empty}", "{feed}"],
        ["bench", "--rules", "{missing}", "--generate", "10"],
        ["bench", "--rules", "{empty}", "--generate", "10"],
    ],
)
def test_no_rules_is_an_error_naming_the_path(tmp_path, capsys, argv):
    (tmp_path / "empty").mkdir()
    feed = tmp_path / "feed.jsonl"
    feed.write_text("")
    names = {"missing": tmp_path / "nodir", "empty": tmp_path / "empty", "feed": feed}
    argv = [a.format(**names) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert str(tmp_path / ("nodir" if "nodir" in " ".join(argv) else "empty")) in err[0]


# -- the rule time budget from detect.yaml ----------------------------------------------


def test_rule_budget_is_read_and_applied_by_the_builder(tmp_path):
    from engine.runs import build

    path = tmp_path / "detect.yaml"
    path.write_text("rule_budget:\n  per_activity: 0.25\n  quarantine_after: 5\n")
    config = load_config(path, environ={})
    assert config.rule_budget.per_activity.total_seconds() == 0.25
    build.apply_rule_budget(config)
    assert (budget.settings.budget, budget.settings.quarantine_after) == (0.25, 5)
    path.write_text("rule_budget:\n  per_activity: 2s\n")
    build.apply_rule_budget(load_config(path, environ={}))
    assert (budget.settings.budget, budget.settings.quarantine_after) == (2.0, 3)


def test_the_live_builder_applies_the_rule_budget(tmp_path):
    from engine.runs import build
    from engine.state.store import MemoryStore

    path = tmp_path / "detect.yaml"
    path.write_text(
        f"source:\n  base_url: http://127.0.0.1:9\n  api_key: {KEY}\n"
        "rule_budget:\n  per_activity: 0.5\n  quarantine_after: 2\n"
    )
    config = load_config(path, environ={})
    ruleset = __import__("engine.rule_formats", fromlist=["load_rules"]).load_rules([RULES])
    parts = build.live_source(config, ruleset, MemoryStore(), health=False)
    parts.poller.client.close()
    assert (budget.settings.budget, budget.settings.quarantine_after) == (0.5, 2)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("per_activity: 0", "between 0.001 and 60 seconds"),
        ("per_activity: 90s", "between 0.001 and 60 seconds"),
        ("per_activity: true", "a duration (1s) or a number of seconds"),
        ("per_activity: .nan", "finite"),
        ("per_activity: soon", "per_activity"),
        ("quarantine_after: 0", "greater than or equal to 1"),
        ("every: 1s", "unknown key; allowed: per_activity, quarantine_after"),
    ],
)
def test_rule_budget_errors_name_the_line_and_key(tmp_path, text, words):
    path = tmp_path / "detect.yaml"
    path.write_text(f"rule_budget:\n  {text}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert message.startswith(f"{path}:2: [rule_budget.") or message.startswith(
        f"{path}:1: [rule_budget"
    )
    assert words in message


# -- an unwritable quarantine ----------------------------------------------------------


def test_an_unwritable_quarantine_is_one_line_before_anything_is_read(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    feed = tmp_path / "feed.jsonl"
    feed.write_text('{"not": "an activity"}\n')
    target = blocker / "q.jsonl"  # a folder that is a file
    code = main(["replay", "--rules", str(RULES), "--quarantine", str(target), str(feed)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"error: cannot write the quarantine file {target}: ")
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main(["replay", "--rules", str(RULES), "--quarantine", str(folder), str(feed)]) == 2
    assert "Is a directory" in capsys.readouterr().err


def test_run_checks_the_quarantine_before_polling(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = tmp_path / "detect.yaml"
    with MockComplianceAPI(api_key=KEY) as mock:
        config.write_text(
            f"source:\n  base_url: {mock.url}\n  api_key: {KEY}\n"
            f"rules: [{RULES}]\nstate:\n  path: {tmp_path / 'state.db'}\n"
            f"quarantine: {blocker / 'q.jsonl'}\n"
        )
        assert main(["run", "--once", "--config", str(config)]) == 2
        assert not mock.requests
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the quarantine file" in err[0]
