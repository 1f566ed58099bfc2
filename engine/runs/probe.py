"""`detect alerts test --destination NAME`: one clearly marked test alert, sent through
the real path, and what the receiver answered.

The test alert (engine/delivery/probe.py) is committed to a throwaway state database
(never the real one, whose alerts and deliveries it would otherwise join) and delivered
by an ordinary dispatcher with that one destination, both from `engine/runs/build.py`:
routing by the alert's own `destinations`, rendering, signing, the rate limit, retries
on 429/5xx honouring Retry-After, and the outcome recorded in the outbox, from which the
answer is read back. A destination with a digest sends the test at once as a digest
(the severity decides, as for any alert).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from engine.config import Config
from engine.delivery.probe import ProbeResult, marked_test_alert, read_answer
from engine.runs import build


def send_test(
    config: Config,
    destination: str,
    timeout: float = 60.0,
    severity: str = "info",
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] | None = None,
) -> ProbeResult:
    """Send the test alert to `destination` and wait for its answer, retrying for at most
    `timeout` seconds."""
    now = datetime.fromtimestamp(clock(), tz=UTC)
    alert = marked_test_alert(destination, severity, now)
    with tempfile.TemporaryDirectory(prefix="detect-test-") as folder:
        db = Path(folder) / "state.db"
        store = build.open_store(db)
        try:
            store.save_alert(alert.to_state(), notify=True)
            store.commit()
        finally:
            store.close()
        with build.dispatcher(
            config, state=db, only=[destination], clock=clock, sleep=sleep
        ) as dispatcher:
            dispatcher.dispatch_pending(clock() + timeout, flush_digests=True)
        # Read after close(): a request still in flight at the deadline is recorded then.
        return read_answer(db, alert.alert_id)
