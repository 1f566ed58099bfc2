"""Where the files shipped beside the engine live.

In a source checkout (or an editable install) they are the project's top-level `rules/`,
`fixtures/` (the demo feed and the files the rules' tests read) and `rules.schema.json`; a
built wheel carries copies under `engine/_bundled/`, in the same layout. Looking in both
places keeps one copy of each file in the repository.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def _root() -> Path:
    bundled = _PACKAGE / "_bundled"
    return bundled if bundled.is_dir() else _PACKAGE.parent


def schema_path() -> Path:
    return _root() / "rules.schema.json"


def bundled_rules_dir() -> Path:
    return _root() / "rules"


def bundled_fixtures_dir() -> Path:
    """The files the shipped rules' tests read (`events_file: fixtures/anthropic/...`): a
    sibling of the rules folder, so the test runner finds them from a rule upwards."""
    return _root() / "fixtures" / "anthropic"


def demo_feed_path() -> Path:
    return _root() / "fixtures" / "demo" / "feed.jsonl"
