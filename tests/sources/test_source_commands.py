"""`detect check-connection`, `detect status`, `detect run [--once|--demo]` and
`detect mock-api` as a user runs them (in-process `main`, mock API over loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import requests

from .conftest import KEY, RULES, activity, feed, write_config

ORG = "org_01Hq3vKpR8sWxZ2mTnYbC4dF"  # the generator's main organization


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("TEST_COMPLIANCE_KEY", KEY)


@pytest.fixture
def served(start_mock):
    return start_mock(feed(300, seed=2))  # May 2026: all in the past on the real clock


def no_key(*texts):
    for text in texts:
        assert KEY not in text


def test_check_connection_shows_orgs_and_the_newest_activity(cli, served, key_env, tmp_path):
    config = write_config(tmp_path, served.url)
    code, out, err = cli("check-connection", "--config", str(config))
    assert code == 0, err
    newest = max(feed(300, seed=2), key=lambda a: a["created_at"])
    assert "key              accepted" in out
    assert f"newest activity  {newest['created_at']}" in out
    assert ORG in out and "(no organization)" in out
    assert "rate limit       600 a minute" in out
    assert out.rstrip().endswith("connection OK")
    no_key(out, err)
    code, out, _ = cli("check-connection", "--config", str(config), "--format", "json")
    report = json.loads(out)
    assert report["ok"] and report["sampled"] == 300
    assert report["newest_activity"]["created_at"] == newest["created_at"]


def test_check_connection_proves_each_organization_of_the_filter(cli, served, key_env, tmp_path):
    config = write_config(tmp_path, served.url, organization_ids=[ORG, "org_01Unknown"])
    code, out, _ = cli("check-connection", "--config", str(config))
    assert code == 0
    assert f"filter {ORG}: newest activity 2026-05-04T" in out
    assert "filter org_01Unknown: no activity visible: check the id" in out
    assert "(no organization)" not in out  # the filter keeps org-less activity out


@pytest.mark.parametrize(
    ("status", "error_type", "words"),
    [
        (401, "authentication_error", "invalid or has been revoked"),
        (403, "permission_error", "read:compliance_activities"),
    ],
)
def test_check_connection_fails_with_the_apis_error_type(
    cli, start_mock, key_env, tmp_path, status, error_type, words
):
    if status == 401:
        mock = start_mock([], api_key="another-key")
    else:
        mock = start_mock([], api_key="another-key", forbidden_keys=[KEY])
    config = write_config(tmp_path, mock.url)
    code, out, err = cli("check-connection", "--config", str(config))
    assert code == 1
    assert err.startswith(f"FAILED  {error_type}: {error_type} (HTTP {status})")
    assert words in err
    assert f"request-id {mock.requests[-1].request_id}" in err
    assert len(mock.requests) == 1  # not retried
    no_key(out, err)
    code, out, _ = cli("check-connection", "--config", str(config), "--format", "json")
    assert code == 1 and json.loads(out)["error"]["error_type"] == error_type


def test_run_once_then_status(cli, served, key_env, tmp_path):
    config = write_config(tmp_path, served.url, lookback="400d", page_size=100)
    code, out, err = cli("run", "--once", "--config", str(config))
    assert code == 0, err
    # The first line: the packs and rules evaluated, once the setup checks passed.
    assert err.splitlines()[0] == f"rules: {RULES} (6): 6 active [rules: in the configuration]"
    assert "300 activities read · 0 rejected · 6 rules" in err
    assert "[HIGH] Admin change in" in out  # console output through the ConsoleSink
    no_key(out, err)

    code, out, err = cli("status", "--config", str(config))
    assert code == 0, err
    text = out
    newest = max(feed(300, seed=2), key=lambda a: a["created_at"])
    assert f"checkpoint       {newest['id']} at {newest['created_at']}" in text
    assert "caught up to" in text and "(lag 1m" in text
    assert "last success" in text and "ago)" in text
    assert "300 evaluated · 0 rejected" in text
    # The feed is months old on the real clock: the source is silent, and says so.
    assert f"health           silent since {newest['created_at']}" in text
    assert "awaiting delivery" in text
    no_key(out, err)
    code, out, _ = cli("status", "--config", str(config), "--format", "json")
    report = json.loads(out)
    assert report["source"]["activities"] == 300
    assert report["checkpoint"]["cursor"] == newest["id"]
    assert 60 <= report["lag_seconds"] < 120
    assert report["source"]["last_success_at"] <= datetime.now(tz=UTC).isoformat()


def test_status_when_polling_fails_shows_the_error(cli, start_mock, key_env, tmp_path):
    mock = start_mock([activity("activity_1", datetime(2026, 5, 4, tzinfo=UTC))], api_key="rotated")
    config = write_config(tmp_path, mock.url)
    assert cli("run", "--once", "--config", str(config))[0] == 1
    code, out, _ = cli("status", "--config", str(config))
    assert code == 0
    assert "FAILING" in out and "authentication_error" in out
    assert "checkpoint       none" in out


def test_status_without_state_and_run_without_config(cli, tmp_path):
    code, _, err = cli("status", "--state", str(tmp_path / "missing.db"))
    assert code == 1 and "no state database" in err
    code, _, err = cli("run", "--once")
    assert code == 2 and "no configuration" in err


def test_run_refuses_a_configuration_without_a_key(cli, served, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_COMPLIANCE_KEY", "")
    config = write_config(tmp_path, served.url)
    code, _, err = cli("run", "--once", "--config", str(config))
    assert code == 2 and "source.api_key is empty" in err
    assert "rules:" not in err  # a setup error is all a failed start prints


def test_run_demo_polls_the_sample_feed_through_the_mock_api(cli):
    code, out, err = cli("run", "--demo")
    assert code == 0
    first = err.splitlines()[0]  # the packs' line comes first, the demo's after it
    assert first.startswith("rules: builtin (") and " active" in first, first
    assert "local mock Compliance API" in err
    assert out.rstrip().splitlines()[-1].startswith("400 activities read · 0 rejected")


def test_mock_api_command_serves_until_interrupted(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(a) + "\n" for a in feed(50, seed=1)))
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "mock-api", "--port", "0", "--events", str(events)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = proc.stdout.readline().split()
        assert first[:3] == ["mock", "Compliance", "API"]
        url = first[-1]
        assert proc.stdout.readline().startswith("serving 50 activities from 2026-05-04T")
        response = requests.get(
            url + "/v1/compliance/activities?limit=2",
            headers={"x-api-key": "mock-key", "anthropic-version": "2023-06-01"},
            timeout=5,
        )
        body = response.json()
        assert response.status_code == 200 and len(body["data"]) == 2 and body["has_more"]
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()  # never leave a server behind for the tests that follow
            proc.wait()
            raise
    assert proc.returncode == 0
