"""`detect convert`: Panther-format rules written as native rule files."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.cli.options import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    add_panther_options,
    panther_options,
)


def register(subparsers: Any) -> None:
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
    add_panther_options(convert)
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
        return EXIT_INVALID
    return EXIT_FAILED if report.refused else EXIT_OK
