"""The `detect` command: the parser, the map from errors to exit codes, and one module per
command group. Nothing below this package imports it.

Each command module imports the engine inside its handlers, so `detect --help` stays
instant. Exit codes (engine.cli.options): 0 success, 1 a test failed or an input could
not be read, 2 invalid rules, configuration or usage.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys

from engine.cli import (
    alerts,
    bench,
    catalog,
    init,
    noise,
    panther,
    replay,
    rules,
    run,
    simulate,
    source,
    state,
    status,
)
from engine.cli.options import EXIT_FAILED, EXIT_INVALID, EXIT_OK

# In the order `detect --help` lists them.
GROUPS = (
    init,
    run,
    replay,
    rules,
    alerts,
    source,
    status,
    state,
    panther,
    bench,
    catalog,
    simulate,
    noise,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detect",
        description="Detection rules for Anthropic Compliance API activity.",
    )
    from engine import __version__

    parser.add_argument("--version", action="version", version=f"detect {__version__}")
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error", "critical"),
        help="log level (default info; also DETECT_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="log lines as text or one JSON object a line (also DETECT_LOG_FORMAT)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from engine.errors import (
        ConfigError,
        InputError,
        RuleLoadError,
        StateCorruptError,
        StateInUseError,
        StateVersionError,
        StateWriteError,
    )

    try:
        from engine.runs import logs

        asked = logs.wanted(getattr(args, "log_level", None), getattr(args, "log_format", None))
        if asked is not None:
            logs.setup(*asked)
        return args.handler(args)
    except RuleLoadError as exc:
        from engine.testing.report import print_problems

        print_problems(exc.problems, sys.stderr)
        return EXIT_INVALID
    except (ConfigError, StateVersionError, StateCorruptError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except (InputError, StateInUseError, StateWriteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except sqlite3.DatabaseError as exc:
        # Damage SQLite found past the checks at open (a bad page read mid-run): one
        # line with the way out, as for the errors above (engine/state/schema.py).
        from engine.state.schema import is_corrupt, translate

        path = getattr(args, "state", None) or "the state database"
        print(f"error: {translate(exc, path)}", file=sys.stderr)
        return EXIT_INVALID if is_corrupt(exc) else EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
