"""`detect noise`: per-rule alert volume on a feed (and recall, with attack labels)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.cli.options import (
    EXIT_INVALID,
    EXIT_OK,
    add_ordering_options,
    add_rules_option,
    load_config,
    load_pack,
)


def cmd_noise(args: argparse.Namespace) -> int:
    import json

    from engine.noise.collect import load_labels, measure
    from engine.noise.render import markdown, text
    from engine.noise.report import build_report
    from engine.pipeline import collect_less

    if args.top < 1:
        print("error: --top must be 1 or more", file=sys.stderr)
        return EXIT_INVALID
    config = load_config(args.config)
    ruleset = load_pack(args, config)
    labels = load_labels(args.labels) if args.labels else None
    collect_less()
    measured = measure(
        args.paths,
        ruleset,
        labels,
        sort=args.sort,
        reorder_capacity=args.reorder,
        err=sys.stderr,
    )
    report = build_report(measured, top=args.top, inputs=args.paths)
    if args.format == "json":
        print(json.dumps(report, indent=2, ensure_ascii=False))
    elif args.format == "markdown":
        sys.stdout.write(markdown(report))
    else:
        sys.stdout.write(text(report, show_all=args.all))
    return EXIT_OK


def register(commands: Any) -> None:
    noise = commands.add_parser(
        "noise",
        help="per-rule alert volume on a feed (and recall, with attack labels)",
        description="Replay the feed(s) through the rules and report, per rule, how many "
        "alerts it raised (per 100k activities, by severity, top dedup keys and titles), "
        "loudest first. With --labels, which labelled attack instances were caught, and "
        "which alerts fell on benign activity.",
    )
    noise.add_argument("paths", nargs="+", metavar="FEED")
    add_rules_option(noise)
    noise.add_argument("--config", help="configuration file (its rules)")
    noise.add_argument(
        "--labels",
        metavar="FILE",
        help="attack labels (JSON Lines, one instance per line): adds recall and the "
        "benign/attack split",
    )
    noise.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    noise.add_argument(
        "--top", type=int, default=5, metavar="N", help="top dedup keys and titles (default 5)"
    )
    noise.add_argument("--all", action="store_true", help="list the silent rules by id")
    add_ordering_options(noise)
    noise.set_defaults(handler=cmd_noise)
