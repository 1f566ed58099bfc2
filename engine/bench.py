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
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pss_mb(pid: int) -> float | None:
    """A process's proportional set size: its pages, with those it shares split between
    the processes sharing them (Linux; None elsewhere, or once it has ended)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return None


class _MemoryWatch:
    """The peak memory of the pipeline's processes together, as their proportional set
    size (PSS), sampled. Two processes' RSS figures would count twice the pages they
    share since the fork (the interpreter, the modules, the rules); one process is
    watched the same way, so the two figures compare. Memory grows while the buffers
    fill, in the first second or two, and then holds: samples come every `FIRST` seconds
    for `EARLY` seconds, then every `LATER` (reading a process's PSS costs the kernel a
    walk of its pages, and the benchmark must not measure its own watch)."""

    FIRST, EARLY, LATER = 0.02, 2.0, 0.25

    def __init__(self) -> None:
        self.pids = [os.getpid()]
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        started = time.perf_counter()
        every = self.FIRST
        while not self._stop.wait(every):
            self.sample()
            if time.perf_counter() - started > self.EARLY:
                every = self.LATER

    def sample(self) -> None:
        sizes = [_pss_mb(pid) for pid in list(self.pids)]
        self.peak_mb = max(self.peak_mb, sum(size or 0.0 for size in sizes))

    def stop(self) -> float:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sample()
        return self.peak_mb


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


def measure_pipeline(
    path: Path, rules: Sequence[Path], profile: bool, processes: int = 1
) -> dict[str, Any]:
    """The full pipeline over the file into a fresh SQLite store, as `detect replay
    --processes N` runs it; with `profile`, each rule's evaluation is timed too (a
    separate run: timing costs time). Memory: the peak RSS (with two processes, the sum
    of both peaks), and the peak PSS of the processes together (`_MemoryWatch`)."""
    from engine.pipeline import collect_less
    from engine.rule_formats import load_rules
    from engine.runs import build
    from engine.state.sqlite import read_state_rows

    ruleset = load_rules(list(rules))
    per_rule: dict[str, list[float]] = {}
    if profile:
        _instrument(ruleset.rules, per_rule)
    with tempfile.TemporaryDirectory(prefix="detect-bench-") as folder:
        db = Path(folder) / "state.db"
        store = build.open_store(db)
        delivered: list[Any] = []
        # The null destination: alerts are handed over and dropped.
        pipeline = build.pipeline(ruleset, store, [lambda change: delivered.clear()])
        source = build.file_source([str(path)])
        collect_less()  # as `detect run` and `detect replay` do
        started = time.perf_counter()
        watch = _MemoryWatch() if _pss_mb(os.getpid()) is not None else None
        child_rss = 0.0
        if processes > 1:

            def forked(pid: int) -> None:  # the watch starts after the fork, not before
                if watch is not None:
                    watch.pids.append(pid)
                    watch.start()

            report = build.evaluate(
                pipeline, source, processes, finish=lambda: per_rule, started=forked
            )
            assert report is not None
            if watch is not None:
                watch.sample()
                watch.pids[1:] = []  # reaped: its pid may be anyone's now
            per_rule = report.result  # the child evaluated, and timed, the rules
            child_rss = report.peak_rss_mb
        else:
            if watch is not None:
                watch.start()
            build.evaluate(pipeline, source)
        pipeline.finish()
        store.close()  # folds the state journal into its table
        seconds = time.perf_counter() - started
        peak_pss = watch.stop() if watch is not None else None
        state_rows = read_state_rows(db)
        db_bytes = sum(f.stat().st_size for f in Path(folder).iterdir())
    stats = pipeline.stats
    result: dict[str, Any] = {
        "activities": stats.activities,
        "rejected": stats.rejected,
        "matches": stats.matches,
        "alerts": stats.alerts,
        "rules": len(ruleset.rules),
        "seconds": seconds,
        "processes": processes,
        # Two processes: the sum of both peaks (shared pages counted twice).
        "peak_rss_mb": _peak_rss_mb() + child_rss,
        "peak_pss_mb": peak_pss,
        "state_rows": state_rows,
        "state_bytes": db_bytes,
    }
    if profile:
        result["per_rule"] = {
            rule_id: {"evaluations": int(v[0]), "matches": int(v[1]), "seconds": v[2]}
            for rule_id, v in per_rule.items()
        }
    return result


# -- Panther-format rules: our evaluator next to panther_core's Rule.run ----------------

PANTHER_CHUNK = 20_000  # activities decoded (untimed) before each timed evaluation pass


def _python_rule_spec(rule: Any) -> dict[str, Any]:
    """What engine/panther/core_bench.py needs to load the same rule with panther_core."""
    doc = rule.document
    return {
        "id": rule.rule_id,
        "path": str((rule.path.parent / doc["Filename"]).resolve()),
        "severity": str(doc["Severity"]),
        "dedup_minutes": doc.get("DedupPeriodMinutes") or 60,
        "helper_dirs": sorted({str(p.parent) for p in rule.helper_files.values()}),
    }


def measure_panther_eval(path: Path, rules: Sequence[Path]) -> dict[str, Any]:
    """The evaluator alone over decoded activities: what panther_core's `Rule.run` is
    compared with. Activities are read and validated a chunk at a time before the clock
    starts; only `Evaluator.evaluate` is timed, on each chunk, for each set of rules:

    - `all`: every active rule of the directory;
    - `python`: its Python rules alone, the rules panther_core runs too (the same set as
      `all` unless the directory has simple detections or native rules);
    - `unindexed`: those Python rules on every activity, without the type index their code
      earns them (see engine/panther/pinning.py): the per-call cost of a rule that cannot
      be pinned.
    """
    import dataclasses
    import itertools

    from engine.detection.evaluator import Evaluator
    from engine.panther.rule import PantherRule
    from engine.rule_formats import load_rules
    from engine.sources.files import Rejected, read_source

    ruleset = load_rules(list(rules))
    python = [r for r in ruleset.rules if isinstance(r, PantherRule) and r.module is not None]
    sets = {"all": ruleset.rules}
    if len(python) != len(ruleset.rules):
        sets["python"] = python
    sets["unindexed"] = [dataclasses.replace(r, types=None) for r in python]
    result: dict[str, Any] = {
        "rules": len(ruleset.rules),
        "python_rules": [_python_rule_spec(r) for r in python],
        "pinned_rules": sum(1 for r in python if r.types is not None),
        "simple_rules": sum(
            1 for r in ruleset.rules if isinstance(r, PantherRule) and r.module is None
        ),
        "native_rules": sum(1 for r in ruleset.rules if not isinstance(r, PantherRule)),
    }
    names = list(sets)
    evaluators = {
        name: Evaluator(dataclasses.replace(ruleset, rules=list(chosen)))
        for name, chosen in sets.items()
    }
    matches = {name: dict.fromkeys((r.id for r in sets[name]), 0) for name in names}
    errors = {name: dict.fromkeys((r.id for r in sets[name]), 0) for name in names}
    seconds = dict.fromkeys(names, 0.0)
    clock = time.perf_counter
    count = 0
    source = read_source(str(path))
    for turn in itertools.count():
        chunk = [r for r in itertools.islice(source, PANTHER_CHUNK) if type(r) is not Rejected]
        if not chunk:
            break
        count += len(chunk)
        shift = turn % len(names)  # each set goes first in turn
        for name in names[shift:] + names[:shift]:
            evaluate = evaluators[name].evaluate
            found_by, failed_by = matches[name], errors[name]
            started = clock()
            for activity in chunk:
                found, failed = evaluate(activity)
                if found:
                    for match in found:
                        found_by[match.rule.id] += 1
                if failed:
                    for rule, _ in failed:
                        failed_by[rule.id] += 1
            seconds[name] += clock() - started
    for name in names:
        result[name] = {
            "activities": count,
            "seconds": seconds[name],
            "rules": len(sets[name]),
            "matches": matches[name],
            "errors": errors[name],
        }
    result.setdefault("python", result["all"])
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


CORE_BENCH = Path(__file__).resolve().parent / "panther" / "core_bench.py"


def panther_interpreter(option: str | None) -> tuple[str | None, str]:
    """The interpreter that runs panther_core's side, and a note saying which (or why
    none). Raises ValueError when `--panther-python` names one that cannot import it."""
    if option:
        try:
            done = subprocess.run(
                [option, "-c", "import panther_core"], capture_output=True, check=False
            )
        except OSError as exc:
            raise ValueError(f"--panther-python {option}: cannot be run ({exc})") from exc
        if done.returncode != 0:
            raise ValueError(f"--panther-python {option}: cannot import panther_core")
        return option, f"--panther-python {option}"
    import importlib.util

    if importlib.util.find_spec("panther_core") is not None:
        return sys.executable, f"this interpreter ({sys.executable})"
    return None, (
        f"not measured: panther_core is not importable by {sys.executable}; install"
        " panther-analysis-tool in a separate venv and pass --panther-python"
        " /that/venv/bin/python"
    )


def _panther_core_child(python: str, path: Path, specs: Path) -> dict[str, Any]:
    done = subprocess.run(
        [python, str(CORE_BENCH), str(path), str(specs)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"panther_core measurement failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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


def _child(
    kind: str, path: Path, rules: Sequence[Path], profile: bool = False, processes: int = 1
) -> dict[str, Any]:
    command = [sys.executable, "-m", "engine.bench", kind, str(path)]
    for folder in rules:
        command += ["--rules", str(folder)]
    if profile:
        command.append("--profile")
    if processes > 1:
        command += ["--processes", str(processes)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench child {kind} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout)


def _max_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def run_bench(
    path: Path,
    rules: Sequence[Path],
    repeat: int,
    out: IO[str],
    as_json: bool = False,
    panther_python: str | bool | None = False,
    panther_note: str = "",
    benign: Path | None = None,
    processes: int = 1,
) -> dict[str, Any]:
    """Measure and print; returns the figures (for tests and docs). With `panther_python`
    (not False: the rules are a Panther-format directory) the evaluator alone and, when
    that is an interpreter, panther_core's `Rule.run` are measured too, over the same
    activities (None: panther_core is not available)."""
    loads_runs, pipeline_runs = [], []
    panther = panther_python is not False
    eval_runs: list[dict[str, Any]] = []
    core_runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="detect-bench-panther-") as scratch:
        specs = Path(scratch) / "rules.json"
        for _ in range(repeat):
            # Interleaved, so a burst of noise hits both sides alike.
            loads_runs.append(_child("loads", path, rules))
            pipeline_runs.append(_child("pipeline", path, rules, processes=processes))
            if panther:
                eval_runs.append(_child("panther-eval", path, rules))
                if isinstance(panther_python, str) and not eval_runs[0]["python_rules"]:
                    panther_python = None
                    panther_note = (
                        "not measured: no active Python rules (panther_core cannot run simple"
                        " detections without a Panther backend)"
                    )
                if isinstance(panther_python, str):
                    if not specs.exists():
                        specs.write_text(json.dumps(eval_runs[0]["python_rules"]))
                    try:
                        core_runs.append(_panther_core_child(panther_python, path, specs))
                    except RuntimeError as exc:
                        panther_python, panther_note, core_runs = None, f"not measured: {exc}", []
    profiled = _child("pipeline", path, rules, profile=True, processes=processes)
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
        "pipeline_peak_pss_mb": _max_known(r["peak_pss_mb"] for r in pipeline_runs),
        "loads_peak_rss_mb": max(r["peak_rss_mb"] for r in loads_runs),
        "state_rows": pipeline_runs[0]["state_rows"],
        "state_bytes": pipeline_runs[0]["state_bytes"],
        "matches": pipeline_runs[0]["matches"],
        "alerts": pipeline_runs[0]["alerts"],
        "rules": pipeline_runs[0]["rules"],
        "processes": processes,
        "per_rule": profiled["per_rule"],
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    if benign is not None:
        # Noise: what the rules raise on ordinary activity (the generator, attacks off).
        quiet = _child("pipeline", benign, rules, processes=processes)
        figures["benign_activities"] = quiet["activities"]
        figures["benign_alerts"] = quiet["alerts"]
        figures["benign_alerts_per_100k"] = quiet["alerts"] * 100_000 / quiet["activities"]
    if panther:
        figures["panther"] = _panther_figures(pipeline_rate, eval_runs, core_runs)
        figures["panther_note"] = panther_note
    if as_json:
        out.write(json.dumps(figures, indent=2) + "\n")
    else:
        _print(figures, out)
    return figures


def _rate(runs: list[dict[str, Any]], key: str | None = None) -> float:
    chosen = [r[key] for r in runs] if key else runs
    seconds = statistics.median(r["seconds"] for r in chosen)
    return chosen[0]["activities"] / seconds if seconds else float("inf")


def _panther_figures(
    pipeline_rate: float, eval_runs: list[dict[str, Any]], core_runs: list[dict[str, Any]]
) -> dict[str, Any]:
    first = eval_runs[0]
    ours_python = first["python"]
    result: dict[str, Any] = {
        "rules": first["rules"],
        "python_rules": len(first["python_rules"]),
        "simple_rules": first["simple_rules"],
        "native_rules": first["native_rules"],
        "pipeline_per_s": pipeline_rate,
        "evaluation_per_s": _rate(eval_runs, "all"),
        "evaluation_python_per_s": _rate(eval_runs, "python"),
        "evaluation_unindexed_per_s": _rate(eval_runs, "unindexed"),
        "pinned_rules": first["pinned_rules"],
        "matches_python": ours_python["matches"],
        "errors_python": ours_python["errors"],
        "panther_core_per_s": None,
    }
    if core_runs:
        core = core_runs[0]
        core_rate = _rate(core_runs)
        result.update(
            panther_core_per_s=core_rate,
            panther_core_version=core["panther_core"],
            panther_core_python=core["python"],
            panther_core_matches=core["matches"],
            panther_core_errors=core["errors"],
            panther_core_activities=core["activities"],
            ratio_evaluation=result["evaluation_python_per_s"] / core_rate,
            ratio_pipeline=pipeline_rate / core_rate,
            same_matches=core["matches"] == ours_python["matches"]
            and core["errors"] == ours_python["errors"],
        )
    return result


def _print(f: dict[str, Any], out: IO[str]) -> None:
    mb = f["file_bytes"] / 1e6
    print(f"file      {f['file']} ({f['activities']:,} activities, {mb:,.1f} MB)", file=out)
    print(f"machine   Python {f['python']}, {f['cpus']} CPUs; medians of {f['repeat']}", file=out)
    print("", file=out)
    pss = f["pipeline_peak_pss_mb"]
    print(f"{'':24}{'activities/s':>14}{'peak RSS MB':>14}{'peak PSS MB':>14}", file=out)
    print(
        f"{'json.loads loop':24}{f['json_loads_per_s']:>14,.0f}{f['loads_peak_rss_mb']:>14.1f}"
        f"{'-':>14}",
        file=out,
    )
    print(
        f"{'full pipeline':24}{f['pipeline_per_s']:>14,.0f}{f['pipeline_peak_rss_mb']:>14.1f}"
        f"{'-' if pss is None else f'{pss:.1f}':>14}",
        file=out,
    )
    print(f"ratio     {f['ratio']:.2f} of the json.loads floor", file=out)
    if f["processes"] > 1:
        print(
            f"processes {f['processes']}: one reads and evaluates, one correlates and stores"
            " (--processes 1 for one)\n"
            "          RSS: the sum of both peaks, counting the pages they share twice;"
            " PSS (sampled): once",
            file=out,
        )
    print(
        f"rules     {f['rules']}; {f['matches']:,} matches, {f['alerts']:,} alerts; state "
        f"{f['state_rows']:,} rows, {f['state_bytes'] / 1e6:.1f} MB on disk",
        file=out,
    )
    if "benign_alerts_per_100k" in f:
        print(
            f"noise     {f['benign_alerts_per_100k']:.1f} alerts per 100k benign activities "
            f"({f['benign_alerts']} over {f['benign_activities']:,}, attacks off)",
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
    if "panther" in f:
        _print_panther(f["panther"], f.get("panther_note", ""), out)


def _print_panther(p: dict[str, Any], note: str, out: IO[str]) -> None:
    import textwrap

    kinds = [f"{p['python_rules']} Python"]
    if p["simple_rules"]:
        kinds.append(f"{p['simple_rules']} simple detections")
    if p["native_rules"]:
        kinds.append(f"{p['native_rules']} native")
    python_rules = f"{p['python_rules']} Python rules"
    core = p["panther_core_per_s"]

    def say(label: str, text: str) -> None:
        wrapped = textwrap.wrap(text, 86, break_on_hyphens=False) or [""]
        print(f"{label:14}{wrapped[0]}", file=out)
        for line in wrapped[1:]:
            print(f"{'':14}{line}", file=out)

    def row(label: str, rate: float | None, versus: bool = True) -> None:
        shown = f"{rate:>14,.0f}" if rate is not None else f"{'-':>14}"
        ratio = f"{rate / core:>16.1f}x" if versus and core and rate is not None else ""
        print(f"{label:44}{shown}{ratio}", file=out)

    print("", file=out)
    say("Panther", f"{p['rules']} active rules ({', '.join(kinds)})")
    say(
        "type index",
        f"{p['pinned_rules']} of {p['python_rules']} Python rules pinned to activity types by"
        " their first statement (engine/panther/pinning.py)",
    )
    print(f"{'':44}{'activities/s':>14}{'vs panther_core':>17}", file=out)
    row(f"detect, full pipeline ({p['rules']} rules)", p["pipeline_per_s"])
    if p["rules"] != p["python_rules"]:
        row(f"detect, evaluation only ({p['rules']} rules)", p["evaluation_per_s"])
    if p["python_rules"]:
        row(f"detect, evaluation only ({python_rules})", p["evaluation_python_per_s"])
        row("  the same, without the type index", p["evaluation_unindexed_per_s"])
        row(f"panther_core Rule.run ({python_rules})", core, versus=False)
    if core is None:
        say("panther_core", note)
    else:
        say(
            "panther_core",
            f"{p['panther_core_version']} on Python {p['panther_core_python']} ({note}):"
            " Rule.run in batch mode, events already decoded, p_ fields added",
        )
        ours = sum(p["matches_python"].values())
        if p["same_matches"]:
            say("matches", f"the same per rule on both sides ({ours:,})")
        else:
            say(
                "matches",
                f"DIFFER: detect {p['matches_python']} (errors {p['errors_python']}),"
                f" panther_core {p['panther_core_matches']} (errors"
                f" {p['panther_core_errors']})",
            )
    say(
        "evaluation",
        "the evaluator alone over activities already read and validated (what Rule.run"
        " does); the full pipeline also reads, parses and validates the JSON, correlates"
        " and writes state.",
    )


def _worker(argv: list[str]) -> int:
    """The child side: `python -m engine.bench loads|pipeline|panther-eval FILE [--rules D]
    [--profile]`."""
    parser = argparse.ArgumentParser(prog="engine.bench")
    parser.add_argument("kind", choices=("loads", "pipeline", "panther-eval"))
    parser.add_argument("path", type=Path)
    parser.add_argument("--rules", action="append", type=Path, default=[])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args(argv)
    if args.kind == "loads":
        result = measure_loads(args.path)
    elif args.kind == "panther-eval":
        result = measure_panther_eval(args.path, args.rules)
    else:
        result = measure_pipeline(args.path, args.rules, args.profile, args.processes)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
