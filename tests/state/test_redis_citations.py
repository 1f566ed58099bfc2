"""The Redis state's sources and docs/state.md cite only what the repository holds: a
reader sent to a file that is not there (the design contract lives outside it) learns
nothing, and a measured figure comes with the command that measures it again."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITING = [
    ROOT / "engine" / "config.py",
    *sorted((ROOT / "engine" / "state").glob("redis_*.py")),
    ROOT / "docs" / "state.md",
]
# A path the repository would hold: docs/…md, engine/…py, benchmarks/…py, tests/…py.
CITED = re.compile(r"\b((?:docs|engine|benchmarks|tests)/[\w./-]+\.(?:md|py))\b")


def test_every_cited_file_is_in_the_repository():
    for source in CITING:
        text = source.read_text(encoding="utf-8")
        assert "DESIGN.md" not in text, source
        folder = source.parent if source.suffix == ".md" else ROOT
        for cited in CITED.findall(text):
            assert (ROOT / cited).exists() or (folder / cited).exists(), (source, cited)


def test_the_round_trip_figures_come_with_their_command():
    for source in (ROOT / "engine" / "state" / "redis_store.py", ROOT / "docs" / "state.md"):
        text = source.read_text(encoding="utf-8")
        assert "round trips" in text
        assert "benchmarks/redis_round_trips.py" in text, source
    assert (ROOT / "benchmarks" / "redis_round_trips.py").exists()
