"""The generator's public API and command: `generate`, `write_jsonl`, and `main`, what
`python -m engine.feedgen` runs."""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from engine.feedgen.background import _Feed
from engine.feedgen.roster import DEFAULT_START
from engine.jsonl import write_lines


def generate(
    count: int,
    seed: int = 0,
    start: datetime | None = None,
    attacks: bool = True,
    users: int | None = None,
) -> Iterator[dict]:
    """Yield `count` activities in `created_at` order (oldest first), as plain dicts in the
    Compliance API's wire shape. The same arguments always give the same activities.

    `start` defaults to `DEFAULT_START` (not the current time: output must not depend on the
    clock). With `attacks`, the scenarios of `SCENARIOS` are mixed in; feeds too small to
    hold them all keep the ones that fit. `users` sets the size of the organization
    (default: grows with `count`, up to 3,000 people).
    """
    if count <= 0:
        return iter(())
    return _Feed(count, seed, start or DEFAULT_START, attacks, users).run()


def write_jsonl(path: str | Path, activities: Iterable[dict]) -> int:
    """Write activities one JSON object a line to `path` (`-` for stdout; gzip when the name
    ends in `.gz`); returns how many were written."""
    if str(path) == "-":
        return write_lines(sys.stdout, activities)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".gz":
        with gzip.open(target, "wt", encoding="utf-8", compresslevel=6) as gz:
            return write_lines(gz, activities)
    with target.open("w", encoding="utf-8") as handle:
        return write_lines(handle, activities)


def _parse_start(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.feedgen`: write a feed and report the rate on stderr."""
    parser = argparse.ArgumentParser(
        prog="python -m engine.feedgen",
        description="Write a deterministic, realistic Compliance API activity feed (JSONL).",
    )
    parser.add_argument("--count", type=int, default=400, help="activities to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same feed)")
    parser.add_argument(
        "--start",
        type=_parse_start,
        default=None,
        help="RFC 3339 time of the first activity (default 2026-05-04T07:30Z)",
    )
    parser.add_argument(
        "--no-attacks",
        dest="attacks",
        action="store_false",
        help="background activity only, no attack scenarios",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=None,
        help="people in the organization (default: grows with --count)",
    )
    parser.add_argument("--out", default="-", help="output file (.gz compresses); - = stdout")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    feed = generate(args.count, args.seed, args.start, args.attacks, args.users)
    written = write_jsonl(args.out, feed)
    elapsed = time.perf_counter() - began
    rate = written / elapsed if elapsed > 0 else float("inf")
    print(
        f"wrote {written} activities to {args.out} in {elapsed:.2f}s ({rate:,.0f}/s)",
        file=sys.stderr,
    )
    return 0
