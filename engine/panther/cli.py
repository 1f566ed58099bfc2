"""The command-line surface of Panther support: `detect convert`, and the `--helpers` and
`--panther-strict` options of the commands that load rules.

`register(subparsers)` is called once by `engine.cli.build_parser`, after the other
commands exist. Imports stay inside functions so `detect --help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import IO, TYPE_CHECKING, Any

from engine.panther import STRICT_ENV, PantherOptions

if TYPE_CHECKING:
    from engine.detection.loader import RuleSet

# The commands that load rules, and so take Panther's options.
LOADING_COMMANDS = ("test", "validate", "replay", "run")


def _add_loading_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Panther-format rules")
    group.add_argument(
        "--helpers",
        action="append",
        metavar="DIR",
        help="a global_helpers folder for Panther rules (repeatable); the nearest"
        " global_helpers/ above each rule is used without it",
    )
    group.add_argument(
        "--panther-strict",
        action="store_true",
        default=None,
        help="accept and check ExpectedTitle, ExpectedDedup, ExpectedSeverity and"
        f" ExpectedAlertContext in Panther tests (also: {STRICT_ENV}=1)",
    )


def panther_options(args: argparse.Namespace | None) -> PantherOptions:
    """The Panther options of a parsed command line (defaults without one)."""
    if args is None:
        return PantherOptions()
    return PantherOptions.of(getattr(args, "helpers", None), getattr(args, "panther_strict", None))


def report_skipped(ruleset: RuleSet, stream: IO[str]) -> None:
    """One line per Panther rule that is loaded (and tested) but not evaluated, and why."""
    for rule in ruleset.skipped:
        reason = getattr(rule, "skip_reason", "")
        if reason:
            print(f"skipped: {rule.id} ({reason})", file=stream)


def register(subparsers: Any) -> None:
    for name in LOADING_COMMANDS:
        parser = subparsers.choices.get(name)
        if parser is not None:
            _add_loading_options(parser)
    convert = subparsers.add_parser(
        "convert",
        help="write Panther-format rules as native rule files",
        description="Write each Panther rule under PATH as a native rule file in --out:"
        " simple detections become match/when YAML; Python rules keep their module, beside"
        " a native YAML and a small adapter. Tests that cannot be expressed natively (mocks,"
        " events that are not activities) are listed in a comment of the written file.",
    )
    convert.add_argument("paths", nargs="+", metavar="PATH", help="Panther rule files or folders")
    convert.add_argument("--out", required=True, metavar="DIR", help="where to write")
    convert.add_argument("--force", action="store_true", help="overwrite existing files")
    _add_loading_options(convert)
    convert.set_defaults(handler=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.panther.convert import convert_paths

    report = convert_paths(
        [Path(p) for p in args.paths], Path(args.out), panther_options(args), force=args.force
    )
    for line in report.lines:
        print(line)
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    summary = f"{report.converted} rule(s) converted"
    if report.refused:
        summary += f", {report.refused} not converted"
    print(summary, file=sys.stderr)
    if report.problems:
        return 2
    return 1 if report.refused else 0
