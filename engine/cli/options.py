"""What every `detect` command shares: the exit codes, the configuration file, the rules
to load, the state and quarantine paths, and the Panther options of the commands that
load rules.

Imports of the engine happen inside the functions, so building the parser stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import IO, TYPE_CHECKING

from engine.panther import STRICT_ENV  # light: the rest of Panther support loads on use

if TYPE_CHECKING:
    from engine.config import Config
    from engine.detection.loader import RuleSet
    from engine.panther import PantherOptions

# 0 success; 1 a test failed, an input could not be read, or the state is in use;
# 2 invalid rules, configuration or usage.
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def load_config(path: str | None) -> Config | None:
    """The configuration named by --config, or ./detect.yaml when it exists."""
    from engine.config import DEFAULT_PATH
    from engine.config import load_config as load

    if path is not None:
        return load(Path(path))
    if DEFAULT_PATH.is_file():
        return load(DEFAULT_PATH)
    return None


def require_config(path: str | None, hint: str = "") -> Config:
    """The configuration, or a `ConfigError` saying how to make one."""
    from engine.errors import ConfigError

    config = load_config(path)
    if config is None:
        raise ConfigError(f"no configuration: create detect.yaml{hint} or pass --config")
    return config


BUILTIN = "builtin"  # the name of the pack shipped with the engine, in --rules and `rules:`


def rule_dirs(given: list[str] | None, config: Config | None) -> list[Path]:
    """Rules named on the command line, else the configuration's, else ./rules, else the
    pack shipped with the engine; `builtin` names the shipped pack."""
    from engine.resources import bundled_rules_dir

    return [bundled_rules_dir() if str(p) == BUILTIN else p for p in _chosen(given, config)]


def _chosen(given: list[str] | None, config: Config | None) -> list[Path]:
    if given:
        return [Path(p) for p in given]
    if config is not None:
        return list(config.rules)
    local = Path("rules")
    return [local] if local.is_dir() else [Path(BUILTIN)]


def rules_origin(given: list[str] | None, config: Config | None) -> str:
    """Why these packs: --rules, the configuration, or the default (and which one)."""
    if given:
        return "--rules"
    if config is not None:
        return "rules: in the configuration"
    if Path("rules").is_dir():
        return "default: ./rules is present (--rules builtin adds the shipped pack)"
    return "default: no ./rules, so the shipped pack"


def describe_packs(ruleset: RuleSet, paths: list[Path], origin: str) -> str:
    """One line: each pack and its rule count, the rules evaluated, and why these packs."""
    from engine.resources import bundled_rules_dir

    shipped = bundled_rules_dir().resolve()
    everything = ruleset.rules + ruleset.skipped
    parts = []
    for path in paths:
        root = path.resolve()
        count = sum(1 for r in everything if r.path.resolve().is_relative_to(root))
        name = BUILTIN if root == shipped else str(path)
        parts.append(f"{name} ({count})")
    inactive = f", {len(ruleset.skipped)} inactive" if ruleset.skipped else ""
    return f"rules: {' + '.join(parts)}: {len(ruleset.rules)} active{inactive} [{origin}]"


def load_pack(
    args: argparse.Namespace, config: Config | None, stream: IO[str] | None = None
) -> RuleSet:
    """The rules of --rules (or the configuration's, or the default), with the
    configuration's `rule_overrides` applied; the packs and counts printed in one line on
    `stream` when one is given. A `ConfigError` for an override that does not apply."""
    from engine.detection.overrides import apply_overrides
    from engine.errors import ConfigError

    given = getattr(args, "rules", None)
    paths = rule_dirs(given, config)
    ruleset = load_ruleset(paths, args)
    if config is not None and config.rule_overrides:
        wanted = {
            rule_id: change.model_dump(exclude_defaults=True)
            for rule_id, change in config.rule_overrides.items()
        }
        problems = apply_overrides(ruleset, wanted)
        if problems:
            raise ConfigError("\n".join(problems))
    if stream is not None:
        print(packs_line(args, config, ruleset), file=stream)
    return ruleset


def packs_line(args: argparse.Namespace, config: Config | None, ruleset: RuleSet) -> str:
    """The line `load_pack(..., stream)` prints, for a command that prints it later (once
    its other setup checks pass, so a setup error stays the only line)."""
    given = getattr(args, "rules", None)
    return describe_packs(ruleset, rule_dirs(given, config), rules_origin(given, config))


def require_rule_paths(paths: list[Path]) -> list[Path]:
    """`paths`, each of which exists; a `ConfigError` naming the first that does not
    (a typo in `rules:` must not become a run that evaluates nothing)."""
    from engine.errors import ConfigError

    for path in paths:
        if not path.exists():
            raise ConfigError(f"rules path {path} does not exist")
    if not paths:
        raise ConfigError("no rules path given")
    return paths


def require_some_rules(ruleset: RuleSet, paths: list[Path]) -> RuleSet:
    """`ruleset`, unless it holds no rule at all: then a `ConfigError` naming the paths
    (zero rules would poll, move the checkpoint and evaluate nothing)."""
    from engine.errors import ConfigError

    if not ruleset.rules and not ruleset.skipped:
        raise ConfigError(f"no rules found in {', '.join(map(str, paths))}")
    return ruleset


def load_ruleset(paths: list[Path], args: argparse.Namespace | None = None) -> RuleSet:
    """The rules of `paths` in every shipped format; raises `RuleLoadError`, and
    `ConfigError` for a path that does not exist or a pack without a single rule."""
    from engine.rule_formats import load_rules

    require_rule_paths(paths)
    return require_some_rules(load_rules(paths, panther_options(args)), paths)


def writable_quarantine(path: Path | None) -> Path | None:
    """`path`, once it is known the quarantine file can be written there (its folder is
    made, the file opened for appending and left as it was); a `ConfigError` in one line
    otherwise, before anything is read."""
    from engine.errors import ConfigError

    if path is None:
        return None
    existed = path.exists()
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"cannot write the quarantine file {path}: {reason}") from None
    if not existed:
        path.unlink(missing_ok=True)
    return path


def state_path(given: str | None, config: Config | None) -> Path:
    """--state, else the configuration's `state.path`, else the default."""
    from engine.config import DEFAULT_STATE

    if given:
        return Path(given)
    if config is not None:
        return config.state.path
    return DEFAULT_STATE


def quarantine_path(given: str | None, config: Config | None) -> Path:
    """--quarantine, else the configuration's `quarantine`, else the default."""
    from engine.config import DEFAULT_QUARANTINE

    if given:
        return Path(given)
    if config is not None:
        return config.quarantine
    return DEFAULT_QUARANTINE


def check_destinations(ruleset: RuleSet, config: Config) -> None:
    """Rules naming destinations the configuration lacks stop the start, loudly."""
    from engine.delivery import unknown_rule_destinations
    from engine.errors import ConfigError

    problems = unknown_rule_destinations(ruleset.rules, config.destinations)
    if problems:
        raise ConfigError("\n".join(problems))


def add_rules_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rules",
        action="append",
        metavar="DIR",
        help="rules directory or file, or `builtin` for the shipped pack (repeatable;"
        " default ./rules if present, else builtin)",
    )


def add_ordering_options(parser: argparse.ArgumentParser) -> None:
    """How a finite input is put in time order: --sort, --reorder."""
    parser.add_argument(
        "--sort",
        action="store_true",
        help="sort each input wholly by created_at first (newest-first exports)",
    )
    parser.add_argument(
        "--reorder",
        type=int,
        default=10_000,
        metavar="N",
        help="reorder buffer size in activities (default 10000)",
    )


def add_deliver_timeout(parser: argparse.ArgumentParser, flag: str) -> None:
    parser.add_argument(
        "--deliver-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help=f"with {flag}: how long to keep retrying deliveries before leaving the rest "
        "pending in the outbox (default 120)",
    )


def add_panther_options(parser: argparse.ArgumentParser) -> None:
    """--helpers and --panther-strict, for the commands that load rules."""
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
    from engine.panther import PantherOptions

    if args is None:
        return PantherOptions()
    return PantherOptions.of(getattr(args, "helpers", None), getattr(args, "panther_strict", None))


def report_skipped(ruleset: RuleSet, stream: IO[str]) -> None:
    """One line per rule that is loaded (and tested) but not evaluated, and why."""
    for rule in ruleset.skipped:
        reason = getattr(rule, "skip_reason", "")
        if reason:
            print(f"skipped: {rule.id} ({reason})", file=stream)
