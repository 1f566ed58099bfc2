"""`detect alerts test --destination NAME`: one clearly marked test alert, sent through
the real path, and what the receiver answered.

The test alert is committed to a throwaway state database (never the real one, whose
alerts and deliveries it would otherwise join) and delivered by an ordinary
`Dispatcher` with that one destination: routing by the alert's own `destinations`,
rendering, signing, the rate limit, retries on 429/5xx honouring Retry-After, and the
outcome recorded in the outbox, from which the answer is read back. A destination with
a digest sends the test at once as a digest (the severity decides, as for any alert).

Exit status: 0 when the destination accepted it; 1 with the receiver's answer when it
refused it, or when it was still failing after `--timeout` seconds.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config import Config

TEST_RULE = "detect.test"


@dataclass(frozen=True)
class ProbeResult:
    alert_id: str
    status: str  # sent, dead, pending (still retrying at the deadline), silenced
    http_status: int | None
    reason: str
    attempts: int

    @property
    def accepted(self) -> bool:
        return self.status == "sent"


def marked_test_alert(destination: str, severity: str, now: datetime) -> Any:
    from engine.alerts import Alert

    return Alert(
        alert_id="al_test_" + secrets.token_hex(8),
        kind="detection",
        rule_id=TEST_RULE,
        rule_name="detect test alert",
        severity=severity,
        title=f"[TEST] detect test alert for destination {destination}: no action needed",
        dedup_key=f"test-{destination}",
        opened_at=now,
        window_end=now + timedelta(minutes=1),
        description=(
            "This is a test sent by `detect alerts test`. It checks that alerts reach this "
            "destination; it is not a detection."
        ),
        runbook="1. Nothing to do: this is a test.\n2. If you did not expect it, ask the "
        "owner of the detect deployment.",
        tags=["test"],
        event_count=1,
        first_event_at=now,
        last_event_at=now,
        destinations=[destination],
    )


def send_test(
    config: Config,
    destination: str,
    timeout: float = 60.0,
    severity: str = "info",
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] | None = None,
) -> ProbeResult:
    from engine.delivery.dispatcher import Dispatcher
    from engine.delivery.outbox import Outbox
    from engine.state.sqlite import SqliteStore

    settings = config.destinations[destination]
    now = datetime.fromtimestamp(clock(), tz=UTC)
    alert = marked_test_alert(destination, severity, now)
    with tempfile.TemporaryDirectory(prefix="detect-test-") as folder:
        db = Path(folder) / "state.db"
        store = SqliteStore(db)
        store.save_alert(alert.to_state(), notify=True)
        store.commit()
        store.close()
        with Dispatcher(db, {destination: settings}, clock=clock, sleep=sleep) as dispatcher:
            dispatcher.dispatch_pending(clock() + timeout, flush_digests=True)
        # Read after close(): a request still in flight at the deadline is recorded then.
        outbox = Outbox(db)
        try:
            rows = outbox.deliveries([alert.alert_id]).get(alert.alert_id, [])
            if rows and rows[0].digest_id:
                # Sent inside a digest: the digest message carries the answer.
                key = rows[0].digest_id
                rows = outbox.deliveries([key]).get(key) or rows
        finally:
            outbox.close()
    if not rows:
        return ProbeResult(alert.alert_id, "dead", None, "the test alert was not routed", 0)
    row = rows[0]
    return ProbeResult(alert.alert_id, row.status, row.http_status, row.reason, row.attempts)


def cmd_test(args: argparse.Namespace) -> int:
    from engine.delivery.commands import EXIT_FAILED, EXIT_INVALID, EXIT_OK, _clean, _config

    config = _config(args)
    if config is None:
        print("error: needs the configuration (--config or ./detect.yaml)", file=sys.stderr)
        return EXIT_INVALID
    if args.destination not in config.destinations:
        print(
            f"error: no destination {_clean(args.destination, 60)!r} in the configuration",
            file=sys.stderr,
        )
        return EXIT_INVALID
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
    reason = _clean(result.reason or answer or result.status, 300)
    if result.status == "pending":
        print(f"not delivered within {args.timeout:g}s ({tries}): {reason}", file=sys.stderr)
    else:
        print(f"refused ({tries}): {reason}", file=sys.stderr)
    return EXIT_FAILED


def register(actions: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
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
