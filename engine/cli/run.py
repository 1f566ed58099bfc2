"""`detect run`: poll, evaluate, commit and deliver until stopped (`--once`: until caught
up); `--demo`: the sample feed through a local mock API, no credentials."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cli.options import (
    EXIT_OK,
    add_deliver_timeout,
    add_panther_options,
    check_destinations,
    load_pack,
    packs_line,
    require_config,
    writable_quarantine,
)

if TYPE_CHECKING:
    from engine.config import Config
    from engine.runs.metrics import MetricsServer


def register(commands: Any) -> None:
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
    add_deliver_timeout(run, "--once")
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="serve /metrics (Prometheus text format) and /healthz on this port "
        "(0: any free port, logged)",
    )
    run.add_argument(
        "--metrics-address",
        metavar="ADDRESS",
        help="the address the metrics port listens on (default 127.0.0.1)",
    )
    add_panther_options(run)
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from engine.pipeline import collect_less
    from engine.resources import demo_feed_path
    from engine.runs.replay import summary

    if not args.demo:
        from engine.config import require_secrets
        from engine.runs.live import run_from_config

        config = require_config(args.config, " (see docs/ingestion.md)")
        ruleset = load_pack(args, config)
        check_destinations(ruleset, config)
        writable_quarantine(config.quarantine)
        require_secrets(config, "source", "destinations")  # every one missing, at once
        metrics = open_metrics(args, config)
        # The first line says what will be evaluated, once every setup check has passed
        # (the last ones, the state file and the API client, inside the run).
        banner = packs_line(args, config, ruleset)
        if config.state.backend != "sqlite":
            print(banner, file=sys.stderr)
        collect_less()
        try:
            return run_from_config(
                config,
                ruleset,
                once=args.once,
                deliver_timeout=args.deliver_timeout,
                metrics=metrics,
                banner=banner,
            )
        finally:
            if metrics is not None:
                metrics.close()
    from engine.errors import ConfigError
    from engine.runs.live import demo

    if args.metrics_port is not None or args.metrics_address:
        raise ConfigError("--metrics-port serves a live run, not --demo")
    ruleset = load_pack(args, None)
    print(packs_line(args, None, ruleset), file=sys.stderr)
    feed = Path(args.events) if args.events else demo_feed_path()
    print(
        f"demo: serving {feed} on a local mock Compliance API, polling it through "
        f"{len(ruleset.rules)} rules",
        file=sys.stderr,
    )
    if feed.is_file():
        from engine.tools.mock_api import load_feed

        activities = load_feed(feed)
    else:
        from engine.feedgen import generate

        activities = list(generate(400, seed=7))
    stats = demo(activities, ruleset)
    print(summary(stats, len(ruleset.rules)))
    return EXIT_OK


def open_metrics(args: argparse.Namespace, config: Config) -> MetricsServer | None:
    """The metrics server bound to --metrics-address:--metrics-port, else to the
    configuration's `metrics:` (not yet serving), or None without a port; a `ConfigError`
    when the address cannot be listened on."""
    from engine.errors import ConfigError
    from engine.runs.metrics import MetricsServer

    port = args.metrics_port if args.metrics_port is not None else config.metrics.port
    address = args.metrics_address or config.metrics.address
    if port is None:
        if args.metrics_address:
            raise ConfigError("--metrics-address needs --metrics-port (or metrics.port)")
        return None
    if not 0 <= port <= 65535:
        raise ConfigError(f"--metrics-port {port}: a port is 0 to 65535")
    try:
        return MetricsServer(address, port)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"cannot serve metrics on {address}:{port}: {reason}") from None
