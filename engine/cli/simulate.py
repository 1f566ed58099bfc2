"""`detect simulate`: write a simulated organization feed, and its attack labels."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def cmd_simulate(args: argparse.Namespace) -> int:
    from engine.orgsim.labels import write_labels
    from engine.orgsim.simulate import Simulation, write_jsonl

    attacks = 0 if args.no_attacks else args.attacks
    began = time.perf_counter()
    simulation = Simulation(
        args.activities,
        seed=args.seed,
        orgs=args.orgs,
        people=args.people,
        attacks=attacks,
        start=args.start,
    )
    written = write_jsonl(args.out, iter(simulation))
    elapsed = time.perf_counter() - began
    rate = written / elapsed if elapsed > 0 else float("inf")
    labels = simulation.labels()
    if args.labels:
        write_labels(args.labels, labels)
    note = f", {len(labels)} attack instances" if attacks else ""
    print(
        f"wrote {written} activities ({simulation.days} days, "
        f"{len(simulation.world.people)} people{note}) to {args.out} "
        f"in {elapsed:.2f}s ({rate:,.0f}/s)",
        file=sys.stderr,
    )
    return 0


def register(commands: Any) -> None:
    sim = commands.add_parser(
        "simulate",
        help="write a realistic simulated organization feed, with labelled attacks",
    )
    sim.add_argument("--activities", type=_positive, required=True, metavar="N")
    sim.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    sim.add_argument("--orgs", type=_positive, default=3, metavar="K", help="default 3")
    sim.add_argument("--people", type=_positive, default=200, metavar="P", help="default 200")
    group = sim.add_mutually_exclusive_group()
    group.add_argument(
        "--attacks",
        type=int,
        default=0,
        metavar="N",
        help="attack instances spread over kinds and time (default 0: benign only)",
    )
    group.add_argument("--no-attacks", action="store_true", help="benign traffic only")
    sim.add_argument(
        "--start",
        type=_moment,
        default=None,
        metavar="RFC3339",
        help="time of the feed's start (default 2026-05-04T00:00:00Z, a Monday)",
    )
    sim.add_argument("--out", required=True, metavar="FILE", help=".gz compresses; - = stdout")
    sim.add_argument("--labels", metavar="FILE", help="write the attack labels (JSONL) here")
    sim.set_defaults(handler=cmd_simulate)
