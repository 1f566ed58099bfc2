"""`detect validate` and `detect test`: the rule pack's schema check and its tests."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.cli.options import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    add_panther_options,
    describe_packs,
    panther_options,
    report_skipped,
    require_rule_paths,
    require_some_rules,
    rule_dirs,
    rules_origin,
)


def register(commands: Any) -> None:
    test = commands.add_parser("test", help="run the rules' inline tests")
    test.add_argument("paths", nargs="*", metavar="PATH")
    test.add_argument("-k", metavar="TEXT", help="only tests whose rule id or name has TEXT")
    test.add_argument("--format", choices=("text", "json"), default="text")
    test.add_argument("--failures-only", action="store_true", help="print only the tests that fail")
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
    add_panther_options(test)
    test.set_defaults(handler=cmd_test)

    validate = commands.add_parser("validate", help="check rule files against the schema")
    validate.add_argument("paths", nargs="*", metavar="PATH")
    validate.add_argument("--format", choices=("text", "json"), default="text")
    validate.add_argument(
        "--config",
        metavar="FILE",
        help="check this configuration file (offline: no secret needs to be set) instead",
    )
    add_panther_options(validate)
    validate.set_defaults(handler=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    import json

    if args.config:
        from engine.cli.status import check_config

        return check_config(args.config)

    from engine.resources import bundled_rules_dir
    from engine.rule_formats import check_rules
    from engine.testing.report import print_problems, problems_json

    paths = rule_dirs(args.paths, None)
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"error: no such file or directory: {', '.join(map(str, missing))}", file=sys.stderr)
        return EXIT_INVALID
    ruleset, problems = check_rules(paths, panther_options(args))
    warnings: list = []
    if not problems:
        require_some_rules(ruleset, paths)
        from engine.testing.lint import lint_tests

        problems, warnings = lint_tests(ruleset)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "rules": len(ruleset.rules) + len(ruleset.skipped),
                    "problems": problems_json(problems),
                    "warnings": problems_json(warnings),
                },
                indent=2,
            )
        )
        return EXIT_INVALID if problems else EXIT_OK
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if problems:
        print_problems(problems, sys.stderr)
    else:
        total = len(ruleset.rules) + len(ruleset.skipped)
        report_skipped(ruleset, sys.stderr)
        note = f" ({len(ruleset.skipped)} inactive)" if ruleset.skipped else ""
        if len(paths) > 1 or bundled_rules_dir().resolve() in {p.resolve() for p in paths}:
            origin = "paths given" if args.paths else rules_origin(None, None)
            print(describe_packs(ruleset, paths, origin))
        print(f"{total} rules valid{note}, {len(ruleset.lists.lists)} named lists")
    return EXIT_INVALID if problems else EXIT_OK


def cmd_test(args: argparse.Namespace) -> int:
    from engine.rule_formats import check_rules
    from engine.testing.report import print_problems, print_results, results_json
    from engine.testing.runner import collect, run_tests

    paths = require_rule_paths(rule_dirs(args.paths, None))
    ruleset, problems = check_rules(paths, panther_options(args))
    if not problems:
        require_some_rules(ruleset, paths)
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
        print_results(results, sys.stdout, failures_only=args.failures_only)
    if not results:
        print("no tests matched" if args.k else "no tests found", file=sys.stderr)
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILED
