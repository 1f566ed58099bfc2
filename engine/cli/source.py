"""`detect mock-api` and `detect check-connection`.

    detect mock-api [--port P] [--events F | --count N] [--start now] [fault options]
    detect check-connection [--config F] [--format json]

Neither prints the API key.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.cli.options import EXIT_FAILED, EXIT_OK, require_config


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
    from engine.tools.mock_api import (
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
    from engine.durations import ago
    from engine.errors import ConfigError
    from engine.sources.compliance_api import (
        ACTIVITIES_PATH,
        MAX_PAGE_SIZE,
        ComplianceAPIError,
        ComplianceClient,
    )

    config = require_config(args.config)
    from engine.config import require_secrets

    require_secrets(config, "source")
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
        max_page_bytes=source.max_page_bytes,
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
            age = ago(now, parse_timestamp(created))
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
