"""The short version of `benchmarks/redis_drill.py`: three `detect run` workers on the
suite's redis-server, ten organizations with a backlog on the mock API, one worker
SIGKILLed mid-run and another while holding a lease it had just taken over. Every
verdict passes: the takeovers within twice the lease TTL, every organization read to
the end, the alerts those of a single-process replay per organization (by id and
content), no alert notified twice, a clean stop releasing every lease."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "redis_drill.py"


def test_the_quick_workers_drill_passes(redis_server):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--redis-url", redis_server],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert len(rows) == 8, done.stdout
    assert all(row.endswith("| pass |") for row in rows), done.stdout
    takeovers = [row for row in rows if row.startswith("| takeover")]
    assert len(takeovers) == 2
