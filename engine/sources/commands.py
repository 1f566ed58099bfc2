"""`detect mock-api`, `detect check-connection` and `detect status`.

    detect mock-api [--port P] [--events F | --count N] [--start now] [fault options]
    detect check-connection [--config F] [--format json]
    detect status [--config F] [--state PATH] [--format json]

None of them prints the API key. `status` opens the state database read-only, so it can
run beside a live `detect run`.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config import Config

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
DEFAULT_STATE = Path(".detect/state.db")


def register(subparsers: Any) -> None:
    """Add the source commands to `detect`'s subcommands."""
    mock = subparsers.add_parser(
        "mock-api",
        help="serve a local Compliance API (a feed file or a generated one) for trials",
        description="A real HTTP server on loopback with the Compliance API's semantics: "
        "newest first, cursors, time and organization filters, the documented errors, "
        "600 requests a minute, and optional faults.",
    )
    mock.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    mock.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    feed = mock.add_mutually_exclusive_group()
    feed.add_argument("--events", metavar="FILE", help="JSONL / JSON / .gz activities to serve")
    feed.add_argument("--count", type=int, help="serve a generated feed of this many activities")
    mock.add_argument("--seed", type=int, default=7, help="generated feed's seed (default 7)")
    mock.add_argument(
        "--start",
        metavar="TIME",
        help="move the feed so it begins at TIME: `now` (activities then appear as the "
        "clock reaches them), `2h` (two hours ago), or RFC 3339",
    )
    mock.add_argument("--key", help="the API key to accept (default: mock-key)")
    mock.add_argument(
        "--forbidden-key", action="append", default=[], help="a key answered with 403"
    )
    mock.add_argument("--requests-per-minute", type=int, default=600)
    mock.add_argument("--rate-limit", type=float, default=0.0, metavar="SHARE")
    mock.add_argument("--retry-after", type=float, default=1.0, metavar="SECONDS")
    mock.add_argument("--server-errors", type=float, default=0.0, metavar="SHARE")
    mock.add_argument("--slow", type=float, default=0.0, metavar="SHARE")
    mock.add_argument("--delay", type=float, default=2.0, metavar="SECONDS")
    mock.add_argument("--duplicates", type=float, default=0.0, metavar="SHARE")
    mock.add_argument("--late", type=float, default=0.0, metavar="SHARE")
    mock.add_argument("--late-by", default="5m", metavar="DURATION")
    mock.add_argument("--fault-seed", type=int, default=0)
    mock.set_defaults(handler=cmd_mock_api)

    check = subparsers.add_parser(
        "check-connection",
        help="prove the API key, its scope and the organization filter work",
    )
    check.add_argument("--config", help="configuration file (default ./detect.yaml)")
    check.add_argument(
        "--sample", type=int, default=1000, help="activities to look at (default 1000)"
    )
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.set_defaults(handler=cmd_check_connection)

    status = subparsers.add_parser(
        "status", help="checkpoint, lag, last poll, counts, source health"
    )
    status.add_argument("--config", help="configuration file (default ./detect.yaml)")
    status.add_argument("--state", metavar="FILE", help="state database (default: config's)")
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(handler=cmd_status)


def _config(path: str | None) -> Config | None:
    from engine.cli import _config as load

    return load(path)


def _ago(now: datetime, moment: datetime | None) -> str:
    from engine.sources.health import describe

    if moment is None:
        return "-"
    span = now - moment
    if span < timedelta(0):
        return f"in {describe(-span)}"
    return f"{describe(span)} ago"


# -- mock-api -----------------------------------------------------------------------


def _start_time(text: str, now: datetime) -> datetime:
    from engine.activity import parse_timestamp
    from engine.durations import parse_duration
    from engine.errors import ConfigError

    if text == "now":
        return now
    try:
        return now - parse_duration(text.removeprefix("-"))
    except ValueError:
        pass
    try:
        return parse_timestamp(text)
    except ValueError:
        raise ConfigError(
            f"--start: {text!r} is not `now`, a duration ago like `2h`, or RFC 3339"
        ) from None


def cmd_mock_api(args: argparse.Namespace) -> int:
    from engine.activity import parse_timestamp
    from engine.durations import parse_duration
    from engine.errors import ConfigError
    from engine.resources import demo_feed_path
    from engine.sources.mock_api import (
        DEFAULT_KEY,
        Faults,
        MockComplianceAPI,
        load_feed,
        shift_feed,
    )

    for name in ("rate_limit", "server_errors", "slow", "duplicates", "late"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ConfigError(f"--{name.replace('_', '-')} is a share between 0 and 1")
    try:
        late_by = parse_duration(args.late_by).total_seconds()
    except ValueError as exc:
        raise ConfigError(f"--late-by: {exc}") from None
    if args.count is not None:
        from engine.feedgen import generate

        activities = list(generate(args.count, seed=args.seed))
        origin = f"a generated feed (seed {args.seed})"
    else:
        path = Path(args.events) if args.events else demo_feed_path()
        if path.is_file():
            activities = load_feed(path)
            origin = str(path)
        else:
            from engine.feedgen import generate

            activities = list(generate(400, seed=args.seed))
            origin = f"a generated feed (seed {args.seed})"
    if args.start:
        activities = shift_feed(activities, _start_time(args.start, datetime.now(tz=UTC)))
    faults = Faults(
        rate_limit=args.rate_limit,
        retry_after=args.retry_after,
        server_errors=args.server_errors,
        slow=args.slow,
        delay=args.delay,
        duplicates=args.duplicates,
        late=args.late,
        late_by=late_by,
        seed=args.fault_seed,
    )
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        print(f"warning: listening on {args.host}, beyond this machine", file=sys.stderr)
    mock = MockComplianceAPI(
        activities,
        api_key=args.key or DEFAULT_KEY,
        forbidden_keys=args.forbidden_key,
        faults=faults,
        requests_per_minute=args.requests_per_minute,
        host=args.host,
        port=args.port,
    )
    times = sorted(parse_timestamp(a["created_at"]) for a in activities if "created_at" in a)
    span = f" from {times[0]:%Y-%m-%dT%H:%M:%SZ} to {times[-1]:%Y-%m-%dT%H:%M:%SZ}" if times else ""
    mock.start()
    try:
        print(f"mock Compliance API on {mock.url}", flush=True)
        print(f"serving {len(mock)} activities{span}, from {origin}", flush=True)
        if mock.skipped:
            print(f"skipped {mock.skipped} records without a usable id or created_at")
        if args.key:
            print("key: the one given with --key")
        else:
            print(f"key: {DEFAULT_KEY}   (not a secret: this server's test key)")
        print(
            f"try: curl -H 'x-api-key: {'$KEY' if args.key else DEFAULT_KEY}' "
            f"-H 'anthropic-version: 2023-06-01' '{mock.url}/v1/compliance/activities?limit=2'",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        mock.stop()


# -- check-connection ---------------------------------------------------------------


def cmd_check_connection(args: argparse.Namespace) -> int:
    from engine.activity import parse_timestamp
    from engine.errors import ConfigError
    from engine.sources.compliance_api import (
        ACTIVITIES_PATH,
        MAX_PAGE_SIZE,
        ComplianceAPIError,
        ComplianceClient,
    )

    config = _config(args.config)
    if config is None:
        raise ConfigError("no configuration: create detect.yaml or pass --config")
    source = config.source
    if source.api_key is None:
        raise ConfigError(
            "source.api_key is not set; for example `api_key: ${ANTHROPIC_COMPLIANCE_API_KEY}`"
        )
    sample = max(1, min(args.sample, MAX_PAGE_SIZE))
    client = ComplianceClient(
        source.base_url,
        source.api_key,
        max_requests_per_minute=source.max_requests_per_minute,
        max_retries=min(source.max_retries, 2),
        timeout=min(source.request_timeout.total_seconds(), 30.0),
    )
    report: dict[str, Any] = {
        "endpoint": client.base_url + ACTIVITIES_PATH,
        "organization_filter": list(source.organization_ids),
    }
    now = datetime.now(tz=UTC)
    try:
        page = client.list_activities(organization_ids=source.organization_ids, limit=sample)
        orgs: Counter[str] = Counter()
        for item in page.data:
            org = item.get("organization_id") if isinstance(item, dict) else None
            orgs[org if isinstance(org, str) else ""] += 1
        newest = page.data[0] if page.data else None
        report["newest_activity"] = (
            {"created_at": newest.get("created_at"), "type": newest.get("type")}
            if isinstance(newest, dict)
            else None
        )
        report["sampled"] = len(page.data)
        report["organizations_seen"] = {k or None: v for k, v in orgs.most_common()}
        filters = []
        for org in source.organization_ids:
            probe = client.list_activities(organization_ids=[org], limit=1)
            first = probe.data[0] if probe.data and isinstance(probe.data[0], dict) else None
            filters.append(
                {"organization_id": org, "newest_activity_at": first and first.get("created_at")}
            )
        report["organization_checks"] = filters
        limit = client.rate_limit
        report["rate_limit"] = (
            {"limit": limit.limit, "remaining": limit.remaining} if limit else None
        )
    except ComplianceAPIError as error:
        report["error"] = error.to_dict()
        if args.format == "json":
            print(json.dumps(report, indent=2))
        print(f"FAILED  {error.label}: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        client.close()
    report["ok"] = True
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return EXIT_OK
    scope = ", ".join(source.organization_ids) or "every organization the key can read"
    print(f"endpoint         {report['endpoint']}")
    print("key              accepted (it may read compliance activities)")
    print(f"organizations    {scope}")
    if newest is not None:
        created = newest.get("created_at")
        try:
            age = _ago(now, parse_timestamp(created))
        except (TypeError, ValueError):
            age = "time unreadable"
        print(f"newest activity  {created} ({age}, {newest.get('type')})")
    else:
        print("newest activity  none: the key reads an empty feed (is logging enabled?)")
    if limit is not None and limit.limit is not None:
        print(f"rate limit       {limit.limit} a minute, {limit.remaining} left")
    if page.data:
        print(f"seen in the newest {len(page.data)} activities:")
        for org, count in orgs.most_common():
            label = org or "(no organization)"
            note = "   sign-ins, sign-outs, Compliance API calls" if not org else ""
            print(f"  {label:<34} {count:>6}{note}")
    for check in report["organization_checks"]:
        when = check["newest_activity_at"]
        verdict = f"newest activity {when}" if when else "no activity visible: check the id"
        print(f"filter {check['organization_id']}: {verdict}")
    print("connection OK")
    return EXIT_OK


# -- status -------------------------------------------------------------------------


def _read_state(path: Path) -> dict[str, Any]:
    """Everything `status` shows, from a read-only connection (a live run keeps writing)."""
    uri = f"file:{path.resolve()}?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        meta: dict[str, Any] = {}
        if "meta" in tables:
            for key, value in db.execute("SELECT key, value FROM meta"):
                try:
                    meta[key] = json.loads(value)
                except ValueError:
                    meta[key] = value
        kinds: dict[str, int] = {}
        owed = 0
        if "alerts" in tables:
            kinds = dict(db.execute("SELECT kind, COUNT(*) FROM alerts GROUP BY kind").fetchall())
            if "delivery_routes" in tables:
                query = (
                    "SELECT COUNT(*) FROM alerts WHERE notify = 1 AND alert_id NOT IN "
                    "(SELECT alert_id FROM delivery_routes)"
                )
            else:
                query = "SELECT COUNT(*) FROM alerts WHERE notify = 1"
            owed = db.execute(query).fetchone()[0]
        deliveries: dict[str, int] = {}
        if "deliveries" in tables:
            deliveries = dict(
                db.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall()
            )
        return {"meta": meta, "alerts": kinds, "awaiting_delivery": owed, "deliveries": deliveries}
    finally:
        db.close()


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0


def status_report(state: Path, quarantine: Path | None, now: datetime) -> dict[str, Any]:
    """The facts `detect status` prints, as one JSON-ready mapping."""
    from engine.activity import parse_timestamp
    from engine.live import STATUS_KEY
    from engine.sources.health import HEALTH_KEY
    from engine.sources.poller import CHECKPOINT_KEY

    found = _read_state(state)
    meta = found["meta"]
    checkpoint = meta.get(CHECKPOINT_KEY) or {}
    source = meta.get(STATUS_KEY) or {}
    caught_up = checkpoint.get("caught_up_to")
    lag = None
    if caught_up:
        lag = (now - parse_timestamp(caught_up)).total_seconds()
    return {
        "state": str(state),
        "checked_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "checkpoint": checkpoint or None,
        "lag_seconds": lag,
        "source": source,
        "health": meta.get(HEALTH_KEY) or {},
        "watermark": meta.get("watermark"),
        "alerts": found["alerts"],
        "awaiting_delivery": found["awaiting_delivery"],
        "deliveries": found["deliveries"],
        "quarantine": {
            "path": str(quarantine) if quarantine else None,
            "records": _count_lines(quarantine) if quarantine else 0,
        },
    }


def _print_status(report: dict[str, Any], now: datetime) -> None:
    from engine.activity import parse_timestamp
    from engine.sources.health import describe

    def when(text: str | None) -> str:
        if not text:
            return "-"
        return f"{text} ({_ago(now, parse_timestamp(text))})"

    checkpoint = report["checkpoint"] or {}
    source = report["source"]
    rows: list[tuple[str, str]] = [("state", report["state"])]
    if checkpoint:
        rows.append(("source", checkpoint.get("scope") or "-"))
        cursor = checkpoint.get("cursor") or "none yet"
        rows.append(("checkpoint", f"{cursor} at {checkpoint.get('cursor_time') or '-'}"))
        lag = report["lag_seconds"]
        lag_text = f" (lag {describe(timedelta(seconds=lag))})" if lag is not None else ""
        rows.append(("caught up to", f"{checkpoint.get('caught_up_to') or '-'}{lag_text}"))
        rows.append(("re-reads from", f"{checkpoint.get('settled_before')} (overlap)"))
    else:
        rows.append(("checkpoint", "none: `detect run` has not polled yet"))
    rows.append(("newest activity", when(source.get("newest_activity_at"))))
    last_poll = source.get("last_poll_at")
    failing = source.get("failing_since")
    rows.append(("last poll", f"{when(last_poll)}{' FAILING' if failing else ''}"))
    rows.append(("last success", when(source.get("last_success_at"))))
    if failing:
        error = source.get("last_error") or {}
        rows.append(("failing since", when(failing)))
        rows.append(("last error", f"{error.get('error_type')}: {error.get('message')}"))
    quarantine = report["quarantine"]
    rows.append(
        (
            "activities",
            f"{source.get('activities', 0):,} evaluated · {source.get('rejected', 0):,} "
            f"rejected · {source.get('duplicates', 0):,} duplicates dropped · "
            f"{source.get('pages', 0):,} pages · {source.get('requests', 0):,} requests",
        )
    )
    if quarantine["path"]:
        rows.append(("quarantine", f"{quarantine['records']:,} records in {quarantine['path']}"))
    alerts = report["alerts"]
    total = sum(alerts.values())
    by_kind = ", ".join(f"{n} {kind}" for kind, n in sorted(alerts.items()))
    rows.append(
        (
            "alerts",
            f"{total:,}{f' ({by_kind})' if by_kind else ''} · "
            f"{report['awaiting_delivery']} awaiting delivery",
        )
    )
    if report["deliveries"]:
        rows.append(
            ("deliveries", ", ".join(f"{n} {s}" for s, n in sorted(report["deliveries"].items())))
        )
    health = report["health"]
    notes = []
    if "silence" in health:
        notes.append(
            f"silent since {health['silence'].get('since')} ({health['silence'].get('alert_id')})"
        )
    if "failing" in health:
        notes.append(f"polling failing ({health['failing'].get('alert_id')})")
    rows.append(("health", "; ".join(notes) if notes else "ok"))
    for label, value in rows:
        print(f"{label:<16} {value}")


def cmd_status(args: argparse.Namespace) -> int:
    config = _config(args.config)
    if args.state:
        state = Path(args.state)
    elif config is not None:
        state = config.state.path
    else:
        state = DEFAULT_STATE
    if not state.is_file():
        print(f"error: no state database at {state} (nothing has run yet?)", file=sys.stderr)
        return EXIT_FAILED
    quarantine = config.quarantine if config is not None else Path(".detect/quarantine.jsonl")
    now = datetime.now(tz=UTC)
    report = status_report(state, quarantine, now)
    if args.format == "json":
        print(json.dumps(report, indent=2, default=str))
    else:
        _print_status(report, now)
    return EXIT_OK
