"""The child side of `detect bench`: `python -m engine.bench loads|pipeline|panther-eval
FILE [--rules D] [--profile] [--processes N] [--redis]`, each measurement in a fresh
process."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.bench.harness import measure_loads, measure_pipeline
from engine.bench.panther import measure_panther_eval


def worker(argv: list[str]) -> int:
    """The child side: `python -m engine.bench loads|pipeline|panther-eval FILE [--rules D]
    [--profile]`."""
    parser = argparse.ArgumentParser(prog="engine.bench")
    parser.add_argument("kind", choices=("loads", "pipeline", "panther-eval"))
    parser.add_argument("path", type=Path)
    parser.add_argument("--rules", action="append", type=Path, default=[])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--processes", type=int, default=1)
    # The state on the Redis of $DETECT_BENCH_REDIS_URL (engine/bench/redis_target.py).
    parser.add_argument("--redis", action="store_true")
    args = parser.parse_args(argv)
    if args.kind == "loads":
        result = measure_loads(args.path)
    elif args.kind == "panther-eval":
        result = measure_panther_eval(args.path, args.rules)
    else:
        result = measure_pipeline(
            args.path, args.rules, args.profile, args.processes, redis=args.redis
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1:]))
