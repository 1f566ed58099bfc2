"""`detect run --metrics-port` in worker mode (`state.backend: redis`).

Two real `detect run` workers share four organizations on the suite's redis-server and a
loopback mock API; a real HTTP client scrapes each. Each shows its own counters (summed
over the organizations it holds), one poll-lag and silence sample per organization it
holds, its leases (the two add up to the four organizations) and the shared outbox;
`/healthz` is 200 on both, 503 with the organization named while the API is scripted to
fail, and 200 again once it answers. In process: the health reasons a worker alone can
show (Redis gone, the lease thread dead, a standby) and counters that stay when the
organizations move away."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from engine.config import Config, RedisSettings, SourceConfig, StateConfig
from engine.rule_formats import load_rules
from engine.runs.leases import Leases
from engine.runs.live import partition_runner
from engine.runs.metrics import SHARED, WorkerMetrics
from engine.runs.workers import Worker
from engine.state.redis_store import RedisStore
from engine.tools.mock_api import MockComplianceAPI, ScriptedResponse

from ..sources.conftest import KEY, RULES, activity
from ..test_metrics import Lines, _until, parse, value

ORGS = ["org_a", "org_b", "org_c", "org_d"]


def _actor(org: str) -> dict[str, str]:
    """Someone of this organization only: alert ids are made of the rule, the dedup key
    and the time, so one person in two organizations would open two alerts of one id."""
    return {"type": "user_actor", "email_address": f"ana@{org}.example", "user_id": f"u_{org}"}


def _feed(start: datetime, per_org: int) -> list[dict]:
    return [
        activity(f"activity_{org}_{i:03d}", start + timedelta(seconds=i), organization_id=org)
        for org in ORGS
        for i in range(per_org)
    ]


def _config(tmp_path: Path, api: str, redis_url: str, prefix: str) -> Path:
    path = tmp_path / "detect.yaml"
    path.write_text(
        f"""source:
  base_url: {api}
  api_key: ${{TEST_COMPLIANCE_KEY}}
  organization_ids: {json.dumps(ORGS)}
  poll_interval: 1s
  lookback: 1d
  max_retries: 0
rules: [{json.dumps(str(RULES))}]
state:
  backend: redis
  redis:
    url: {redis_url}
    key_prefix: "{prefix}"
    lease_ttl: 2s
quarantine: quarantine.jsonl
destinations:
  terminal:
    type: console
""",
        encoding="utf-8",
    )
    return path


def _scrape(url: str) -> dict:
    response = requests.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200
    return parse(response.text)


def _held(samples: dict, family: str = "detect_poll_lag_seconds") -> set[str]:
    """The organizations a worker shows a figure for (by default the poll lag): those it
    polls (the silence from its first pass of each on)."""
    return {dict(labels)["organization"] for (name, labels) in samples if name == family}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_two_workers_each_serve_their_share_and_their_health(tmp_path, redis_server, redis_prefix):
    start = datetime.now(tz=UTC) - timedelta(hours=2)
    mock = MockComplianceAPI(_feed(start, 5), api_key=KEY).start()
    env = {**os.environ, "TEST_COMPLIANCE_KEY": KEY, "NO_COLOR": "1"}
    for name in ("DETECT_LOG_LEVEL", "DETECT_LOG_FORMAT"):
        env.pop(name, None)
    config = _config(tmp_path, mock.url, redis_server, redis_prefix)
    command = [sys.executable, "-m", "engine", "run", "--metrics-port", "0"]
    procs: list[subprocess.Popen[str]] = []
    try:
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [*command, "--config", str(config)],
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        errs = [Lines(proc.stderr) for proc in procs]
        urls = [_until(lambda e=e: e.find(r"metrics: (http://\S+)/metrics"))[1] for e in errs]

        def settled() -> list[dict] | None:
            scraped = [_scrape(url) for url in urls]
            held = [value(s, "detect_leases_held") for s in scraped]
            shown = [_held(s) & _held(s, "detect_source_silence_seconds") for s in scraped]
            read = sum(value(s, "detect_activities_read_total") for s in scraped)
            healthy = all(
                requests.get(f"{url}/healthz", timeout=5).status_code == 200 for url in urls
            )
            if held == [2, 2] and [len(s) for s in shown] == [2, 2] and read == 20 and healthy:
                return scraped
            return None

        before = _until(settled)
        # The leases add up to the organizations, each polled (and shown) by one worker.
        assert sum(value(s, "detect_leases_held") for s in before) == len(ORGS)
        assert all(value(s, "detect_organizations") == len(ORGS) for s in before)
        shown = [_held(s) for s in before]
        assert shown[0] | shown[1] == set(ORGS) and not shown[0] & shown[1]
        ids = set()
        for samples in before:
            (info,) = [labels for (name, labels) in samples if name == "detect_worker_info"]
            assert dict(info)["host"] == socket.gethostname()
            ids.add(dict(info)["worker_id"])
            for org in _held(samples):
                assert value(samples, "detect_poll_lag_seconds", organization=org) >= 600
                assert value(samples, "detect_source_silence_seconds", organization=org) > 7190
        assert len(ids) == 2
        assert all(value(s, "detect_up") == 1 for s in before)

        # One admin change and one deleted chat per organization: each worker's counters
        # move by what its own organizations brought.
        mock.extend(
            activity(
                f"activity_{org}_new{n}",
                start + timedelta(minutes=5 + n),
                kind,
                organization_id=org,
                actor=_actor(org),
            )
            for org in ORGS
            for n, kind in enumerate(("org_sso_toggled", "claude_chat_deleted"))
        )

        def moved() -> list[dict] | None:
            scraped = [_scrape(url) for url in urls]
            read = [value(s, "detect_activities_read_total") for s in scraped]
            attempts = sum(
                value(s, "detect_delivery_attempts_total", destination="terminal") for s in scraped
            )
            pending = [value(s, "detect_outbox_pending", destination="terminal") for s in scraped]
            done = all(
                r == b + 4
                for r, b in zip(
                    read, [value(s, "detect_activities_read_total") for s in before], strict=True
                )
            )
            return scraped if done and attempts == 8 and pending == [0, 0] else None

        after = _until(moved)
        for old, new in zip(before, after, strict=True):
            assert _held(new) == _held(old)  # nothing moved meanwhile
            for family, labels, added in (
                ("detect_rule_matches_total", {"rule": "ingest.admin_change"}, 2),
                ("detect_alerts_total", {"severity": "high"}, 2),
                ("detect_alerts_total", {"severity": "low"}, 2),
            ):
                assert value(new, family, **labels) - value(old, family, **labels) == added
            assert value(new, "detect_delivery_failures_total", destination="terminal") == 0
            assert (
                value(new, "detect_outbox_oldest_pending_age_seconds", destination="terminal") == 0
            )
        metrics_text = requests.get(f"{urls[0]}/metrics", timeout=5).text
        assert "# HELP detect_outbox_pending Deliveries waiting" in metrics_text
        assert SHARED.strip() in metrics_text

        # The API fails: the worker whose organization's pass failed says which.
        mock.script(ScriptedResponse(503, message="scripted outage"))

        def failing() -> tuple[int, dict] | None:
            for index, url in enumerate(urls):
                response = requests.get(f"{url}/healthz", timeout=5)
                if response.status_code == 503:
                    return index, response.json()
            return None

        index, body = _until(failing)
        org, _, reason = body["reason"].partition(": ")
        assert org in _held(after[index]) and org in body["organizations"]
        assert reason.startswith("polling is failing since ")
        assert KEY not in json.dumps(body)
        _until(
            lambda: all(
                requests.get(f"{url}/healthz", timeout=5).status_code == 200 for url in urls
            )
        )
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(timeout=20) for proc in procs] == [0, 0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        mock.stop()
    text = "\n".join(line for err in errs for line in err.lines)
    assert "Traceback" not in text and KEY not in text


# -- in process ----------------------------------------------------------------------


def _worker(api, redis_server, client, prefix, name, partitions=ORGS) -> Worker:
    config = Config(
        source=SourceConfig(
            base_url=api.url,
            api_key=KEY,
            organization_ids=partitions,
            lookback=timedelta(days=1),
            silence_alert_after=timedelta(days=3650),
        ),
        state=StateConfig(
            backend="redis",
            redis=RedisSettings(url=redis_server, key_prefix=prefix, lease_ttl="2s"),
        ),
    )
    ruleset = load_rules([RULES])
    return Worker(
        config,
        client,
        partition_runner(ruleset),
        leases=Leases(client, prefix=prefix, ttl=2, worker_id=name),
        open_store=lambda p, lease: RedisStore(client, prefix, partition=p, lease=lease),
        once=True,
    )


def _view(worker, client) -> WorkerMetrics:
    return WorkerMetrics(worker, client, rule_ids=["ingest.admin_change"])


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_health_reasons_and_counters_that_outlive_the_leases(
    redis_server, redis_client, redis_prefix
):
    start = datetime.now(tz=UTC) - timedelta(hours=2)
    with MockComplianceAPI(_feed(start, 3), api_key=KEY) as api:
        first = _worker(api, redis_server, redis_client, redis_prefix, "first").start()
        # One partition, the key's whole feed, and two workers: the second is a standby.
        whole = _worker(api, redis_server, redis_client, redis_prefix + "w:", "whole", [])
        standby = _worker(api, redis_server, redis_client, redis_prefix + "w:", "spare", [])
        whole.start()
        standby.start()
        try:
            assert standby.leases.held == {} and list(whole.leases.held) == ["*"]
            assert _view(standby, redis_client).health() == (
                True,
                "a standby: the other workers hold every organization",
            )

            assert first.run() == 0
            view = _view(first, redis_client)
            assert view.health() == (True, "4 organizations held; polling succeeds")
            ran = parse(view.render())
            assert value(ran, "detect_activities_read_total") == 12
            assert value(ran, "detect_leases_held") == 4

            # Redis that does not answer.
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            gone = redis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
            healthy, reason = WorkerMetrics(first, gone, rule_ids=()).health()
            assert not healthy and reason.startswith("Redis does not answer: ")
            gone.close()

            # The lease thread dies: its next balance step ends it.
            died = threading.Event()

            def fatal(partitions):
                died.set()
                raise SystemExit

            first.leases.balance = fatal
            assert died.wait(5)
            _until(lambda: not first.lease_loop_alive, timeout=5)
            healthy, reason = view.health()
            assert not healthy and reason.startswith("the lease thread has stopped")
            assert value(parse(view.render()), "detect_up") == 0
            del first.leases.balance
        finally:
            first.close()
            whole.close()
            standby.close()
        # Saved and handed back, the organizations' counters stay this worker's.
        closed = parse(view.render())
        assert value(closed, "detect_activities_read_total") == 12
        assert value(closed, "detect_leases_held") == 0
        assert not _held(closed)
