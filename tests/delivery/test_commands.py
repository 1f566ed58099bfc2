"""`detect alerts …` end to end, and secrets kept out of every output and log."""

from __future__ import annotations

import argparse
import json
import logging
import random
import sqlite3
from pathlib import Path

import pytest

from engine.cli.alerts import register
from engine.config import load_config
from engine.delivery.dispatcher import Dispatcher
from tests.delivery.conftest import SECRET, free_port, make_alert, save_alerts

TOKEN = "XyZsecretPathToken42"  # in every receiver URL's path, as in a Slack webhook URL
HEADER_SECRET = "hdr-secret-value-777"


def write_config(tmp_path: Path, slack_url: str, hook_url: str) -> Path:
    path = tmp_path / "detect.yaml"
    path.write_text(
        "state: {path: state.db}\n"
        "destinations:\n"
        "  secops:\n"
        "    type: slack\n"
        f"    url: {slack_url}\n"
        "  soar:\n"
        "    type: webhook\n"
        f"    url: {hook_url}\n"
        f"    secret: {SECRET}\n"
        f"    headers: {{X-Api-Key: {HEADER_SECRET}}}\n"
    )
    return path


@pytest.fixture
def setup(tmp_path, clock, receivers, monkeypatch):
    """Three alerts; Slack answers 410 (dead letters), the webhook accepts."""
    monkeypatch.chdir(tmp_path)
    archived = receivers(lambda r: (410, "channel_is_archived", {}))
    hook = receivers()
    config_path = write_config(tmp_path, archived.url, hook.url)
    config = load_config(config_path)
    alerts = [make_alert(i) for i in range(3)]
    save_alerts(config.state.path, alerts)
    with Dispatcher(
        config.state.path, config, clock=clock, sleep=clock.sleep, rng=random.Random(1)
    ) as d:
        d.dispatch_pending()
    return config_path, alerts, archived, hook


def main(argv: list[str]) -> int:
    """`detect` as engine.cli wires it (build_parser() calls register), without the
    commands other modules add, so these tests depend on this module alone."""
    parser = argparse.ArgumentParser(prog="detect")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def detect(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_shows_each_destinations_state(setup, capsys):
    config_path, alerts, *_ = setup
    code, out, _ = detect(capsys, "alerts", "list", "--config", str(config_path))
    assert code == 0
    assert alerts[0].alert_id in out and "SSO disabled by ana0@example.com" in out
    assert "secops dead" in out and "soar sent" in out
    assert "outbox: 3 dead, 3 sent" in out
    code, out, _ = detect(capsys, "alerts", "list", "--config", str(config_path), "--dead")
    assert out.count("HTTP 410: channel_is_archived") == 3
    code, out, _ = detect(
        capsys, "alerts", "list", "--config", str(config_path), "--format", "json"
    )
    rows = json.loads(out)
    assert {d["status"] for r in rows for d in r["deliveries"]} == {"dead", "sent"}


def test_show_by_prefix(setup, capsys):
    config_path, alerts, *_ = setup
    code, _, err = detect(capsys, "alerts", "show", "al_0000", "--config", str(config_path))
    assert code == 1 and "matches several alerts" in err
    save_alerts(
        load_config(config_path).state.path, [make_alert(9, alert_id="al_feedbeef" + "0" * 16)]
    )
    code, out, _ = detect(capsys, "alerts", "show", "al_feed", "--config", str(config_path))
    assert code == 0 and "al_feedbeef" in out and "not routed yet" in out
    code, out, _ = detect(
        capsys, "alerts", "show", alerts[2].alert_id, "--config", str(config_path)
    )
    assert code == 0
    assert alerts[2].alert_id in out and "HTTP 410: channel_is_archived" in out
    assert "routed by the configuration" in out
    code, out, _ = detect(
        capsys,
        "alerts",
        "show",
        alerts[2].alert_id,
        "--config",
        str(config_path),
        "--format",
        "json",
    )
    shown = json.loads(out)
    assert shown["alert"]["alert_id"] == alerts[2].alert_id
    assert not any(k.startswith("_") for k in shown["alert"])
    code, _, err = detect(capsys, "alerts", "show", "al_nope", "--config", str(config_path))
    assert code == 1 and "no alert" in err


def test_retry_requeues_and_sends_with_a_fresh_budget(setup, capsys):
    config_path, alerts, archived, _ = setup
    archived.behaviour = lambda r: (200, "ok", {})
    code, out, _ = detect(
        capsys, "alerts", "retry", alerts[0].alert_id, "--config", str(config_path), "--send"
    )
    assert code == 0 and "re-queued 1 delivery" in out and "1 sent" in out
    code, out, _ = detect(capsys, "alerts", "retry", "--dead", "--config", str(config_path))
    assert code == 0 and "re-queued 2" in out and "next delivery pass" in out
    code, out, _ = detect(capsys, "alerts", "list", "--config", str(config_path), "--pending")
    assert out.count("secops") == 2
    code, _, err = detect(capsys, "alerts", "retry", "--config", str(config_path))
    assert code == 2 and "--dead" in err
    code, _, err = detect(
        capsys,
        "alerts",
        "retry",
        "--dead",
        "--destination",
        "nope",
        "--config",
        str(config_path),
    )
    assert code == 2 and "no destination" in err


def test_silence_commands(setup, capsys):
    config_path, *_ = setup
    code, out, _ = detect(
        capsys,
        "alerts",
        "silence",
        "--rule",
        "anthropic.sso.*",
        "--for",
        "2h",
        "--reason",
        "planned SSO migration",
        "--by",
        "ana",
        "--config",
        str(config_path),
    )
    assert code == 0 and "silenced until" in out
    silence_id = out.split(":")[0]
    code, out, _ = detect(capsys, "alerts", "silences", "--config", str(config_path))
    assert silence_id in out and "planned SSO migration" in out and "active" in out
    code, out, _ = detect(capsys, "alerts", "unsilence", silence_id, "--config", str(config_path))
    assert code == 0
    code, out, _ = detect(capsys, "alerts", "silences", "--config", str(config_path))
    assert "no active silences" in out
    code, _, err = detect(
        capsys, "alerts", "silence", "--for", "1h", "--reason", "x", "--config", str(config_path)
    )
    assert code == 2 and "--rule" in err
    code, _, err = detect(
        capsys,
        "alerts",
        "silence",
        "--rule",
        "r",
        "--for",
        "soon",
        "--reason",
        "x",
        "--config",
        str(config_path),
    )
    assert code == 2 and "duration" in err


def test_no_database_yet(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = detect(capsys, "alerts", "list", "--state", str(tmp_path / "none.db"))
    assert code == 1 and "no state database" in err
    assert not (tmp_path / "none.db").exists()


def test_secrets_never_reach_output_logs_or_the_database_text(
    tmp_path, clock, receivers, capsys, caplog, monkeypatch
):
    """The URL path token, the signing secret and a header value: never printed or
    logged, not even by urllib3 at DEBUG, not even when a receiver echoes them back."""
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    echo = receivers(lambda r: (500, f"upstream failed for {r.path} key {HEADER_SECRET}", {}))
    down_url = f"http://127.0.0.1:{free_port()}/services/T0001/B0002/{TOKEN}"
    config_path = write_config(tmp_path, down_url, echo.url)
    config = load_config(config_path)
    save_alerts(config.state.path, [make_alert(1)])
    with Dispatcher(config.state.path, config, clock=clock, sleep=clock.sleep) as d:
        d.dispatch_pending(deadline=clock() + 120)
    outputs = [caplog.text]
    for args in (
        ["list"],
        ["list", "--dead"],
        ["list", "--pending"],
        ["show", "al_"],
        ["list", "--format", "json"],
    ):
        _, out, err = detect(capsys, "alerts", *args, "--config", str(config_path))
        outputs += [out, err]
    with sqlite3.connect(config.state.path) as conn:
        outputs += [r[0] for r in conn.execute("SELECT reason FROM deliveries")]
        outputs += [r[0] for r in conn.execute("SELECT reason FROM delivery_destinations")]
    text = "\n".join(outputs)
    assert "127.0.0.1" in caplog.text  # urllib3's DEBUG lines were captured...
    assert TOKEN not in text  # ...with the path redacted
    assert HEADER_SECRET not in text and SECRET not in text and SECRET[6:30] not in text
    assert "[redacted]" in text and "connection refused" in text


def test_detect_alerts_is_wired_into_the_detect_command(setup, capsys):
    from engine.cli import main as detect_main

    config_path, alerts, *_ = setup
    assert detect_main(["alerts", "list", "--config", str(config_path), "--dead"]) == 0
    assert alerts[0].alert_id in capsys.readouterr().out
