"""`detect replay`: files (or stdin) through the rules, alerts printed when final."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cli.options import (
    EXIT_OK,
    add_deliver_timeout,
    add_ordering_options,
    add_panther_options,
    add_rules_option,
    check_destinations,
    load_config,
    load_pack,
    packs_line,
    quarantine_path,
    writable_quarantine,
)

if TYPE_CHECKING:
    from engine.config import StateConfig


def register(commands: Any) -> None:
    rp = commands.add_parser("replay", help="evaluate JSON / JSONL / .gz files or - (stdin)")
    rp.add_argument("paths", nargs="+", metavar="PATH")
    add_rules_option(rp)
    rp.add_argument("--config", help="configuration file (rules, quarantine)")
    rp.add_argument("--format", choices=("text", "jsonl"), default="text")
    add_ordering_options(rp)
    rp.add_argument(
        "--quarantine",
        metavar="FILE",
        help="where rejected records go (default .detect/quarantine.jsonl)",
    )
    rp.add_argument("--no-quarantine", action="store_true", help="report rejects only")
    rp.add_argument(
        "--processes",
        type=int,
        choices=(1, 2),
        help="2: one process reads and evaluates while another correlates (same alerts, "
        "about half the time); default 2 on Linux with two or more CPUs",
    )
    rp.add_argument(
        "--state",
        metavar="FILE",
        help="keep correlation state in this SQLite file (default: in memory)",
    )
    rp.add_argument(
        "--final",
        action="store_true",
        help="with --state: the last replay of a series; close every open window at the "
        "end of input (without it, windows stay open in the state file for the next replay)",
    )
    rp.add_argument(
        "--deliver",
        action="store_true",
        help="send the alerts to the configured destinations (state from config)",
    )
    add_deliver_timeout(rp, "--deliver")
    rp.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress line on stderr (drawn only when stderr is a terminal, and only "
        "for a replay that runs longer than a second)",
    )
    add_panther_options(rp)
    rp.set_defaults(handler=cmd_replay)


# The replay ran, but an input broke half-way (a truncated `.gz`): what was read of it,
# and the other inputs, were evaluated and their alerts printed.
EXIT_INCOMPLETE = 3


def cmd_replay(args: argparse.Namespace) -> int:
    from engine.pipeline import collect_less
    from engine.runs import build
    from engine.runs.progress import ReplayProgress, is_terminal
    from engine.runs.replay import ReplayOptions, default_processes, replay, summary
    from engine.sources.files import check_readable

    config = load_config(args.config)
    ruleset = load_pack(args, config)
    options = ReplayOptions(
        format=args.format,
        sort=args.sort,
        reorder_capacity=args.reorder,
        quarantine=None
        if args.no_quarantine
        else writable_quarantine(quarantine_path(args.quarantine, config)),
        processes=args.processes or default_processes(),
    )
    state = Path(args.state) if args.state else None
    if config is not None:
        build.apply_rule_budget(config)
    if args.deliver:
        if config is None:
            from engine.errors import ConfigError

            raise ConfigError("--deliver needs a configuration (detect.yaml or --config)")
        check_destinations(ruleset, config)
        state = state or config.state.path
    check_readable(args.paths)
    # The configuration's `state:` (SQLite or Redis) unless --state names a file.
    backend = None if args.state or not config else config.state
    store = build.open_store(state, backend) if state else None
    # A setup error above stays the only line; from here on, the run says what it runs.
    print(packs_line(args, config, ruleset), file=sys.stderr)
    # State kept for a next replay keeps its windows open unless this is the last one.
    options.keep_open = state is not None and not args.final
    progress = (
        None
        if args.no_progress or not is_terminal(sys.stderr)
        else ReplayProgress(sys.stderr, args.paths)
    )
    collect_less()
    try:
        stats = replay(args.paths, ruleset, options, store=store, progress=progress)
    finally:
        if store is not None:
            store.close()
    print(summary(stats, len(ruleset.rules)), file=sys.stderr)
    if stats.still_open:
        kept = state_name(state, backend)
        print(
            f"{stats.still_open} alert(s) still open in {kept}: printed by the replay whose "
            f"activities pass their window, or at the end of one run with --final",
            file=sys.stderr,
        )
    if args.deliver:
        report = build.deliver(config, timeout=args.deliver_timeout)
        print(f"delivery: {report}", file=sys.stderr)
    return EXIT_INCOMPLETE if stats.read_errors else EXIT_OK


def state_name(path: Path | None, state: StateConfig | None) -> str:
    """Where a replay kept its state, for the summary: the SQLite file, or the Redis of
    `state` (with `backend: redis`) as host:port/db and its key prefix, never more of the
    URL (no credentials)."""
    if state is not None and state.backend == "redis" and state.redis is not None:
        from engine.state.redis_connect import server_of

        return f"the Redis state {server_of(state.redis.url)} (prefix {state.redis.key_prefix})"
    return str(path)
