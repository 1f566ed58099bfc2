"""`detect --help` stays fast by importing no command's machinery: each command imports
its modules when it runs. Checked by what is imported, not by a clock."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pydantic", "jmespath", "yaml", "jsonschema", "requests")


def test_building_the_parser_imports_nothing_heavy():
    code = (
        "import sys; from engine.cli import build_parser; build_parser(); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
