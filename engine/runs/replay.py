"""`detect replay` and `detect run --demo`: finite inputs through the pipeline.

Replays print each alert when it is final (its dedup window closed in event time, or the
input ended), so `event_count` and `last_event_at` are complete; the demo prints alerts
as they open, the way a live run notifies.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from engine.correlation.correlator import AlertChange
from engine.delivery.console import ConsoleSink
from engine.detection.loader import RuleSet
from engine.pipeline import Stats
from engine.runs import build
from engine.runs.progress import ReplayProgress
from engine.sources.files import ReadReport, Rejected, check_readable
from engine.state.store import StateStore

MAX_REPORTED_REJECTS = 20


class JsonlSink:
    """One alert JSON object per line (`detect.alert/v1`), when the alert is final."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, change: AlertChange) -> None:
        if change.change == "closed":
            line = json.dumps(change.alert.to_dict(), separators=(",", ":"), default=str)
            self.stream.write(line + "\n")


class Quarantine:
    """Rejected records: reported on stderr (the first few), all written to a JSONL file
    opened only when the first one arrives."""

    def __init__(self, path: Path | None, report: IO[str]) -> None:
        self.path = path
        self.report = report
        self.count = 0
        self._file: IO[str] | None = None

    def __call__(self, rejected: Rejected) -> None:
        self.count += 1
        if self.count <= MAX_REPORTED_REJECTS:
            print(
                f"rejected {rejected.source}:{rejected.line}: {rejected.reason}", file=self.report
            )
        if self.path is None:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            from engine.state.files import open_private  # 0600: it holds activity

            self._file = open_private(self.path, "a", encoding="utf-8")
        self._file.write(json.dumps(rejected.to_dict()) + "\n")

    def close(self) -> None:
        if self.count > MAX_REPORTED_REJECTS:
            print(f"… and {self.count - MAX_REPORTED_REJECTS} more rejected", file=self.report)
        if self._file is not None:
            self._file.close()
            print(f"{self.count} rejected record(s) written to {self.path}", file=self.report)


@dataclass
class ReplayOptions:
    format: str = "text"
    sort: bool = False
    reorder_capacity: int = 10_000
    quarantine: Path | None = Path(".detect/quarantine.jsonl")
    # 2: a child process reads and evaluates while this one correlates
    # (engine/runs/forked.py); same alerts, about half the time on two cores.
    processes: int = 1
    # With state kept for the next replay (`--state` without `--final`): suspend at the
    # end of input instead of closing every window, so a series of replays of one stream
    # gives the alerts of one replay. An alert is printed by the replay that closes it.
    keep_open: bool = False


def default_processes() -> int:
    """Two on Linux with two CPUs ours to use, else one. (Elsewhere `--processes 2` still
    forks where it can, but the child does not die with a killed parent, and macOS's
    system libraries are not safe to fork under.)"""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 2 if (cpus or 1) >= 2 else 1


def replay(
    paths: Sequence[str],
    ruleset: RuleSet,
    options: ReplayOptions,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    store: StateStore | None = None,
    progress: ReplayProgress | None = None,
) -> Stats:
    """Evaluate files (or `-`) and print their alerts; raises `InputError`, before
    anything is evaluated, when an input cannot be opened. An input that breaks half-way
    (a truncated `.gz`) is reported on `err` and in the stats' `read_errors`, and the
    replay goes on with what was read of it and with the other inputs. With `progress`,
    a status line on its terminal while the replay runs (`engine/runs/progress.py`)."""
    out = out or sys.stdout
    err = err or sys.stderr
    check_readable(paths)
    # JSON Lines out is for machines: what a rule prints goes to `err`, so that every line
    # of `out` is an alert (on two processes too: the child inherits the redirection).
    rules_print_to = err if options.format == "jsonl" else sys.stdout
    rules_warn_to = sys.stderr
    if progress is not None:  # what is written to its terminal erases its line first
        out, err, rules_print_to, rules_warn_to = map(
            progress.share, (out, err, rules_print_to, rules_warn_to)
        )
    sink = JsonlSink(out) if options.format == "jsonl" else ConsoleSink(out, on="closed")
    quarantine = Quarantine(options.quarantine, err)
    run = build.pipeline(ruleset, store, [sink], on_rejected=quarantine)
    report = ReadReport()
    source = build.file_source(
        paths, sort=options.sort, reorder_capacity=options.reorder_capacity, report=report
    )
    started = None
    if progress is not None:
        progress.watch(run)
        if options.processes > 1:  # its thread starts once the child is forked

            def started(pid: int) -> None:
                progress.reading(pid)
                progress.start()

        else:
            progress.start()
    try:
        with (
            contextlib.redirect_stdout(rules_print_to),
            contextlib.redirect_stderr(rules_warn_to),
            progress.logs_shared() if progress is not None else contextlib.nullcontext(),
        ):
            child = build.evaluate(
                run, source, options.processes, finish=lambda: report, started=started
            )
            if child is not None:  # the child read the inputs: its report
                report = child.result
            if options.keep_open:
                stats = run.suspend()
                stats.still_open = run.open_alerts()
            else:
                stats = run.finish()
    finally:
        if progress is not None:
            progress.stop()
        quarantine.close()
    stats.read_errors = list(report.errors)
    stats.duplicates = report.duplicates
    stats.backwards = report.backwards
    for error in report.errors:
        print(f"error: {error.describe()}", file=err)
    if report.backwards:
        print(
            f"warning: {report.backwards} activit{'ies' if report.backwards != 1 else 'y'} "
            f"came earlier in time than activities already evaluated, past the reorder "
            f"buffer ({options.reorder_capacity} activities): evaluated late, they may "
            f"have missed windows; replay with --sort (or a larger --reorder)",
            file=err,
        )
    return stats


def summary(stats: Stats, rules: int) -> str:
    by_severity = ", ".join(
        f"{stats.alerts_by_severity[s]} {s}"
        for s in ("critical", "high", "medium", "low", "info")
        if stats.alerts_by_severity[s]
    )
    alerts = f"{stats.alerts} alert{'s' if stats.alerts != 1 else ''}"
    if by_severity:
        alerts += f" ({by_severity})"
    parts = [
        f"{stats.activities} activities read",
        f"{stats.rejected} rejected",
        f"{rules} rules",
        f"{stats.matches} matches",
        alerts,
    ]
    if stats.rule_errors:
        parts.append(f"{stats.rule_errors} rule errors")
    if stats.duplicates:
        parts.append(f"{stats.duplicates} duplicates dropped")
    if stats.backwards:
        parts.append(f"{stats.backwards} out of order past the reorder buffer")
    if stats.read_errors:
        broken = len(stats.read_errors)
        parts.append(f"{broken} input{'s' if broken != 1 else ''} cut short")
    if stats.still_open:
        parts.append(f"{stats.still_open} alerts kept open")
    return " · ".join(parts)
