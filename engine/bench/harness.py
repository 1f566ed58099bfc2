"""The measurements `detect bench` runs, each in a fresh child process (`python -m
engine.bench KIND FILE`): the `json.loads` floor and the full pipeline, with their
memory."""

from __future__ import annotations

import json
import os
import resource
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.detection.loader import RuleSet
    from engine.state.store import StateStore


def cpu_seconds() -> float:
    """The CPU time of this process and of its children reaped so far (the pipeline's
    second process, once it has ended): on a shared machine it moves far less than the
    wall time."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_mb() -> float:
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
    cpu = cpu_seconds()
    started = time.perf_counter()
    with path.open("rb") as stream:
        for line in stream:
            loads(line)
            count += 1
    seconds = time.perf_counter() - started
    return {
        "activities": count,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds() - cpu,
        "peak_rss_mb": peak_rss_mb(),
    }


def measure_pipeline(
    path: Path, rules: Sequence[Path], profile: bool, processes: int = 1, redis: bool = False
) -> dict[str, Any]:
    """The full pipeline over the file into a fresh SQLite store, as `detect replay
    --processes N` runs it; with `profile`, each rule's evaluation is timed too (a
    separate run: timing costs time). Memory: the peak RSS (with two processes, the sum
    of both peaks), and the peak PSS of the processes together (`_MemoryWatch`).

    With `redis`, the store is the Redis whose URL is in the environment
    (`engine/bench/redis_target.py`) instead, under a fresh key prefix deleted
    afterwards; the result adds the store's round trips, and `state_rows` counts the
    keys written."""
    from engine.rule_formats import load_rules
    from engine.runs import build
    from engine.state.sqlite import read_state_rows

    ruleset = load_rules(list(rules))
    per_rule: dict[str, list[float]] = {}
    if profile:
        _instrument(ruleset.rules, per_rule)
    if redis:
        result = _on_redis(path, ruleset, per_rule, processes)
    else:
        with tempfile.TemporaryDirectory(prefix="detect-bench-") as folder:
            db = Path(folder) / "state.db"
            result = _timed(path, ruleset, build.open_store(db), per_rule, processes)
            result["state_rows"] = read_state_rows(db)
            result["state_bytes"] = sum(f.stat().st_size for f in Path(folder).iterdir())
    timings = result.pop("per_rule")
    if profile:
        result["per_rule"] = {
            rule_id: {"evaluations": int(v[0]), "matches": int(v[1]), "seconds": v[2]}
            for rule_id, v in timings.items()
        }
    return result


def _on_redis(
    path: Path, ruleset: RuleSet, per_rule: dict[str, list[float]], processes: int
) -> dict[str, Any]:
    """`measure_pipeline` on the Redis of `URL_VARIABLE`: partition `*` of a prefix of
    its own, opened as `detect replay` opens it (the server checked for safety, the
    partition's lease taken); its keys deleted afterwards, whatever happened."""
    from engine.bench.redis_target import URL_VARIABLE, drop_keys, fresh_prefix, redis_settings
    from engine.config import StateConfig
    from engine.runs import build
    from engine.state.redis_connect import open_redis

    settings = redis_settings(os.environ[URL_VARIABLE], fresh_prefix())
    # A client of its own reads the server's CPU and deletes the keys; the store's is
    # closed with it, and counts only the store's round trips.
    watcher = open_redis(settings)
    try:
        store = build.open_redis_store(StateConfig(backend="redis", redis=settings))
        server_cpu = _server_cpu(watcher)
        try:
            result = _timed(path, ruleset, store, per_rule, processes)
        finally:
            server_cpu = _server_cpu(watcher) - server_cpu
            keys = drop_keys(watcher, settings.key_prefix)
    finally:
        watcher.close()
    return {
        **result,
        "state_rows": keys,
        "state_bytes": None,
        "round_trips": store.round_trips,
        "server_cpu_seconds": server_cpu,
    }


def _server_cpu(client: Any) -> float:
    """The CPU seconds the Redis server has used since it started (`INFO cpu`): the
    state's other half, which a local server spends on the same machine. Anything else
    using the server meanwhile counts too."""
    found = client.info("cpu")
    return float(found["used_cpu_user"]) + float(found["used_cpu_sys"])


def _timed(
    path: Path,
    ruleset: RuleSet,
    store: StateStore,
    per_rule: dict[str, list[float]],
    processes: int,
) -> dict[str, Any]:
    """The timed part of `measure_pipeline`: the pipeline over the file into `store`,
    which it closes (the last commit, and SQLite's fold of its journal, count); with
    the rules' timings as `per_rule` (from the child, on two processes)."""
    from engine.pipeline import collect_less
    from engine.runs import build

    delivered: list[Any] = []
    # The null destination: alerts are handed over and dropped.
    pipeline = build.pipeline(ruleset, store, [lambda change: delivered.clear()])
    source = build.file_source([str(path)])
    collect_less()  # as `detect run` and `detect replay` do
    cpu = cpu_seconds()
    started = time.perf_counter()
    watch = _MemoryWatch() if _pss_mb(os.getpid()) is not None else None
    child_rss = 0.0
    try:
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
    finally:
        store.close()  # the last commit; SQLite folds its journal into its table
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    peak_pss = watch.stop() if watch is not None else None
    stats = pipeline.stats
    return {
        "activities": stats.activities,
        "rejected": stats.rejected,
        "matches": stats.matches,
        "alerts": stats.alerts,
        "rules": len(ruleset.rules),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "processes": processes,
        # Two processes: the sum of both peaks (shared pages counted twice).
        "peak_rss_mb": peak_rss_mb() + child_rss,
        "peak_pss_mb": peak_pss,
        "per_rule": per_rule,
    }


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
