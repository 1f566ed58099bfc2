"""The `detect` command: the parser, the map from errors to exit codes, and one module per
command group. Nothing below this package imports it.

Each command module imports the engine inside its handlers, so `detect --help` stays
instant. Exit codes (engine.cli.options): 0 success, 1 a test failed or an input could
not be read, 2 invalid rules, configuration or usage.
"""

from __future__ import annotations

import argparse
import sys

from engine.cli import (
    alerts,
    bench,
    catalog,
    noise,
    panther,
    replay,
    rules,
    run,
    simulate,
    source,
    status,
)
from engine.cli.options import EXIT_FAILED, EXIT_INVALID, EXIT_OK

# In the order `detect --help` lists them.
GROUPS = (run, replay, rules, alerts, source, status, panther, bench, catalog, simulate, noise)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detect",
        description="Detection rules for Anthropic Compliance API activity.",
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
        StateInUseError,
        StateVersionError,
    )

    try:
        return args.handler(args)
    except RuleLoadError as exc:
        from engine.testing.report import print_problems

        print_problems(exc.problems, sys.stderr)
        return EXIT_INVALID
    except (ConfigError, StateVersionError) as exc:
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
