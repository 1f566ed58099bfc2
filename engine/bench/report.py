"""`detect bench`'s report: the children run, their medians, and the table printed."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from engine.bench.panther import panther_core_child
from engine.bench.redis_target import URL_VARIABLE
from engine.secrets import redact


def _child(
    kind: str,
    path: Path,
    rules: Sequence[Path],
    profile: bool = False,
    processes: int = 1,
    redis_url: str | None = None,
) -> dict[str, Any]:
    command = [sys.executable, "-m", "engine.bench", kind, str(path)]
    for folder in rules:
        command += ["--rules", str(folder)]
    if profile:
        command.append("--profile")
    if processes > 1:
        command += ["--processes", str(processes)]
    env = None
    if redis_url is not None:
        # In the environment, not on the command line, where `ps` would show a password.
        command.append("--redis")
        env = {**os.environ, URL_VARIABLE: redis_url}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"bench child {kind} failed:\n{redact(done.stderr.strip())}")
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
    redis_url: str | None = None,
) -> dict[str, Any]:
    """Measure and print; returns the figures (for tests and docs). With `panther_python`
    (not False: the rules are a Panther-format directory) the evaluator alone and, when
    that is an interpreter, panther_core's `Rule.run` are measured too, over the same
    activities (None: panther_core is not available). With `redis_url` (a server checked
    by `redis_target.check_server`), the full pipeline also runs with its state on that
    Redis, interleaved with the SQLite runs, and is compared with them."""
    loads_runs, pipeline_runs = [], []
    redis_runs: list[dict[str, Any]] = []
    panther = panther_python is not False
    eval_runs: list[dict[str, Any]] = []
    core_runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="detect-bench-panther-") as scratch:
        specs = Path(scratch) / "rules.json"
        for _ in range(repeat):
            # Interleaved, so a burst of noise hits both sides alike.
            loads_runs.append(_child("loads", path, rules))
            pipeline_runs.append(_child("pipeline", path, rules, processes=processes))
            if redis_url is not None:
                redis_runs.append(
                    _child("pipeline", path, rules, processes=processes, redis_url=redis_url)
                )
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
                        core_runs.append(panther_core_child(panther_python, path, specs))
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
        "json_loads_cpu_us": _cpu_us(loads_runs),
        "pipeline_cpu_us": _cpu_us(pipeline_runs),
        "pipelinepeak_rss_mb": max(r["peak_rss_mb"] for r in pipeline_runs),
        "pipeline_peak_pss_mb": _max_known(r["peak_pss_mb"] for r in pipeline_runs),
        "loadspeak_rss_mb": max(r["peak_rss_mb"] for r in loads_runs),
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
    if redis_url is not None:
        figures["redis"] = _redis_figures(
            redis_url, redis_runs, loads_rate, pipeline_rate, figures["pipeline_cpu_us"]
        )
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


def _cpu_us(runs: list[dict[str, Any]], key: str = "cpu_seconds") -> float:
    """Median CPU µs per activity: what a busy neighbour moves least."""
    return _median(runs, key) / max(1, runs[0]["activities"]) * 1e6


def _redis_figures(
    url: str,
    runs: list[dict[str, Any]],
    loads_rate: float,
    sqlite_rate: float,
    sqlite_cpu_us: float,
) -> dict[str, Any]:
    """The Redis runs next to the floor and to the SQLite runs of the same bench: wall
    time, and CPU time with the server's share. The server as host:port/db only: the URL
    may hold a password."""
    from engine.state.redis_connect import server_of

    rate = runs[0]["activities"] / _median(runs, "seconds")
    trips = _median(runs, "round_trips")
    cpu_us = _cpu_us(runs)
    server_cpu_us = _cpu_us(runs, "server_cpu_seconds")
    return {
        "server": server_of(url),
        "pipeline_per_s": rate,
        "ratio": rate / loads_rate,
        "ratio_to_sqlite": rate / sqlite_rate,
        "cpu_us": cpu_us,
        "server_cpu_us": server_cpu_us,
        "cpu_to_sqlite": (cpu_us + server_cpu_us) / sqlite_cpu_us,
        "round_trips": trips,
        "round_trips_per_activity": trips / runs[0]["activities"],
        "keys": runs[0]["state_rows"],
        "alerts": runs[0]["alerts"],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "peak_pss_mb": _max_known(r["peak_pss_mb"] for r in runs),
    }


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
    print(
        f"{'':24}{'activities/s':>14}{'CPU µs each':>13}{'peak RSS MB':>14}{'peak PSS MB':>14}",
        file=out,
    )
    print(
        f"{'json.loads loop':24}{f['json_loads_per_s']:>14,.0f}{f['json_loads_cpu_us']:>13.1f}"
        f"{f['loadspeak_rss_mb']:>14.1f}{'-':>14}",
        file=out,
    )
    redis = f.get("redis")
    print(
        f"{'full pipeline' if redis is None else 'full pipeline, SQLite':24}"
        f"{f['pipeline_per_s']:>14,.0f}{f['pipeline_cpu_us']:>13.1f}"
        f"{f['pipelinepeak_rss_mb']:>14.1f}{'-' if pss is None else f'{pss:.1f}':>14}",
        file=out,
    )
    if redis is not None:
        known = redis["peak_pss_mb"]
        print(
            f"{'full pipeline, Redis':24}{redis['pipeline_per_s']:>14,.0f}"
            f"{redis['cpu_us']:>13.1f}{redis['peak_rss_mb']:>14.1f}"
            f"{'-' if known is None else f'{known:.1f}':>14}",
            file=out,
        )
    print(f"ratio     {f['ratio']:.2f} of the json.loads floor", file=out)
    if redis is not None:
        _print_redis(redis, f["alerts"], out)
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


def _print_redis(r: dict[str, Any], sqlite_alerts: int, out: IO[str]) -> None:
    same = "" if r["alerts"] == sqlite_alerts else f" (DIFFER: {r['alerts']:,} alerts)"
    print(
        f"redis     {r['server']}: {r['ratio']:.2f} of the json.loads floor, "
        f"{r['ratio_to_sqlite']:.2f} of the SQLite pipeline{same}\n"
        f"          CPU: {r['cpu_us']:.1f} µs per activity here + {r['server_cpu_us']:.1f} in"
        f" the Redis server = {r['cpu_to_sqlite']:.2f} of the SQLite pipeline's\n"
        f"          {r['round_trips']:,.0f} round trips ({r['round_trips_per_activity']:.4f} per"
        f" activity), {r['keys']:,} keys; a fresh key prefix per run, deleted after it",
        file=out,
    )


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
