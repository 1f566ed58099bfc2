"""Where a replay's time goes, stage by stage, in CPU time per activity.

`detect bench` says how fast the whole pipeline is and which rule is slow; this script
says which stage is. It runs the pipeline over one JSON Lines file several times, each
run one stage longer than the last, each in a fresh process, and prints the median CPU
time per activity of each and the difference from the one before:

    read      read the lines, parse, validate, reorder
    evaluate  + the rules of each activity's type (matches dropped)
    pipeline  + the pipeline's own loop (correlation and learning switched off)
    correlate + dedup, thresholds, new values, sequences (in-memory state)
    learn     + `learn_from: all` first-seen learning
    sqlite    + the SQLite state store, committed every 1,000 activities

CPU time, not wall time: on a shared two-core machine it moves less with the neighbours'
load. The floor line is the bare `json.loads` loop of `detect bench`, in CPU time too.

Then the whole pipeline once more on two processes, as `detect replay` runs it: the CPU
time of the child (reading and evaluating) and of the parent (correlating and storing),
and the wall time, per activity. The slower side sets the pace.

    python benchmarks/pipeline_stages.py FEED.jsonl [--rules rules] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

STAGES = ("floor", "read", "evaluate", "pipeline", "correlate", "learn", "sqlite")

_CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path

stage, path, rules = sys.argv[1], sys.argv[2], sys.argv[3]
if stage == "floor":
    loads, count, started = json.loads, 0, time.process_time()
    with open(path, "rb") as stream:
        for line in stream:
            loads(line)
            count += 1
    print(json.dumps((time.process_time() - started) / count * 1e6))
    raise SystemExit

from engine.detection.evaluator import Evaluator
from engine.rule_formats import load_rules
from engine.pipeline import collect_less
from engine.runs import build
from engine.sources.files import read_source
from engine.sources.reorder import reorder

ruleset = load_rules([Path(rules)])
records = reorder(read_source(path))
if stage == "forked":
    folder = tempfile.TemporaryDirectory()
    store = build.open_store(Path(folder.name) / "s.db")
    pipeline = build.pipeline(ruleset, store, [lambda change: None])
    collect_less()
    wall, started = time.perf_counter(), time.process_time()
    child = build.evaluate(pipeline, lambda: records, 2, finish=time.process_time).result
    pipeline.finish()
    store.close()
    parent, wall = time.process_time() - started, time.perf_counter() - wall
    count = pipeline.stats.activities
    print(json.dumps([child / count * 1e6, parent / count * 1e6, wall / count * 1e6]))
    raise SystemExit
if stage in ("read", "evaluate"):
    evaluate = Evaluator(ruleset).evaluate if stage == "evaluate" else None
    collect_less()
    count, started = 0, time.process_time()
    for record in records:
        if evaluate is not None:
            evaluate(record)
        count += 1
else:
    folder = tempfile.TemporaryDirectory()
    store = build.open_store(Path(folder.name) / "s.db" if stage == "sqlite" else None)
    pipeline = build.pipeline(ruleset, store, [lambda change: None])
    if stage in ("pipeline", "correlate"):
        pipeline.evaluator.learned = lambda activity, matches: []
    if stage == "pipeline":
        pipeline.correlator.process = lambda match: []
    collect_less()
    started = time.process_time()
    pipeline.run(records)
    pipeline.finish()
    store.close()
    folder.cleanup()
    count = pipeline.stats.activities
print(json.dumps((time.process_time() - started) / count * 1e6))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("feed", help="a JSON Lines activity file")
    parser.add_argument("--rules", default="rules", help="rules directory (default ./rules)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per stage (median)")
    args = parser.parse_args()
    medians: dict[str, float] = {}
    forked: list[list[float]] = []
    for stage in (*STAGES, "forked"):
        runs = []
        for _ in range(args.repeat):
            done = subprocess.run(
                [sys.executable, "-c", _CHILD, stage, args.feed, args.rules],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            runs.append(json.loads(done.stdout))
        if stage == "forked":
            forked = runs
        else:
            medians[stage] = statistics.median(runs)
    print(f"{'stage':10} {'CPU µs/activity':>16} {'this stage':>11}")
    previous = 0.0
    for stage in STAGES:
        added = "" if stage in ("floor", "read") else f"{medians[stage] - previous:+11.2f}"
        print(f"{stage:10} {medians[stage]:16.2f} {added}")
        if stage != "floor":
            previous = medians[stage]
    total = medians["sqlite"]
    print(f"ratio      {medians['floor'] / total:.2f} of the json.loads floor (CPU time)")
    child, parent, wall = (statistics.median(run[i] for run in forked) for i in range(3))
    print(
        f"two processes: child {child:.2f}, parent {parent:.2f} µs CPU/activity; wall "
        f"{wall:.2f} µs ({medians['floor'] / wall:.2f} of the floor's CPU time)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
