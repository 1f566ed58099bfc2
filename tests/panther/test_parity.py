"""detect and panther_analysis_tool agree on every test's verdict (opt-in: slow, and needs
panther_analysis_tool, which is not a dependency of detect).

Run with PANTHER_ANALYSIS_TOOL=/path/to/panther_analysis_tool pytest tests/panther; see
benchmarks/panther_parity.py for what is compared.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import REPO

PAT = os.environ.get("PANTHER_ANALYSIS_TOOL")


@pytest.mark.skipif(not PAT, reason="set PANTHER_ANALYSIS_TOOL to compare with Panther's tool")
def test_verdicts_match_panther_analysis_tool() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "panther_parity.py"), "--pat", str(PAT)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdicts agree" in done.stdout
