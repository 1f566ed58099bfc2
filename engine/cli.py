"""The `detect` command: parses arguments and calls the engine.

Imports of the engine happen inside each command so `detect --help` stays instant.
Exit codes: 0 success, 1 a test failed or an input could not be read, 2 invalid rules,
configuration or usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.config import Config
    from engine.detection.loader import RuleSet

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _config(path: str | None) -> Config | None:
    """The configuration named by --config, or ./detect.yaml when it exists."""
    from engine.config import DEFAULT_PATH, load_config

    if path is not None:
        return load_config(Path(path))
    if DEFAULT_PATH.is_file():
        return load_config(DEFAULT_PATH)
    return None


def _rule_dirs(given: list[str] | None, config: Config | None) -> list[Path]:
    """Rules named on the command line, else the configuration's, else ./rules, else the
    pack shipped with the engine."""
    from engine.resources import bundled_rules_dir

    if given:
        return [Path(p) for p in given]
    if config is not None:
        return list(config.rules)
    local = Path("rules")
    return [local] if local.is_dir() else [bundled_rules_dir()]


def _load(paths: list[Path], args: argparse.Namespace | None = None) -> RuleSet:
    from engine.panther.cli import panther_options
    from engine.rule_formats import load_rules

    return load_rules(paths, panther_options(args))


def cmd_validate(args: argparse.Namespace) -> int:
    import json

    from engine.panther.cli import panther_options, report_skipped
    from engine.rule_formats import check_rules
    from engine.testing.report import print_problems, problems_json

    paths = _rule_dirs(args.paths, None)
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"error: no such file or directory: {', '.join(map(str, missing))}", file=sys.stderr)
        return EXIT_INVALID
    ruleset, problems = check_rules(paths, panther_options(args))
    if args.format == "json":
        print(
            json.dumps(
                {
                    "rules": len(ruleset.rules) + len(ruleset.skipped),
                    "problems": problems_json(problems),
                },
                indent=2,
            )
        )
    elif problems:
        print_problems(problems, sys.stderr)
    else:
        total = len(ruleset.rules) + len(ruleset.skipped)
        report_skipped(ruleset, sys.stderr)
        note = f" ({len(ruleset.skipped)} inactive)" if ruleset.skipped else ""
        print(f"{total} rules valid{note}, {len(ruleset.lists.lists)} named lists")
    return EXIT_INVALID if problems else EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    from engine.panther.cli import panther_options, report_skipped
    from engine.rule_formats import check_rules
    from engine.testing.report import print_problems, print_results, results_json
    from engine.testing.runner import collect, run_tests

    ruleset, problems = check_rules(_rule_dirs(args.paths, None), panther_options(args))
    if problems:
        print_problems(problems, sys.stderr)
        return EXIT_INVALID
    report_skipped(ruleset, sys.stderr)
    if args.mutate:
        from engine.testing.mutate import mutate_rules
        from engine.testing.mutation_report import passes, print_report, report_json

        report = mutate_rules(ruleset, args.k)
        if args.format == "json":
            print(report_json(report))
        else:
            print_report(report, sys.stdout, args.min_score)
        return EXIT_OK if passes(report, args.min_score) else EXIT_FAILED
    tests = collect(ruleset, args.k)
    results = run_tests(tests, ruleset)
    if args.format == "json":
        print(results_json(results))
    else:
        print_results(results, sys.stdout)
    if not results:
        print("no tests matched" if args.k else "no tests found", file=sys.stderr)
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILED


def cmd_replay(args: argparse.Namespace) -> int:
    from engine.pipeline import collect_less
    from engine.replay import ReplayOptions, default_processes, replay, summary
    from engine.state.sqlite import SqliteStore

    config = _config(args.config)
    ruleset = _load(_rule_dirs(args.rules, config), args)
    quarantine = (
        Path(args.quarantine)
        if args.quarantine
        else (config.quarantine if config else Path(".detect/quarantine.jsonl"))
    )
    options = ReplayOptions(
        format=args.format,
        sort=args.sort,
        reorder_capacity=args.reorder,
        quarantine=None if args.no_quarantine else quarantine,
        processes=args.processes or default_processes(),
    )
    state = Path(args.state) if args.state else None
    if args.deliver:
        if config is None:
            from engine.errors import ConfigError

            raise ConfigError("--deliver needs a configuration (detect.yaml or --config)")
        _check_destinations(ruleset, config)
        state = state or config.state.path
    store = SqliteStore(state) if state else None
    collect_less()
    try:
        stats = replay(args.paths, ruleset, options, store=store)
    finally:
        if store is not None:
            store.close()
    print(summary(stats, len(ruleset.rules)), file=sys.stderr)
    if args.deliver:
        from engine.delivery import deliver_pending

        report = deliver_pending(config, timeout=args.deliver_timeout)
        print(f"delivery: {report}", file=sys.stderr)
    return EXIT_OK


def _check_destinations(ruleset: RuleSet, config: Config) -> None:
    """Rules naming destinations the configuration lacks stop the start, loudly."""
    from engine.delivery import unknown_rule_destinations
    from engine.errors import ConfigError

    problems = unknown_rule_destinations(ruleset.rules, config.destinations)
    if problems:
        raise ConfigError("\n".join(problems))


def cmd_run(args: argparse.Namespace) -> int:
    from engine.pipeline import collect_less
    from engine.replay import summary
    from engine.resources import demo_feed_path

    if not args.demo:
        from engine.errors import ConfigError
        from engine.live import run_from_config

        config = _config(args.config)
        if config is None:
            raise ConfigError(
                "no configuration: create detect.yaml (see docs/ingestion.md) or pass --config"
            )
        ruleset = _load(_rule_dirs(args.rules, config), args)
        _check_destinations(ruleset, config)
        collect_less()
        return run_from_config(
            config, ruleset, once=args.once, deliver_timeout=args.deliver_timeout
        )
    from engine.live import demo

    ruleset = _load(_rule_dirs(args.rules, None), args)
    feed = Path(args.events) if args.events else demo_feed_path()
    print(
        f"demo: serving {feed} on a local mock Compliance API, polling it through "
        f"{len(ruleset.rules)} rules",
        file=sys.stderr,
    )
    stats = demo(feed, ruleset)
    print(summary(stats, len(ruleset.rules)))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detect",
        description="Detection rules for Anthropic Compliance API activity.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
    run.add_argument(
        "--deliver-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="with --once: how long to keep retrying deliveries before exiting "
        "with the rest pending in the outbox (default 120)",
    )
    run.set_defaults(handler=cmd_run)

    rp = commands.add_parser("replay", help="evaluate JSON / JSONL / .gz files or - (stdin)")
    rp.add_argument("paths", nargs="+", metavar="PATH")
    rp.add_argument(
        "--rules",
        action="append",
        metavar="DIR",
        help="rules directory or file (repeatable; default ./rules)",
    )
    rp.add_argument("--config", help="configuration file (rules, quarantine)")
    rp.add_argument("--format", choices=("text", "jsonl"), default="text")
    rp.add_argument(
        "--sort",
        action="store_true",
        help="sort each input wholly by created_at first (newest-first exports)",
    )
    rp.add_argument(
        "--reorder",
        type=int,
        default=10_000,
        metavar="N",
        help="reorder buffer size in activities (default 10000)",
    )
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
        "--deliver",
        action="store_true",
        help="send the alerts to the configured destinations (state from config)",
    )
    rp.add_argument(
        "--deliver-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="with --deliver: how long to keep retrying before leaving the rest "
        "pending in the outbox (default 120)",
    )
    rp.set_defaults(handler=cmd_replay)

    test = commands.add_parser("test", help="run the rules' inline tests")
    test.add_argument("paths", nargs="*", metavar="PATH")
    test.add_argument("-k", metavar="TEXT", help="only tests whose rule id or name has TEXT")
    test.add_argument("--format", choices=("text", "json"), default="text")
    test.add_argument(
        "--mutate",
        action="store_true",
        help="mutation testing: change each rule in small ways and report the changes "
        "its tests do not notice",
    )
    test.add_argument(
        "--min-score",
        type=float,
        metavar="N",
        help="with --mutate: exit 1 when the pack's mutation score is below N percent",
    )
    test.set_defaults(handler=cmd_test)

    validate = commands.add_parser("validate", help="check rule files against the schema")
    validate.add_argument("paths", nargs="*", metavar="PATH")
    validate.add_argument("--format", choices=("text", "json"), default="text")
    validate.set_defaults(handler=cmd_validate)
    __import__("engine.delivery.commands", fromlist=["register"]).register(commands)
    __import__("engine.sources.commands", fromlist=["register"]).register(commands)
    __import__("engine.panther.cli", fromlist=["register"]).register(commands)
    __import__("engine.bench", fromlist=["register"]).register(commands)
    __import__("engine.catalog", fromlist=["register"]).register(commands)
    __import__("engine.orgsim.command", fromlist=["register"]).register(commands)
    __import__("engine.noise", fromlist=["register"]).register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from engine.errors import ConfigError, InputError, RuleLoadError, StateInUseError

    try:
        return args.handler(args)
    except RuleLoadError as exc:
        from engine.testing.report import print_problems

        print_problems(exc.problems, sys.stderr)
        return EXIT_INVALID
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except (InputError, StateInUseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
