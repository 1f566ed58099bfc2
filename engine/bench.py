"""`detect bench`: how fast the whole pipeline runs, next to the floor it cannot beat.

Every figure is measured in this one run, on this machine, over the same file: a bare
`json.loads` loop (what any pure-Python pipeline pays before doing anything), then the
full pipeline (read → parse/validate → reorder → evaluate → correlate → SQLite outbox,
committed per 1,000 activities as the poller commits per page). Each measurement runs in
a fresh child process, so its peak RSS is its own; machines are noisy, so each is
repeated and the median reported, and the ratio is what to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_loads(path: Path) -> dict[str, Any]:
    """The floor: read each line and `json.loads` it, nothing else."""
    loads = json.loads
    count = 0
    started = time.perf_counter()
    with path.open("rb") as stream:
        for line in stream:
            loads(line)
            count += 1
    seconds = time.perf_counter() - started
    return {"activities": count, "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def measure_pipeline(path: Path, rules: Sequence[Path], profile: bool) -> dict[str, Any]:
    """The full pipeline over the file into a fresh SQLite store; with `profile`, each
    rule's evaluation is timed too (a separate run: timing costs time)."""
    from engine.detection.loader import load_rules
    from engine.pipeline import Pipeline
    from engine.sources.files import read_source
    from engine.sources.reorder import reorder
    from engine.state.sqlite import SqliteStore

    ruleset = load_rules(list(rules))
    per_rule: dict[str, list[float]] = {}
    if profile:
        _instrument(ruleset.rules, per_rule)
    with tempfile.TemporaryDirectory(prefix="detect-bench-") as folder:
        db = Path(folder) / "state.db"
        store = SqliteStore(db)
        delivered: list[Any] = []
        # The null destination: alerts are handed over and dropped.
        pipeline = Pipeline(ruleset, store, [lambda change: delivered.clear()])
        started = time.perf_counter()
        pipeline.run(reorder(read_source(str(path))))
        pipeline.finish()
        seconds = time.perf_counter() - started
        state_rows = store._db.execute("SELECT COUNT(*) FROM state").fetchone()[0]
        store.close()
        db_bytes = sum(f.stat().st_size for f in Path(folder).iterdir())
    stats = pipeline.stats
    result: dict[str, Any] = {
        "activities": stats.activities,
        "rejected": stats.rejected,
        "matches": stats.matches,
        "alerts": stats.alerts,
        "rules": len(ruleset.rules),
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "state_rows": state_rows,
        "state_bytes": db_bytes,
    }
    if profile:
        result["per_rule"] = {
            rule_id: {"evaluations": int(v[0]), "matches": int(v[1]), "seconds": v[2]}
            for rule_id, v in per_rule.items()
        }
    return result


def _instrument(rules: list[Any], per_rule: dict[str, list[float]]) -> None:
    """Wrap each rule's `evaluate` with a timer (instance attributes shadow the method)."""
    clock = time.perf_counter
    for rule in rules:
        counters = per_rule.setdefault(rule.id, [0, 0, 0.0])
        original = rule.evaluate

        def timed(activity, event, _original=original, _counters=counters):
            started = clock()
            try:
                found = _original(activity, event)
            finally:
                _counters[2] += clock() - started
                _counters[0] += 1
            if found is not None:
                _counters[1] += 1
            return found

        rule.evaluate = timed


def _child(kind: str, path: Path, rules: Sequence[Path], profile: bool = False) -> dict[str, Any]:
    command = [sys.executable, "-m", "engine.bench", kind, str(path)]
    for folder in rules:
        command += ["--rules", str(folder)]
    if profile:
        command.append("--profile")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench child {kind} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def run_bench(
    path: Path, rules: Sequence[Path], repeat: int, out: IO[str], as_json: bool = False
) -> dict[str, Any]:
    """Measure and print; returns the figures (for tests and docs)."""
    loads_runs, pipeline_runs = [], []
    for _ in range(repeat):
        # Interleaved, so a burst of noise hits both sides alike.
        loads_runs.append(_child("loads", path, rules))
        pipeline_runs.append(_child("pipeline", path, rules))
    profiled = _child("pipeline", path, rules, profile=True)
    count = pipeline_runs[0]["activities"]
    loads_rate = count / _median(loads_runs, "seconds")
    pipeline_rate = count / _median(pipeline_runs, "seconds")
    figures: dict[str, Any] = {
        "file": str(path),
        "file_bytes": path.stat().st_size,
        "activities": count,
        "repeat": repeat,
        "json_loads_per_s": loads_rate,
        "pipeline_per_s": pipeline_rate,
        "ratio": pipeline_rate / loads_rate,
        "pipeline_peak_rss_mb": max(r["peak_rss_mb"] for r in pipeline_runs),
        "loads_peak_rss_mb": max(r["peak_rss_mb"] for r in loads_runs),
        "state_rows": pipeline_runs[0]["state_rows"],
        "state_bytes": pipeline_runs[0]["state_bytes"],
        "matches": pipeline_runs[0]["matches"],
        "alerts": pipeline_runs[0]["alerts"],
        "rules": pipeline_runs[0]["rules"],
        "per_rule": profiled["per_rule"],
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    if as_json:
        out.write(json.dumps(figures, indent=2) + "\n")
    else:
        _print(figures, out)
    return figures


def _print(f: dict[str, Any], out: IO[str]) -> None:
    mb = f["file_bytes"] / 1e6
    print(f"file      {f['file']} ({f['activities']:,} activities, {mb:,.1f} MB)", file=out)
    print(f"machine   Python {f['python']}, {f['cpus']} CPUs; medians of {f['repeat']}", file=out)
    print("", file=out)
    print(f"{'':24}{'activities/s':>14}{'peak RSS MB':>14}", file=out)
    print(
        f"{'json.loads loop':24}{f['json_loads_per_s']:>14,.0f}{f['loads_peak_rss_mb']:>14.1f}",
        file=out,
    )
    print(
        f"{'full pipeline':24}{f['pipeline_per_s']:>14,.0f}{f['pipeline_peak_rss_mb']:>14.1f}",
        file=out,
    )
    print(f"ratio     {f['ratio']:.2f} of the json.loads floor", file=out)
    print(
        f"rules     {f['rules']}; {f['matches']:,} matches, {f['alerts']:,} alerts; state "
        f"{f['state_rows']:,} rows, {f['state_bytes'] / 1e6:.1f} MB on disk",
        file=out,
    )
    print("", file=out)
    print(f"{'rule':52}{'evals':>10}{'matches':>9}{'total ms':>10}{'mean µs':>9}", file=out)
    ranked = sorted(f["per_rule"].items(), key=lambda kv: kv[1]["seconds"], reverse=True)
    for rule_id, r in ranked:
        mean = r["seconds"] / r["evaluations"] * 1e6 if r["evaluations"] else 0.0
        print(
            f"{rule_id[:51]:52}{r['evaluations']:>10,}{r['matches']:>9,}"
            f"{r['seconds'] * 1e3:>10.1f}{mean:>9.2f}",
            file=out,
        )


def _worker(argv: list[str]) -> int:
    """The child side: `python -m engine.bench loads|pipeline FILE [--rules D] [--profile]`."""
    parser = argparse.ArgumentParser(prog="engine.bench")
    parser.add_argument("kind", choices=("loads", "pipeline"))
    parser.add_argument("path", type=Path)
    parser.add_argument("--rules", action="append", type=Path, default=[])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    if args.kind == "loads":
        result = measure_loads(args.path)
    else:
        result = measure_pipeline(args.path, args.rules, args.profile)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))


def cmd_bench(args: argparse.Namespace) -> int:
    from engine.resources import bundled_rules_dir

    rules = [Path(p) for p in args.rules] if args.rules else None
    if args.panther:
        rules = [Path(args.panther)]
    if rules is None:
        local = Path("rules")
        rules = [local if local.is_dir() else bundled_rules_dir()]
    with tempfile.TemporaryDirectory(prefix="detect-bench-") as folder:
        if args.file:
            path = Path(args.file)
        else:
            from engine.feedgen import generate, write_jsonl

            path = Path(folder) / "activities.jsonl"
            started = time.perf_counter()
            write_jsonl(path, generate(args.generate, seed=args.seed))
            took = time.perf_counter() - started
            print(
                f"generated {args.generate:,} activities (seed {args.seed}) in {took:.1f}s",
                file=sys.stderr,
            )
        run_bench(path, rules, args.repeat, sys.stdout, as_json=args.json)
    return 0


def register(commands: Any) -> None:
    bench = commands.add_parser(
        "bench", help="measure the pipeline against a bare json.loads loop, per rule"
    )
    source = bench.add_mutually_exclusive_group()
    source.add_argument(
        "--generate",
        type=int,
        default=100_000,
        metavar="N",
        help="generate N realistic activities (default 100000)",
    )
    source.add_argument("--file", metavar="F", help="measure an existing JSONL file instead")
    bench.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    bench.add_argument(
        "--rules",
        action="append",
        metavar="DIR",
        help="rules directory (default ./rules or the shipped pack)",
    )
    bench.add_argument("--panther", metavar="DIR", help="a Panther-format rules directory")
    bench.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(handler=cmd_bench)
