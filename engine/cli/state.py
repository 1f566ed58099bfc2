"""`detect state check` and `detect state rebuild`: a damaged state database found and
replaced by one holding what could be read from it (engine/state/repair.py).

    detect state check [--config F] [--state FILE]
    detect state rebuild [--config F] [--state FILE]

`check` exits 0 when the file is sound, 2 when it is damaged (one line per problem and
the way out). `rebuild` keeps the old file beside the new one as
`<state>.corrupt-<time>`; it refuses while a run holds the file (exit 1).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.cli.options import EXIT_FAILED, EXIT_INVALID, EXIT_OK, load_config, state_path


def register(subparsers: Any) -> None:
    state = subparsers.add_parser("state", help="check or rebuild the state database")
    actions = state.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="is the state database sound?")
    rebuild = actions.add_parser(
        "rebuild", help="a new state database with what can be read from the old one"
    )
    for parser in (check, rebuild):
        parser.add_argument("--config", help="configuration file (default ./detect.yaml)")
        parser.add_argument("--state", metavar="FILE", help="state database (default: config's)")
    check.set_defaults(handler=cmd_check)
    rebuild.set_defaults(handler=cmd_rebuild)


def cmd_check(args: argparse.Namespace) -> int:
    from engine.state.repair import check
    from engine.state.schema import way_out

    path = state_path(args.state, load_config(args.config))
    if not path.is_file():
        print(f"error: no state database at {path}", file=sys.stderr)
        return EXIT_FAILED
    problems = check(path)
    if not problems:
        print(f"ok: {path} is sound")
        return EXIT_OK
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not any("detect state" in p for p in problems):
        print(f"error: {path} is damaged: {way_out(path)}", file=sys.stderr)
    return EXIT_INVALID


def cmd_rebuild(args: argparse.Namespace) -> int:
    from engine.state.repair import rebuild

    path = state_path(args.state, load_config(args.config))
    if not path.is_file():
        print(f"error: no state database at {path}", file=sys.stderr)
        return EXIT_FAILED
    result = rebuild(path)
    print(result.summary())
    if not result.rows.get("meta"):
        print(
            "warning: no checkpoint could be read: the next run starts from source.lookback "
            "and notifies the alerts it finds there again",
            file=sys.stderr,
        )
    return EXIT_OK
