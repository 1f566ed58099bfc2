"""`detect bench`: the pipeline's speed next to a bare json.loads loop, per rule; with
--redis, the same with its state on a Redis, with its round trips; with --panther, the
evaluator alone and Panther's own engine on the same rules."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.cli.options import EXIT_INVALID, EXIT_OK, load_ruleset


def cmd_bench(args: argparse.Namespace) -> int:
    from engine.bench.panther import panther_interpreter
    from engine.bench.report import run_bench
    from engine.resources import bundled_rules_dir
    from engine.runs.replay import default_processes

    rules = [Path(p) for p in args.rules] if args.rules else None
    panther_python: str | bool | None = False
    panther_note = ""
    if args.panther:
        rules = [Path(args.panther)]
        try:
            panther_python, panther_note = panther_interpreter(args.panther_python)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INVALID
    elif args.panther_python:
        print("error: --panther-python needs --panther DIR", file=sys.stderr)
        return EXIT_INVALID
    if rules is None:
        local = Path("rules")
        rules = [local if local.is_dir() else bundled_rules_dir()]
    load_ruleset(rules, args)  # a missing path or an empty pack: one line, exit 2
    if args.redis:
        from engine.bench.redis_target import check_server

        # A bad URL, a server out of reach or unsafe for state: one line, exit 2, now.
        server = check_server(args.redis)
        print(f"redis     {server}: persistent, no eviction", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="detect-bench-") as folder:
        benign = None
        if args.file:
            path = Path(args.file)
        else:
            from engine.feedgen import generate, write_jsonl

            path = Path(folder) / "activities.jsonl"
            started = time.perf_counter()
            write_jsonl(path, generate(args.generate, seed=args.seed, users=args.users))
            benign = Path(folder) / "benign.jsonl"
            write_jsonl(
                benign,
                generate(
                    min(args.generate, 100_000), seed=args.seed, attacks=False, users=args.users
                ),
            )
            took = time.perf_counter() - started
            print(
                f"generated {args.generate:,} activities (seed {args.seed}) in {took:.1f}s",
                file=sys.stderr,
            )
        run_bench(
            path,
            rules,
            args.repeat,
            sys.stdout,
            as_json=args.json,
            panther_python=panther_python,
            panther_note=panther_note,
            benign=benign if panther_python is False else None,
            processes=args.processes or default_processes(),
            redis_url=args.redis,
        )
    return EXIT_OK


def register(commands: Any) -> None:
    bench = commands.add_parser(
        "bench", help="measure the pipeline against a bare json.loads loop, per rule"
    )
    source = bench.add_mutually_exclusive_group()
    source.add_argument(
        "--generate",
        type=int,
        default=100_000,
        metavar="N",
        help="generate N realistic activities (default 100000)",
    )
    source.add_argument("--file", metavar="F", help="measure an existing JSONL file instead")
    bench.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    bench.add_argument(
        "--users",
        type=int,
        default=None,
        metavar="N",
        help="people in the generated organization (default: grows with N)",
    )
    bench.add_argument(
        "--rules",
        action="append",
        metavar="DIR",
        help="rules directory (default ./rules or the shipped pack)",
    )
    bench.add_argument(
        "--panther",
        metavar="DIR",
        help="a Panther-format rules directory: also time the evaluator alone and, when"
        " panther_core is available, Panther's own engine on the same rules and activities",
    )
    bench.add_argument(
        "--panther-python",
        metavar="PATH",
        help="with --panther: a Python interpreter that can import panther_core (e.g. a venv"
        " with panther-analysis-tool); default: this interpreter, when it can",
    )
    bench.add_argument(
        "--processes",
        type=int,
        choices=(1, 2),
        help="the full pipeline as `detect replay --processes N` runs it (default: as"
        " replay's default, 2 on Linux with two or more CPUs)",
    )
    bench.add_argument(
        "--redis",
        metavar="URL",
        help="also run the full pipeline with its state on this Redis (redis://HOST:PORT/DB,"
        " rediss:// for TLS; a password in it is never printed) and print its round trips"
        " per activity and its speed against the SQLite runs; each run writes under a fresh"
        " key prefix, deleted after it",
    )
    bench.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(handler=cmd_bench)
