"""`detect run`: poll, evaluate, commit and deliver until stopped (`--once`: until caught
up); `--demo`: the sample feed through a local mock API, no credentials."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.options import (
    EXIT_OK,
    add_deliver_timeout,
    add_panther_options,
    check_destinations,
    load_pack,
    require_config,
    writable_quarantine,
)


def register(commands: Any) -> None:
    run = commands.add_parser("run", help="poll, evaluate and deliver (--demo: sample feed)")
    run.add_argument(
        "--demo",
        action="store_true",
        help="the built-in sample feed through the rules; no credentials",
    )
    run.add_argument("--rules", action="append", metavar="DIR", help="rules directory")
    run.add_argument("--events", metavar="FILE", help="with --demo: another activity file")
    run.add_argument("--config", help="configuration file (default ./detect.yaml)")
    run.add_argument(
        "--once", action="store_true", help="catch up to the present, deliver, and exit"
    )
    add_deliver_timeout(run, "--once")
    add_panther_options(run)
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from engine.pipeline import collect_less
    from engine.resources import demo_feed_path
    from engine.runs.replay import summary

    if not args.demo:
        from engine.runs.live import run_from_config

        config = require_config(args.config, " (see docs/ingestion.md)")
        ruleset = load_pack(args, config)
        check_destinations(ruleset, config)
        writable_quarantine(config.quarantine)
        collect_less()
        return run_from_config(
            config, ruleset, once=args.once, deliver_timeout=args.deliver_timeout
        )
    from engine.runs.live import demo

    ruleset = load_pack(args, None)
    feed = Path(args.events) if args.events else demo_feed_path()
    print(
        f"demo: serving {feed} on a local mock Compliance API, polling it through "
        f"{len(ruleset.rules)} rules",
        file=sys.stderr,
    )
    if feed.is_file():
        from engine.tools.mock_api import load_feed

        activities = load_feed(feed)
    else:
        from engine.feedgen import generate

        activities = list(generate(400, seed=7))
    stats = demo(activities, ruleset)
    print(summary(stats, len(ruleset.rules)))
    return EXIT_OK
