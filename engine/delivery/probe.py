"""The test alert of `detect alerts test --destination NAME`, and the answer read back.

`marked_test_alert` is one clearly marked alert (rule `detect.test`, `[TEST]` in its
title) routed to exactly one destination by its own `destinations`; `read_answer` reads
what became of it from an outbox: its delivery, or, when a destination's digest took
it, the digest message's. Sending it through the real path (a throwaway state database,
an ordinary dispatcher) is the run mode `engine/runs/probe.py`; the command is in
`engine/cli/alerts.py`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.alerts import Alert

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


def marked_test_alert(destination: str, severity: str, now: datetime) -> Alert:
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


def read_answer(db_path: Path, alert_id: str) -> ProbeResult:
    """What the outbox at `db_path` recorded for the test alert `alert_id`."""
    from engine.delivery.outbox import Outbox

    outbox = Outbox(db_path)
    try:
        rows = outbox.deliveries([alert_id]).get(alert_id, [])
        if rows and rows[0].digest_id:
            # Sent inside a digest: the digest message carries the answer.
            key = rows[0].digest_id
            rows = outbox.deliveries([key]).get(key) or rows
    finally:
        outbox.close()
    if not rows:
        return ProbeResult(alert_id, "dead", None, "the test alert was not routed", 0)
    row = rows[0]
    return ProbeResult(alert_id, row.status, row.http_status, row.reason, row.attempts)
