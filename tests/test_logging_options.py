"""`--log-level`, `--log-format json` (and their environment variables): one JSON object
a line, redacted."""

from __future__ import annotations

import io
import json
import logging

import pytest

from engine.runs import logs
from engine.secrets import register


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_json_logs_are_one_redacted_object_a_line(root_logging):
    stream = io.StringIO()
    register(["sk-ant-log-secret-123456789"])
    logs.setup("debug", "json", stream)
    logging.getLogger("engine.test").debug("key %s in use", "sk-ant-log-secret-123456789")
    logging.getLogger("engine.test").info("second")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert set(first) == {"time", "level", "logger", "message"}
    assert (first["level"], first["logger"]) == ("debug", "engine.test")
    assert "sk-ant-log-secret-123456789" not in lines[0]
    assert first["time"].endswith("Z")


def test_the_level_filters(root_logging):
    stream = io.StringIO()
    logs.setup("warning", "text", stream)
    logging.getLogger("engine.test").info("hidden")
    logging.getLogger("engine.test").warning("shown")
    assert "hidden" not in stream.getvalue() and "shown" in stream.getvalue()


def test_the_environment_asks_and_the_flags_win(monkeypatch):
    monkeypatch.delenv(logs.LEVEL_ENV, raising=False)
    monkeypatch.delenv(logs.FORMAT_ENV, raising=False)
    assert logs.wanted(None, None) is None
    monkeypatch.setenv(logs.FORMAT_ENV, "json")
    assert logs.wanted(None, None) == ("info", "json")
    assert logs.wanted("debug", "text") == ("debug", "text")


def test_a_bad_level_in_the_environment_exits_2(cli, monkeypatch, root_logging):
    monkeypatch.setenv(logs.LEVEL_ENV, "loud")
    code, _, err = cli("status")
    assert code == 2 and "DETECT_LOG_LEVEL: 'loud' is not one of debug" in err


def test_the_flags_parse_before_the_command(cli, tmp_path, root_logging):
    config = tmp_path / "detect.yaml"
    config.write_text("destinations:\n  a:\n    type: console\n")
    argv = ("--log-level", "debug", "--log-format", "json", "validate", "--config", str(config))
    code, out, _ = cli(*argv)
    assert code == 0 and "valid" in out
