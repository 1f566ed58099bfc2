"""`detect status`: the state of the whole engine at a glance: the source's checkpoint
and lag, the last poll, source health, alerts and deliveries, the quarantine.

    detect status [--config F] [--state PATH] [--format json]

It opens the state database read-only, so it can run beside a live `detect run`, and it
never prints the API key. On a shared Redis (`state.backend: redis`) it shows the
workers (their last heartbeat and the organizations they hold), each organization's
lease, checkpoint and lag, and the shared alerts and deliveries: it only reads, so it
can run from any machine that reaches the Redis.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cli.options import EXIT_FAILED, EXIT_OK, load_config, quarantine_path, state_path

if TYPE_CHECKING:
    from engine.config import Config


def register(subparsers: Any) -> None:
    status = subparsers.add_parser(
        "status", help="checkpoint, lag, last poll, counts, source health"
    )
    status.add_argument("--config", help="configuration file (default ./detect.yaml)")
    status.add_argument("--state", metavar="FILE", help="state database (default: config's)")
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(handler=cmd_status)


def _read_state(path: Path) -> dict[str, Any]:
    """Everything `status` shows from the database, read-only (a live run keeps writing):
    each figure from the module that owns its table."""
    from engine.delivery.outbox import read_delivery_figures
    from engine.state.sqlite import read_summary

    meta, kinds = read_summary(path)
    owed, deliveries = read_delivery_figures(path)
    return {"meta": meta, "alerts": kinds, "awaiting_delivery": owed, "deliveries": deliveries}


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0


def _pipeline(state: Path) -> dict[str, Any] | None:
    """What the running `detect run`'s watchdog last wrote about its pipeline; None when
    no run is alive (no file, or its process is gone)."""
    import os

    from engine.runs.live import pipeline_file

    try:
        record = json.loads(pipeline_file(state).read_text(encoding="utf-8"))
        os.kill(int(record["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if isinstance(record, dict) else None


def status_report(state: Path, quarantine: Path | None, now: datetime) -> dict[str, Any]:
    """The facts `detect status` prints, as one JSON-ready mapping."""
    from engine.activity import format_timestamp, parse_timestamp
    from engine.runs.live import STATUS_KEY
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
        "checked_at": format_timestamp(now, "seconds"),
        "checkpoint": checkpoint or None,
        "lag_seconds": lag,
        "source": source,
        "health": meta.get(HEALTH_KEY) or {},
        "watermark": meta.get("watermark"),
        "pipeline": _pipeline(state),
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
    from engine.durations import ago, describe

    def when(text: str | None) -> str:
        if not text:
            return "-"
        return f"{text} ({ago(now, parse_timestamp(text))})"

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
    pipeline = report["pipeline"]
    if pipeline is not None:
        since = pipeline.get("progress_since")
        pending = pipeline.get("pending", 0)
        if pipeline.get("stalled"):
            stalled_for = describe(now - parse_timestamp(since)) if since else "?"
            text = f"stalled for {stalled_for}, {pending:,} activities pending since {since}"
        elif pending:
            text = f"evaluating a page, {pending:,} activities in hand"
        else:
            text = "running, nothing pending"
        rows.append(("pipeline", f"{text} (process {pipeline.get('pid')})"))
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
    if "stalled" in health:
        notes.append(
            f"pipeline stalled since {health['stalled'].get('since')} "
            f"({health['stalled'].get('alert_id')})"
        )
    rows.append(("health", "; ".join(notes) if notes else "ok"))
    for label, value in rows:
        print(f"{label:<16} {value}")


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config is not None and config.state.backend == "redis" and args.state is None:
        now = datetime.now(tz=UTC)
        shared = redis_status_report(config, now)
        if args.format == "json":
            print(json.dumps(shared, indent=2, default=str))
        else:
            _print_redis_status(shared, now)
        return EXIT_OK
    state = state_path(args.state, config)
    if not state.is_file():
        print(f"error: no state database at {state} (nothing has run yet?)", file=sys.stderr)
        return EXIT_FAILED
    quarantine = quarantine_path(None, config)
    now = datetime.now(tz=UTC)
    report = status_report(state, quarantine, now)
    if args.format == "json":
        print(json.dumps(report, indent=2, default=str))
    else:
        _print_status(report, now)
    return EXIT_OK


# -- a shared Redis ----------------------------------------------------------------------


def redis_status_report(config: Config, now: datetime) -> dict[str, Any]:
    """The facts of a Redis state, as one JSON-ready mapping: the workers, each
    organization (partition) with its lease, checkpoint and lag, the shared alerts and
    deliveries."""
    from engine.activity import format_timestamp, parse_timestamp
    from engine.delivery.redis_outbox import RedisOutbox
    from engine.runs.leases import read_leases, read_workers
    from engine.runs.live import STATUS_KEY
    from engine.runs.workers import partitions_of
    from engine.sources.health import HEALTH_KEY
    from engine.sources.poller import CHECKPOINT_KEY
    from engine.state.redis_alerts import RedisAlertRows
    from engine.state.redis_connect import open_redis, server_of

    settings = config.state.redis
    assert settings is not None  # the configuration refuses backend: redis without it
    prefix = settings.key_prefix
    ttl = settings.lease_ttl.total_seconds()
    client = open_redis(settings)
    try:
        rows = RedisAlertRows(client, prefix)
        configured = partitions_of(config)
        names = configured + [p for p in rows.partitions() if p not in configured]
        checkpoints = rows.partition_meta(CHECKPOINT_KEY)
        sources = rows.partition_meta(STATUS_KEY)
        healths = rows.partition_meta(HEALTH_KEY)
        leases = {lease.partition: lease for lease in read_leases(client, prefix, names)}
        workers = read_workers(client, prefix, now.timestamp(), ttl)
        owed, deliveries = RedisOutbox(client, prefix, alerts=rows).figures()
        kinds = rows.kinds()
        watermark = rows.meta("watermark")
    finally:
        client.close()

    def when(epoch: float | None) -> str | None:
        if epoch is None:
            return None
        return format_timestamp(datetime.fromtimestamp(epoch, tz=UTC), "seconds")

    organizations = []
    for name in names:
        checkpoint = checkpoints.get(name) or {}
        caught_up = checkpoint.get("caught_up_to")
        lease = leases[name]
        organizations.append(
            {
                "partition": name,
                "configured": name in configured,
                "holder": lease.holder,
                "lease_ttl_left": lease.ttl_left,
                "checkpoint": checkpoint or None,
                "lag_seconds": (now - parse_timestamp(caught_up)).total_seconds()
                if caught_up
                else None,
                "source": sources.get(name) or {},
                "health": healths.get(name) or {},
            }
        )
    return {
        "state": f"redis {server_of(settings.url)} (prefix {prefix})",
        "checked_at": format_timestamp(now, "seconds"),
        "lease_ttl_seconds": ttl,
        "workers": [
            {
                "worker_id": w.worker_id,
                "host": w.host,
                "pid": w.pid,
                "started": when(w.started),
                "last_heartbeat": when(w.heartbeat),
                "alive": w.alive,
                "partitions": w.partitions,
            }
            for w in workers
        ],
        "organizations": organizations,
        "watermark": watermark,
        "alerts": kinds,
        "awaiting_delivery": owed,
        "deliveries": deliveries,
    }


def _print_redis_status(report: dict[str, Any], now: datetime) -> None:
    from engine.activity import parse_timestamp
    from engine.durations import ago, describe

    def since(text: str | None) -> str:
        # A heartbeat a hair ahead of this clock is "now", not "in 0s".
        return ago(now, min(now, parse_timestamp(text))) if text else "-"

    workers = report["workers"]
    alive = [w for w in workers if w["alive"]]
    print(f"{'state':<16} {report['state']}")
    print(
        f"{'workers':<16} {len(alive)} live"
        + (f", {len(workers) - len(alive)} silent" if len(workers) > len(alive) else "")
        + f" (lease TTL {describe(timedelta(seconds=report['lease_ttl_seconds']))})"
    )
    for worker in workers:
        state = "" if worker["alive"] else "  SILENT"
        held = ", ".join(worker["partitions"]) or "nothing"
        print(
            f"  {worker['worker_id']}  {worker['host']} pid {worker['pid']}  "
            f"beat {since(worker['last_heartbeat'])}  holds {held}{state}"
        )
    organizations = report["organizations"]
    print(f"{'organizations':<16} {len(organizations)}")
    for org in organizations:
        if org["holder"]:
            # No time left to show for a key set without an expiry (by hand, say).
            left = org["lease_ttl_left"]
            lease = f"held by {org['holder']}"
            if left is not None:
                lease += f" ({left:.1f}s left)"
        else:
            lease = "FREE (no worker holds it)"
        checkpoint = org["checkpoint"] or {}
        lag = org["lag_seconds"]
        caught = checkpoint.get("caught_up_to")
        reached = (
            f"caught up to {caught} (lag {describe(timedelta(seconds=lag))})"
            if caught and lag is not None
            else "not polled yet"
        )
        source = org["source"]
        notes = [
            f"{source.get('activities', 0):,} activities",
            f"last poll {since(source.get('last_poll_at'))}",
        ]
        if source.get("failing_since"):
            error = source.get("last_error") or {}
            notes.append(f"FAILING since {source['failing_since']}: {error.get('message')}")
        if org["health"]:
            notes.append("health: " + ", ".join(sorted(org["health"])))
        if not org["configured"]:
            notes.append("not in source.organization_ids")
        print(f"  {org['partition']}  {lease}  {reached}  {' · '.join(notes)}")
    alerts = report["alerts"]
    total = sum(alerts.values())
    by_kind = ", ".join(f"{n} {kind}" for kind, n in sorted(alerts.items()))
    print(
        f"{'alerts':<16} {total:,}{f' ({by_kind})' if by_kind else ''} · "
        f"{report['awaiting_delivery']} awaiting delivery"
    )
    if report["deliveries"]:
        figures = ", ".join(f"{n} {s}" for s, n in sorted(report["deliveries"].items()))
        print(f"{'deliveries':<16} {figures}")
    print(f"{'watermark':<16} {report['watermark'] or '-'} (the lowest organization's)")


def check_config(path: str) -> int:
    """`detect validate --config FILE`: the file against the models, offline; the
    environment variables it names but the environment lacks are listed, not errors
    (`detect run` needs them; `status` and `alerts list` do not)."""
    from engine.config import load_config as load
    from engine.config import unset_variables

    config = load(Path(path))
    print(f"{path}: valid ({len(config.destinations)} destinations)")
    unset = unset_variables(config)
    if unset:
        print(
            f"note: not set here, needed to poll or deliver: {', '.join(unset)}",
            file=sys.stderr,
        )
    return EXIT_OK
