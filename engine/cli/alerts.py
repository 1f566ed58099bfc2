"""`detect alerts`: what the outbox holds, and the levers an operator needs.

    detect alerts list [--dead | --pending] [--rule ID] [--limit N] [--format json]
                                           (an alert held for a digest shows as `digest`)
    detect alerts show ID
    detect alerts retry ID | --dead [--destination NAME] [--include-silenced] [--send]
    detect alerts silence (--rule ID | --dedup-key KEY) --for 4h --reason TEXT
    detect alerts silences [--all]
    detect alerts unsilence SILENCE_ID
    detect alerts test --destination NAME [--severity S] [--timeout SECONDS]

Every command reads the state database named by `--state`, else the configuration's
state (`--config`, else ./detect.yaml): its Redis with `state.backend: redis`, shared by
every worker, else its `state.path`; else `.detect/state.db`. Nothing here
prints a destination URL, a secret or a header value; event text is made printable
before it reaches the terminal.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from engine.cli.options import EXIT_FAILED, EXIT_INVALID, EXIT_OK, load_config, state_path
from engine.delivery.text import clean_text

if TYPE_CHECKING:
    from engine.config import Config
    from engine.delivery.outbox import Delivery, OutboxStore


def _redis_outbox(args: argparse.Namespace, config: Config | None) -> OutboxStore | None:
    """The shared outbox, when the configuration keeps its state on Redis and no
    `--state` file is named."""
    if getattr(args, "state", None) or config is None or config.state.backend != "redis":
        return None
    from engine.delivery.backend import open_outbox

    return open_outbox(config)


def _open(args: argparse.Namespace, config: Config | None) -> OutboxStore | None:
    from engine.delivery.outbox import Outbox

    shared = _redis_outbox(args, config)
    if shared is not None:
        return shared
    path = state_path(getattr(args, "state", None), config)
    try:
        return Outbox(path, create=False)
    except FileNotFoundError:
        print(f"error: no state database at {path} (nothing has run yet?)", file=sys.stderr)
        return None


def _state_word(delivery: Delivery) -> str:
    from engine.activity import format_timestamp

    if delivery.status == "digest":
        # Held for a digest: its period is still open, or its digest message is on its way.
        if delivery.digest_id:
            return f"digest (in {delivery.digest_id}, not sent yet)"
        return "digest (waiting for the period to close)"
    if delivery.status == "pending":
        if delivery.attempts == 0:
            return "pending"
        tries = f"{delivery.attempts} attempt{'s' if delivery.attempts != 1 else ''}"
        return f"retrying ({tries}, next {format_timestamp(delivery.next_attempt_at, 'seconds')})"
    return delivery.status


def _delivery_line(delivery: Delivery) -> str:
    purpose = "" if delivery.purpose == "opened" else f" [{delivery.purpose}]"
    return f"{clean_text(str(delivery.destination), 60)}{purpose} {_state_word(delivery)}"


def _resolve(outbox: OutboxStore, given: str) -> str | None:
    if outbox.alert(given) is not None:
        return given
    found = outbox.find_alert_ids(given)
    if len(found) == 1:
        return found[0]
    if found:
        print(f"error: {given!r} matches several alerts: {', '.join(found)}", file=sys.stderr)
    else:
        print(f"error: no alert {clean_text(str(given), 80)!r}", file=sys.stderr)
    return None


def _public(alert: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in alert.items() if not k.startswith("_")}


# -- list ---------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    config = load_config(getattr(args, "config", None))
    outbox = _open(args, config)
    if outbox is None:
        return EXIT_FAILED
    try:
        if args.dead or args.pending:
            return _list_deliveries(outbox, "dead" if args.dead else "pending", args)
        alerts = outbox.recent_alerts(args.limit, args.rule)
        deliveries = outbox.deliveries([a["alert_id"] for a in alerts])
        if args.format == "json":
            rows = [
                {
                    "alert": _public(a),
                    "route": outbox.route_note(a["alert_id"]),
                    "deliveries": [d.to_dict() for d in deliveries[a["alert_id"]]],
                }
                for a in alerts
            ]
            print(json.dumps(rows, indent=2, default=str))
            return EXIT_OK
        if not alerts:
            print("no alerts")
        for alert in alerts:
            count = alert.get("event_count", 0)
            print(
                f"{alert['alert_id']}  {alert.get('first_event_at') or '-'}  "
                f"{str(alert.get('severity', '')).upper():<8}  "
                f"{clean_text(str(alert.get('rule_id')), 80)}"
                f"  {count} event{'s' if count != 1 else ''}"
            )
            print(f"    {clean_text(str(alert.get('title', '')), 160)}")
            rows = deliveries[alert["alert_id"]]
            if rows:
                print("    " + " · ".join(_delivery_line(d) for d in rows))
            else:
                note = outbox.route_note(alert["alert_id"])
                print(f"    {clean_text(str(note), 160) if note else 'not routed yet'}")
        counts = outbox.counts()
        if counts:
            print("outbox: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        return EXIT_OK
    finally:
        outbox.close()


def _list_deliveries(outbox: OutboxStore, status: str, args: argparse.Namespace) -> int:
    from engine.activity import format_timestamp

    # Alerts waiting for a digest are still to be sent: `--pending` lists them too.

    rows = outbox.by_status((status, "digest") if status == "pending" else status, args.limit)
    if args.rule:
        alerts = {d.alert_id: outbox.alert(d.alert_id) or {} for d in rows}
        rows = [d for d in rows if alerts[d.alert_id].get("rule_id") == args.rule]
    if args.format == "json":
        print(json.dumps([d.to_dict() for d in rows], indent=2, default=str))
        return EXIT_OK
    if not rows:
        print("no dead letters" if status == "dead" else "nothing pending")
    for d in rows:
        moment = d.finished_at if status == "dead" else d.queued_at
        when = "-" if moment is None else format_timestamp(moment, "seconds")
        purpose = "" if d.purpose == "opened" else f" [{d.purpose}]"
        print(
            f"{d.alert_id}  {clean_text(str(d.destination), 60)}{purpose}  "
            f"{_state_word(d)} {when}  "
            f"after {d.attempts} attempt(s)"
        )
        if d.reason:
            print(f"    {clean_text(str(d.reason), 300)}")
    if status == "dead" and rows:
        print("re-send with: detect alerts retry ALERT_ID (or --dead for all)")
    return EXIT_OK


# -- show ---------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:

    from engine.activity import format_timestamp

    config = load_config(getattr(args, "config", None))
    outbox = _open(args, config)
    if outbox is None:
        return EXIT_FAILED
    try:
        alert_id = _resolve(outbox, args.alert_id)
        if alert_id is None:
            return EXIT_FAILED
        alert = outbox.alert(alert_id) or {}
        deliveries = outbox.deliveries([alert_id])[alert_id]
        note = outbox.route_note(alert_id)
        if args.format == "json":
            print(
                json.dumps(
                    {
                        "alert": _public(alert),
                        "route": note,
                        "deliveries": [d.to_dict() for d in deliveries],
                    },
                    indent=2,
                    default=str,
                )
            )
            return EXIT_OK
        from engine.alerts import Alert
        from engine.delivery.console import format_alert

        print(format_alert(Alert.from_state(alert)))
        if alert.get("description"):
            print(f"    about    {clean_text(str(alert['description']), 500)}")
        print(f"    route    {clean_text(str(note), 300) if note else 'not routed yet'}")
        if not deliveries:
            print("    no deliveries")
        for d in deliveries:
            print(f"    → {_delivery_line(d)}")
            last, done = (
                "-" if moment is None else format_timestamp(moment, "seconds")
                for moment in (d.last_attempt_at, d.finished_at)
            )
            print(
                f"        queued {format_timestamp(d.queued_at, 'seconds')}"
                f" · {d.attempts} attempt(s) · last {last} · done {done}"
            )
            if d.reason:
                print(f"        {clean_text(str(d.reason), 300)}")
        return EXIT_OK
    finally:
        outbox.close()


# -- retry --------------------------------------------------------------------------


def cmd_retry(args: argparse.Namespace) -> int:
    if bool(args.alert_id) == bool(args.dead):
        print("error: give an alert id, or --dead for every dead letter", file=sys.stderr)
        return EXIT_INVALID
    config = load_config(getattr(args, "config", None))
    if args.destination and config is not None and args.destination not in config.destinations:
        print(f"error: no destination {args.destination!r} in the configuration", file=sys.stderr)
        return EXIT_INVALID
    if args.send and config is None:
        print("error: --send needs the configuration (--config or ./detect.yaml)", file=sys.stderr)
        return EXIT_INVALID
    outbox = _open(args, config)
    if outbox is None:
        return EXIT_FAILED
    try:
        alert_id = None
        if args.alert_id:
            alert_id = _resolve(outbox, args.alert_id)
            if alert_id is None:
                return EXIT_FAILED
        statuses = ("dead", "silenced") if args.include_silenced else ("dead",)
        count = outbox.requeue(time.time(), alert_id, args.destination, statuses)
    finally:
        outbox.close()
    what = "silenced or dead" if args.include_silenced else "dead"
    if count == 0:
        print(f"nothing to retry: no {what} deliveries matched")
        return EXIT_OK
    print(f"re-queued {count} delivery(ies)")
    if not args.send:
        print("they go out with the next delivery pass (`detect run`, or retry with --send)")
        return EXIT_OK
    from engine.runs import build

    assert config is not None
    # Re-queued digests were sealed already; open ones keep waiting for their period.
    report = build.deliver(config, timeout=args.timeout, flush_digests=False)
    print(f"delivery: {report}")
    return EXIT_OK if report.dead == 0 else EXIT_FAILED


# -- silences -----------------------------------------------------------------------


def cmd_silence(args: argparse.Namespace) -> int:

    from engine.activity import format_timestamp
    from engine.durations import parse_duration

    if not args.rule and not args.dedup_key:
        print("error: silence what? give --rule, --dedup-key or both", file=sys.stderr)
        return EXIT_INVALID
    if not args.reason.strip():
        print("error: --reason must say why", file=sys.stderr)
        return EXIT_INVALID
    try:
        span = parse_duration(args.duration).total_seconds()
    except ValueError as error:
        print(f"error: --for: {error}", file=sys.stderr)
        return EXIT_INVALID
    config = load_config(getattr(args, "config", None))
    from engine.delivery.outbox import Outbox

    outbox = _redis_outbox(args, config) or Outbox(state_path(getattr(args, "state", None), config))
    try:
        now = time.time()
        silence = outbox.add_silence(
            args.rule, args.dedup_key, now, now + span, args.reason.strip(), args.by, now
        )
    finally:
        outbox.close()
    print(
        f"{silence.silence_id}: {_describe(silence.rule_id, silence.dedup_key)} silenced "
        f"until {format_timestamp(silence.ends_at, 'seconds')}; alerts are still recorded, not sent"
    )
    print(f"lift it early with: detect alerts unsilence {silence.silence_id}")
    return EXIT_OK


def _describe(rule_id: str | None, dedup_key: str | None) -> str:
    parts = []
    if rule_id:
        parts.append(f"rule {clean_text(str(rule_id), 120)}")
    if dedup_key:
        parts.append(f"dedup key {clean_text(str(dedup_key), 120)!r}")
    return " and ".join(parts)


def cmd_silences(args: argparse.Namespace) -> int:

    from engine.activity import format_timestamp

    config = load_config(getattr(args, "config", None))
    outbox = _open(args, config)
    if outbox is None:
        return EXIT_FAILED
    try:
        now = time.time()
        found = outbox.silences(now, include_ended=args.all)
    finally:
        outbox.close()
    if args.format == "json":
        print(json.dumps([s.to_dict() for s in found], indent=2))
        return EXIT_OK
    if not found:
        print("no active silences" if not args.all else "no silences")
    for s in found:
        state = "active" if s.active(now) else ("lifted" if s.lifted_at else "ended")
        print(
            f"{s.silence_id}  {state:<6}  {_describe(s.rule_id, s.dedup_key)}  "
            f"until {format_timestamp(s.ends_at, 'seconds')}"
            f"  by {clean_text(str(s.created_by), 40)}"
        )
        print(f"    {clean_text(str(s.reason), 300)}")
    return EXIT_OK


def cmd_unsilence(args: argparse.Namespace) -> int:
    config = load_config(getattr(args, "config", None))
    outbox = _open(args, config)
    if outbox is None:
        return EXIT_FAILED
    try:
        lifted = outbox.lift_silence(args.silence_id, time.time())
    finally:
        outbox.close()
    if not lifted:
        print(f"error: no active silence {clean_text(str(args.silence_id), 40)!r}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"{args.silence_id} lifted; alerts already silenced stay silenced "
        "(re-send them with: detect alerts retry ID --include-silenced)"
    )
    return EXIT_OK


# -- test ---------------------------------------------------------------------------


def cmd_test(args: argparse.Namespace) -> int:
    """One marked test alert through the real path (engine/runs/probe.py). Exit 0 when
    the destination accepted it; 1 with the receiver's answer when it refused it, or when
    it was still failing after `--timeout` seconds."""
    config = load_config(getattr(args, "config", None))
    if config is None:
        print("error: needs the configuration (--config or ./detect.yaml)", file=sys.stderr)
        return EXIT_INVALID
    if args.destination not in config.destinations:
        print(
            f"error: no destination {clean_text(str(args.destination), 60)!r} in the configuration",
            file=sys.stderr,
        )
        return EXIT_INVALID
    from engine.runs.probe import send_test

    kind = config.destinations[args.destination].type
    print(f"sending a test alert to {args.destination} ({kind}) …", flush=True)
    result = send_test(config, args.destination, args.timeout, args.severity)
    answer = f"HTTP {result.http_status}" if result.http_status else ""
    if kind == "email" and result.http_status:
        answer = f"SMTP {result.http_status}"
    tries = f"{result.attempts} attempt{'s' if result.attempts != 1 else ''}"
    if result.accepted:
        print(f"accepted: {answer or 'sent'} ({tries}); test alert {result.alert_id}")
        return EXIT_OK
    reason = clean_text(str(result.reason or answer or result.status), 300)
    if result.status == "pending":
        print(f"not delivered within {args.timeout:g}s ({tries}): {reason}", file=sys.stderr)
    else:
        print(f"refused ({tries}): {reason}", file=sys.stderr)
    return EXIT_FAILED


# -- wiring -------------------------------------------------------------------------


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name is not worth failing a silence for
        return "unknown"


def register(subparsers: Any) -> None:
    """Add `detect alerts …` to the `detect` parser."""
    alerts = subparsers.add_parser(
        "alerts", help="the outbox: deliveries, dead letters, retries and silences"
    )
    actions = alerts.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config", help="configuration file (default ./detect.yaml)")
        parser.add_argument(
            "--state", metavar="FILE", help="state database (default: from the configuration)"
        )

    ls = actions.add_parser("list", help="recent alerts with their delivery per destination")
    common(ls)
    which = ls.add_mutually_exclusive_group()
    which.add_argument("--dead", action="store_true", help="the dead letters instead")
    which.add_argument("--pending", action="store_true", help="what is still to be sent")
    ls.add_argument("--rule", metavar="ID", help="only this rule's alerts")
    ls.add_argument("--limit", type=int, default=20, metavar="N", help="default 20")
    ls.add_argument("--format", choices=("text", "json"), default="text")
    ls.set_defaults(handler=cmd_list)

    show = actions.add_parser("show", help="one alert, its route and every delivery attempt")
    common(show)
    show.add_argument("alert_id", metavar="ID", help="an alert id (or a unique prefix)")
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.set_defaults(handler=cmd_show)

    retry = actions.add_parser("retry", help="send dead letters again, with a fresh retry budget")
    common(retry)
    retry.add_argument("alert_id", metavar="ID", nargs="?", help="an alert id (or prefix)")
    retry.add_argument("--dead", action="store_true", help="every dead letter")
    retry.add_argument("--destination", metavar="NAME", help="only to this destination")
    retry.add_argument(
        "--include-silenced", action="store_true", help="also deliveries a silence held back"
    )
    retry.add_argument("--send", action="store_true", help="deliver now instead of next pass")
    retry.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="with --send: stop waiting for retries after this long (default 120)",
    )
    retry.set_defaults(handler=cmd_retry)

    silence = actions.add_parser(
        "silence", help="record but do not send a rule's (or dedup key's) alerts for a while"
    )
    common(silence)
    silence.add_argument("--rule", metavar="ID", help="rule id (glob patterns allowed)")
    silence.add_argument("--dedup-key", metavar="KEY", help="only alerts with this dedup key")
    silence.add_argument(
        "--for", dest="duration", required=True, metavar="DURATION", help="e.g. 30m, 4h, 2d"
    )
    silence.add_argument("--reason", required=True, help="why (shown with every held alert)")
    silence.add_argument("--by", default=_default_user(), help="who (default: your user)")
    silence.set_defaults(handler=cmd_silence)

    silences = actions.add_parser("silences", help="active silences")
    common(silences)
    silences.add_argument("--all", action="store_true", help="also ended and lifted ones")
    silences.add_argument("--format", choices=("text", "json"), default="text")
    silences.set_defaults(handler=cmd_silences)

    unsilence = actions.add_parser("unsilence", help="lift a silence before it ends")
    common(unsilence)
    unsilence.add_argument("silence_id", metavar="SILENCE_ID")
    unsilence.set_defaults(handler=cmd_unsilence)

    test = actions.add_parser(
        "test", help="send a clearly marked test alert to one destination, through the real path"
    )
    common(test)
    test.add_argument("--destination", required=True, metavar="NAME", help="the destination")
    test.add_argument(
        "--severity",
        default="info",
        choices=("info", "low", "medium", "high", "critical"),
        help="the test alert's severity (default info; it decides digests and PagerDuty urgency)",
    )
    test.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to keep retrying 429/5xx before giving up (default 60)",
    )
    test.set_defaults(handler=cmd_test)
