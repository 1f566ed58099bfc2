"""`detect catalog`: the rule pack's README, generated from the rule files (`--check`, run
in CI, fails when the file is stale)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.cli.options import EXIT_FAILED, EXIT_OK


def cmd_catalog(args: argparse.Namespace) -> int:
    from engine.catalog import render_catalog
    from engine.rule_formats import load_rules

    root = Path(args.path)
    text = render_catalog(load_rules([root]), root)
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    target = Path(args.out)
    current = target.read_text(encoding="utf-8") if target.is_file() else None
    if args.check:
        if current != text:
            print(f"{target} is stale: run `detect catalog {root} --out {target}`", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_OK
    if current != text:
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}", file=sys.stderr)
    return EXIT_OK


def register(commands: Any) -> None:
    catalog = commands.add_parser(
        "catalog", help="write the rule pack's README (id, severity, MITRE, types read)"
    )
    catalog.add_argument("path", nargs="?", default="rules", help="rules directory")
    catalog.add_argument("--out", metavar="FILE", help="write here (default: stdout)")
    catalog.add_argument(
        "--check",
        action="store_true",
        help="with --out: exit 1 when FILE is not what would be written",
    )
    catalog.set_defaults(handler=cmd_catalog)
