"""`detect.yaml` errors in the words of the rule errors, secrets needed only where they
are used, `detect validate --config`, and `detect.schema.json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import (
    Config,
    DestinationConfig,
    config_schema,
    load_config,
    require_secrets,
)
from engine.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

SECRETS = """
source:
  api_key: ${ANTHROPIC_COMPLIANCE_API_KEY}
destinations:
  secops:
    type: slack
    url: ${SLACK_WEBHOOK_URL}
  hooks:
    type: webhook
    url: https://hooks.example.com/in
    secret: ${DETECT_WEBHOOK_SECRET}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "detect.yaml"
    path.write_text(text.lstrip("\n"))
    return path


def test_an_unknown_key_lists_the_allowed_ones_and_a_near_miss(tmp_path):
    path = write(tmp_path, "destinations:\n  secops:\n    tpye: slack\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert f"{path}:3: [destinations.secops.tpye] unknown key; allowed: type, url," in message
    assert "did you mean 'type'?" in message
    assert "Extra inputs" not in message


def test_an_unknown_top_level_key_suggests_the_right_one(tmp_path):
    path = write(tmp_path, "destination: {}\n")
    with pytest.raises(ConfigError, match=r"\[destination\] unknown key; allowed: source"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="did you mean 'destinations'"):
        load_config(path, environ={})


def test_a_value_outside_a_choice_lists_the_choices_and_a_near_miss(tmp_path):
    path = write(tmp_path, "destinations:\n  secops:\n    type: slak\n    url: https://x.example\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert f"{path}:3: [destinations.secops.type] 'slak' is not one of slack, webhook" in message
    assert "did you mean 'slack'?" in message
    assert "Input should" not in message


def test_every_missing_variable_is_reported_at_once(tmp_path):
    config = load_config(write(tmp_path, SECRETS), environ={})
    with pytest.raises(ConfigError) as info:
        require_secrets(config, "source", "destinations")
    message = str(info.value)
    for name in ("ANTHROPIC_COMPLIANCE_API_KEY", "SLACK_WEBHOOK_URL", "DETECT_WEBHOOK_SECRET"):
        assert f"environment variable {name} is not set" in message
    assert message.splitlines()[-1] == (
        "set: ANTHROPIC_COMPLIANCE_API_KEY, SLACK_WEBHOOK_URL, DETECT_WEBHOOK_SECRET"
    )
    with pytest.raises(ConfigError, match="SLACK_WEBHOOK_URL") as one:
        require_secrets(config, "destinations", only=["secops"])
    assert "DETECT_WEBHOOK_SECRET" not in str(one.value)


def test_read_only_commands_need_no_secret(cli, tmp_path, monkeypatch):
    for name in ("ANTHROPIC_COMPLIANCE_API_KEY", "SLACK_WEBHOOK_URL", "DETECT_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    path = write(tmp_path, SECRETS)
    for argv in (["status"], ["alerts", "list"], ["alerts", "show", "al_x"]):
        code, _, err = cli(*argv, "--config", str(path))
        assert code != 2 and "not set" not in err, (argv, err)  # 1: no state file yet
    code, out, err = cli("validate", "--config", str(path))
    assert code == 0, err
    assert "valid" in out and "SLACK_WEBHOOK_URL" in err


def test_run_names_every_missing_secret_and_exits_2(cli, tmp_path, monkeypatch):
    for name in ("ANTHROPIC_COMPLIANCE_API_KEY", "SLACK_WEBHOOK_URL", "DETECT_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yml").write_text("id: t.r\nname: R\nseverity: low\nmatch: {type: login}\n")
    path = write(tmp_path, SECRETS + "rules: [rules]\n")
    code, _, err = cli("run", "--once", "--config", str(path))
    assert code == 2
    for name in ("ANTHROPIC_COMPLIANCE_API_KEY", "SLACK_WEBHOOK_URL", "DETECT_WEBHOOK_SECRET"):
        assert name in err
    assert "rules:" not in err  # the packs' line comes only once the setup checks pass


def test_validate_config_exits_2_on_a_bad_file(cli, tmp_path):
    path = write(tmp_path, "destinations:\n  a:\n    type: slak\n")
    code, _, err = cli("validate", "--config", str(path))
    assert code == 2
    assert "did you mean 'slack'?" in err


def test_the_schema_file_is_the_models_schema():
    shipped = json.loads((ROOT / "detect.schema.json").read_text(encoding="utf-8"))
    assert shipped == json.loads(json.dumps(config_schema())), (
        "regenerate detect.schema.json with `python -m engine.config`"
    )


def test_the_schema_and_the_models_agree_on_the_keys():
    schema = json.loads((ROOT / "detect.schema.json").read_text(encoding="utf-8"))
    assert set(schema["properties"]) == {f.alias or n for n, f in Config.model_fields.items()}
    destination = schema["$defs"]["DestinationConfig"]
    assert set(destination["properties"]) == set(DestinationConfig.model_fields)
    assert destination["additionalProperties"] is False
    assert set(destination["properties"]["type"]["enum"]) >= {"slack", "webhook", "console"}
