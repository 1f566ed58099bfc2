"""The short version of `benchmarks/drills.py` (every drill of issue 18 end to end, with
the real `detect` command): every verdict passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "drills.py"


def test_every_quick_drill_passes():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(rows) >= 15
    assert all("| pass" in row and "FAIL" not in row for row in rows), done.stdout
