"""`detect.yaml`: `${ENV}` interpolation, errors that name file, line and key, and secrets
that never print."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from engine.config import SECRET_SECTIONS, load_config
from engine.errors import ConfigError

API_KEY = "sk-ant-api01-VERY-SECRET-KEY"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/SECRETTOKEN"
WEBHOOK_SECRET = "ALSO-SECRET-signing-key-0123456789abcdef"

CONFIG = """
source:
  api_key: ${ANTHROPIC_COMPLIANCE_API_KEY}
  base_url: ${BASE_URL:-https://api.anthropic.com}
  organization_ids: ["${ORG:-org_default}"]
  poll_interval: 30s
  lookback: 1h30m
rules: [rules, /abs/rules]
state:
  path: ${STATE_DIR:-.detect}/state.db
destinations:
  secops:
    type: slack
    url: ${SLACK_WEBHOOK_URL}
    min_severity: High
  soar:
    type: webhook
    url: https://soar.example.com/hooks/detect
    secret: ${DETECT_WEBHOOK_SECRET}
  terminal:
    type: console
"""

ENVIRON = {
    "ANTHROPIC_COMPLIANCE_API_KEY": API_KEY,
    "SLACK_WEBHOOK_URL": SLACK_URL,
    "DETECT_WEBHOOK_SECRET": WEBHOOK_SECRET,
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "detect.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_interpolation_and_defaults(tmp_path):
    config = load_config(write(tmp_path, CONFIG), environ=ENVIRON)
    assert config.source.api_key.get_secret_value() == API_KEY
    assert config.source.base_url == "https://api.anthropic.com"
    assert config.source.organization_ids == ["org_default"]
    assert config.source.poll_interval == timedelta(seconds=30)
    assert config.source.lookback == timedelta(hours=1, minutes=30)
    assert config.source.overlap == timedelta(minutes=10)
    assert config.state.path == tmp_path / ".detect" / "state.db"
    assert config.rules == [tmp_path / "rules", Path("/abs/rules")]
    assert config.quarantine == tmp_path / ".detect" / "quarantine.jsonl"
    secops = config.destinations["secops"]
    assert (secops.type, secops.min_severity) == ("slack", "high")
    assert secops.url.get_secret_value() == SLACK_URL
    assert config.destinations["soar"].secret.get_secret_value() == WEBHOOK_SECRET
    assert config.destinations["terminal"].type == "console"


def test_a_set_variable_wins_over_its_default(tmp_path):
    environ = {
        **ENVIRON,
        "BASE_URL": "http://127.0.0.1:8080",
        "ORG": "org_42",
        "STATE_DIR": "/var/x",
    }
    config = load_config(write(tmp_path, CONFIG), environ=environ)
    assert config.source.base_url == "http://127.0.0.1:8080"
    assert config.source.organization_ids == ["org_42"]
    assert config.state.path == Path("/var/x/state.db")


def test_an_empty_default_and_several_variables_in_one_value(tmp_path):
    path = write(
        tmp_path,
        """
        source:
          base_url: "${SCHEME:-https}://${HOST}${SUFFIX:-}"
        """,
    )
    config = load_config(path, environ={"HOST": "api.example.com"})
    assert config.source.base_url == "https://api.example.com"


def test_interpolation_cannot_inject_yaml_structure(tmp_path):
    path = write(tmp_path, "source:\n  api_key: ${KEY}\n")
    config = load_config(path, environ={"KEY": "{a: b, rules: [/etc]}"})
    assert config.source.api_key.get_secret_value() == "{a: b, rules: [/etc]}"
    assert config.rules == [tmp_path / "rules"]


def test_a_missing_variable_is_named(tmp_path):
    environ = {k: v for k, v in ENVIRON.items() if k != "SLACK_WEBHOOK_URL"}
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, CONFIG), environ=environ, needs=SECRET_SECTIONS)
    message = str(info.value)
    assert "destinations.secops.url" in message
    assert "environment variable SLACK_WEBHOOK_URL is not set" in message


def test_a_missing_variable_error_names_file_and_line(tmp_path):
    environ = {k: v for k, v in ENVIRON.items() if k != "SLACK_WEBHOOK_URL"}
    path = write(tmp_path, CONFIG)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ, needs=SECRET_SECTIONS)
    assert str(info.value).startswith(f"{path}:13: [destinations.secops.url] ")


def test_an_unknown_key_names_file_line_and_key(tmp_path):
    path = write(
        tmp_path,
        """
        source:
          base_url: https://api.anthropic.com
          api_kye: x
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value).startswith(f"{path}:3: [source.api_kye] unknown key; allowed: base_url")
    assert str(info.value).endswith("; did you mean 'api_key'?")


def test_an_unknown_key_in_a_destination(tmp_path):
    path = write(
        tmp_path,
        """
        destinations:
          secops:
            type: slack
            url: https://hooks.example.com/x
            channel: "#secops"
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value).startswith(f"{path}:5: [destinations.secops.channel] ")


def test_a_bad_value_names_its_line(tmp_path):
    path = write(tmp_path, "source:\n  poll_interval: soon\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value).startswith(f"{path}:2: [source.poll_interval] ")
    assert "'soon' is not a duration" in str(info.value)


def test_invalid_yaml_names_its_line(tmp_path):
    path = write(tmp_path, "source:\n  base_url: x\n bad: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value).startswith(f"{path}:3: ")


def test_secrets_are_not_in_repr_or_str(tmp_path):
    config = load_config(write(tmp_path, CONFIG), environ=ENVIRON)
    renderings = [
        repr(config),
        str(config),
        repr(config.source),
        str(config.destinations),
        config.model_dump_json(),
        str(config.model_dump()),
    ]
    for text in renderings:
        for secret in (API_KEY, SLACK_URL, WEBHOOK_SECRET, "SECRETTOKEN"):
            assert secret not in text
    assert "**********" in repr(config.source)


def test_secrets_are_not_in_errors(tmp_path):
    path = write(tmp_path, CONFIG.replace("min_severity: High", "min_severity: loud"))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENVIRON)
    message = str(info.value)
    assert message.startswith(f"{path}:14: [destinations.secops.min_severity] ")
    for secret in (API_KEY, SLACK_URL, WEBHOOK_SECRET):
        assert secret not in message


def test_replay_with_a_broken_config_exits_2_and_names_the_variable(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_COMPLIANCE_API_KEY", raising=False)
    monkeypatch.delenv("DETECT_QUARANTINE_FILE", raising=False)
    config = write(tmp_path, "quarantine: ${DETECT_QUARANTINE_FILE}\n")
    feed = tmp_path / "feed.jsonl"
    feed.write_text("")
    code, out, err = cli("replay", str(feed), "--config", str(config))
    assert (code, out) == (2, "")
    assert err.startswith("error: ")
    assert "[quarantine]" in err
    assert "environment variable DETECT_QUARANTINE_FILE is not set" in err


def test_replay_finds_detect_yaml_in_the_working_directory(
    cli, rules_dir, make_activity, tmp_path, monkeypatch
):
    monkeypatch.setenv("DETECT_TEST_SECRET", "s3cr3t-value")
    rules_dir.write("r.yml", "id: t.r\nname: R\nseverity: low\nmatch: {type: login}\n")
    write(
        tmp_path,
        """
        source:
          api_key: ${DETECT_TEST_SECRET}
        rules: [rules]
        quarantine: q/rejected.jsonl
        """,
    )
    feed = tmp_path / "feed.jsonl"
    feed.write_text("[1]\n")
    code, out, err = cli("replay", str(feed), "--format", "jsonl")
    assert code == 0
    assert out == ""
    assert (tmp_path / "q" / "rejected.jsonl").is_file()
    assert "s3cr3t-value" not in out + err
