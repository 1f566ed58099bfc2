"""`detect run`: poll, evaluate, commit, deliver, sleep — until stopped, or caught up with
`--once`.

One page is one transaction: the poller's batch goes through the pipeline, the poller
stages its seen ids and checkpoint, and `pipeline.commit()` writes correlation state, new
alerts (the outbox), the checkpoint and the run's counters at once. Only then do the
`after_commit` hooks run (delivery reads the outbox there), so a crash at any instant
either loses a whole uncommitted page, which is read again on restart, or nothing.

Clock and sleep are injectable: the tests drive hours of polling in milliseconds.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from engine.activity import format_timestamp, parse_timestamp
from engine.config import Config, require_secrets
from engine.correlation.correlator import AlertChange
from engine.detection.loader import RuleSet
from engine.durations import describe
from engine.pipeline import Pipeline, Stats
from engine.runs import build
from engine.runs.progress import StatusLine
from engine.runs.stopping import install_stop_handlers, restore_handlers
from engine.secrets import install_log_redaction, redact, redact_value
from engine.sources.compliance_api import ComplianceAPIError, PollingStopped
from engine.sources.health import SourceHealth
from engine.sources.poller import Batch, Poller
from engine.state.files import open_private
from engine.state.store import StateStore

if TYPE_CHECKING:
    from engine.runs.metrics import MetricsServer

log = logging.getLogger(__name__)

STATUS_KEY = "source"
Hook = Callable[[], None]


@dataclass
class CycleResult:
    """One pass: whether it reached the present, and what it read."""

    ok: bool
    activities: int = 0
    complete: bool = False
    error: ComplianceAPIError | None = None


class Progress:
    """A long catch-up made visible: a bar on a terminal, a log line every `interval`
    seconds elsewhere. Passes shorter than `threshold` of event time stay silent."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 30.0,
        threshold: timedelta = timedelta(hours=1),
        tty: bool | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.clock = clock
        self.interval = interval
        self.threshold = threshold
        self.tty = tty if tty is not None else bool(getattr(self.stream, "isatty", bool)())
        self._started: float | None = None
        self._last = 0.0
        self._activities = 0
        self._line = StatusLine(self.stream)

    def update(self, batch: Batch) -> None:
        span = batch.upper - batch.pass_from
        if span < self.threshold:
            return
        now = self.clock()
        if self._started is None:
            self._started = now
            self._last = now
        self._activities += batch.activities
        if batch.complete:
            reached, fraction = batch.upper, 1.0
        else:
            reached = batch.reached[0] if batch.reached else batch.pass_from
            fraction = min(1.0, max(0.0, (reached - batch.pass_from) / span))
        elapsed = now - self._started
        rate = f"{self._activities / elapsed:,.0f}/s" if elapsed >= 1 else "-/s"
        if self.tty:
            width = 30
            filled = int(fraction * width)
            bar = "#" * filled + "-" * (width - filled)
            self._line.draw(
                f"catching up [{bar}] {fraction:4.0%}  at {format_timestamp(reached)[:19]}Z  "
                f"{self._activities:,} activities  {rate}"
            )
            if batch.complete:
                self._line.end()
        elif batch.complete or now - self._last >= self.interval:
            self._last = now
            log.info(
                "catching up: %.0f%% (at %s, %d activities, %s)",
                fraction * 100,
                format_timestamp(reached),
                self._activities,
                rate,
            )
        if batch.complete:
            self._started = None
            self._activities = 0


class LiveRunner:
    """The `detect run` loop around one poller and one pipeline."""

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        poller: Poller,
        health: SourceHealth | None = None,
        poll_interval: timedelta = timedelta(seconds=60),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        after_commit: Iterable[Hook] = (),
        progress: Progress | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.poller = poller
        self.store: StateStore = pipeline.store
        self.health = health
        self.poll_interval = poll_interval
        self.clock = clock
        self._sleep = sleep
        # Called after every commit, in order; delivery (the outbox dispatcher) goes here.
        self.after_commit: list[Hook] = list(after_commit)
        self.progress = progress
        self._tallied = 0
        # Set by `request_stop` (signals); the client checks it before every request.
        self.stopping = stopping or threading.Event()
        # Set when a stop came between two activities of a page: the pipeline holds that
        # half page's state in memory, which must never be committed (its checkpoint was
        # not staged), so the store is left unclosed and the page is read again next time.
        self.abandoned = False
        # Activities read but not yet committed (the page in hand), for the watchdog.
        self.in_hand = 0
        # For the metrics endpoint's thread (engine/runs/metrics.py): the source status
        # of the pass in hand, when a pass last reached the present in this process, and
        # the (redacted) error of the failing pass, None once one succeeds again.
        self.status: dict[str, Any] = {}
        self.succeeded_at: float | None = None
        self.failure: str | None = None

    def request_stop(self) -> None:
        """Stop before the next activity, drop the uncommitted page, and return from `run`
        (signal-safe)."""
        self.stopping.set()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)

    def _commit(self) -> None:
        self.pipeline.commit()
        for hook in self.after_commit:
            try:
                hook()
            except Exception:
                log.exception("after-commit hook %r failed; polling goes on", hook)

    def _status(self) -> dict[str, Any]:
        value = self.store.get_meta(STATUS_KEY)
        return dict(value) if isinstance(value, dict) else {}

    # -- one pass --------------------------------------------------------------------

    def cycle(self, until: float | None = None) -> CycleResult:
        """Read from the checkpoint up to a minute ago, committing page by page. With
        `until` (this runner's clock), the pass ends at the first page boundary past it,
        incomplete (`complete` false): a worker's organizations take turns in slices, so
        one long catch-up does not keep the others it holds unread (engine/runs/workers.py)."""
        now = self._now()
        status = self._status()
        status.setdefault("first_poll_at", format_timestamp(now))
        status["last_poll_at"] = format_timestamp(now)
        self.status = status
        result = CycleResult(ok=True)
        self._tallied = self.poller.client.requests_sent
        try:
            for batch in self.poller.poll():
                self.in_hand = len(batch.records)
                for index, record in enumerate(batch.records):
                    if self.stopping.is_set():
                        self.abandoned = True
                        log.info(
                            "stopping: %d activities of the page in hand (%d evaluated) are "
                            "not committed; the next start evaluates them again",
                            len(batch.records),
                            index,
                        )
                        return result
                    self.pipeline.process(record)
                self.poller.stage(batch)
                self._count(status, batch)
                self.store.set_meta(STATUS_KEY, status)
                self._commit()
                self.in_hand = 0
                result.activities += batch.activities
                result.complete = batch.complete
                if self.progress is not None:
                    self.progress.update(batch)
                if self.stopping.is_set() and not batch.complete:
                    log.info("stopping: the pass ends at the last committed page")
                    return result
                if until is not None and not batch.complete and self.clock() >= until:
                    return result  # its slice is over; the next pass goes on from here
        except PollingStopped:
            log.info("stopping: no further request; the checkpoint is the last committed page")
            return result
        except ComplianceAPIError as error:
            self._count(status, None)
            return self._failed(status, error, now)
        finished = self._now()
        status["last_success_at"] = format_timestamp(finished)
        status.pop("failing_since", None)
        status.pop("last_error", None)
        if self.health is not None:
            newest = status.get("newest_activity_at")
            self.health.succeeded(
                finished,
                parse_timestamp(newest) if newest else None,
                parse_timestamp(status["first_poll_at"]),
            )
        self.store.set_meta(STATUS_KEY, status)
        self._commit()
        self.succeeded_at = self.clock()
        self.failure = None
        return result

    def _count(self, status: dict[str, Any], batch: Batch | None) -> None:
        """Add a page (and the requests made since the last count) to the counters."""
        sent = self.poller.client.requests_sent
        status["requests"] = status.get("requests", 0) + sent - self._tallied
        self._tallied = sent
        if batch is None:
            return
        activities = batch.activities
        status["activities"] = status.get("activities", 0) + activities
        status["rejected"] = status.get("rejected", 0) + len(batch.records) - activities
        status["duplicates"] = status.get("duplicates", 0) + batch.duplicates
        status["pages"] = status.get("pages", 0) + 1
        newest = batch.newest
        known = status.get("newest_activity_at")
        if newest is not None and (known is None or newest > parse_timestamp(known)):
            status["newest_activity_at"] = format_timestamp(newest)

    def _failed(
        self, status: dict[str, Any], error: ComplianceAPIError, now: datetime
    ) -> CycleResult:
        since_text = status.get("failing_since") or format_timestamp(now)
        status["failing_since"] = since_text
        status["last_error"] = {**redact_value(error.to_dict()), "at": format_timestamp(now)}
        self.failure = redact(str(error))
        if self.health is not None:
            # A fatal error on a source that used to work (a revoked key, a removed scope)
            # is an incident: alert at once. On a first setup the person is at the terminal.
            self.health.failed(
                now,
                parse_timestamp(since_text),
                error,
                alert_now=error.fatal and "last_success_at" in status,
            )
        self.store.set_meta(STATUS_KEY, status)
        self._commit()
        failing_for = describe(now - parse_timestamp(since_text))
        if error.fatal:
            log.error("polling stopped: %s", redact(str(error)))
        else:
            log.warning("polling failed (failing for %s): %s", failing_for, redact(str(error)))
        return CycleResult(ok=False, error=error)

    # -- the loop --------------------------------------------------------------------

    def run(self, once: bool = False) -> int:
        """0 when stopped (or, with `once`, caught up); 1 on an error polling cannot get
        past by itself (with `once`: on any failed pass)."""
        while not self.stopping.is_set():
            started = self.clock()
            result = self.cycle()
            if once:
                return 0 if result.ok else 1
            if result.error is not None and result.error.fatal:
                return 1
            wait = self.poll_interval.total_seconds() - (self.clock() - started)
            if wait > 0 and not self.stopping.is_set():
                if self._sleep is not None:
                    self._sleep(wait)
                else:
                    self.stopping.wait(wait)
        return 0


# -- the watchdog ---------------------------------------------------------------------


class Watchdog:
    """A thread that sees a stalled pipeline: activities in hand (`runner.in_hand`) and
    no progress (`pipeline.progress`, moved by every activity and every commit) for
    `after`. Then it logs an error, opens source health's `stalled` episode, and says so
    in the state file's `.pipeline` companion, which `detect status` reads (the main
    thread is the stuck one, so nothing it writes can show it). It sees only a hang that
    lets other threads run: one that holds the interpreter's lock stops this thread too."""

    def __init__(
        self,
        runner: LiveRunner,
        *,
        after: timedelta,
        path: Path | None = None,
        clock: Callable[[], float] = time.time,
        interval: float | None = None,
    ) -> None:
        self.runner = runner
        self.after = after
        self.path = path
        self.clock = clock
        self.interval = interval or max(0.05, min(after.total_seconds() / 10, 10.0))
        self._seen = -1
        self._since = clock()
        self.stalled = False
        # The source health whose `stalled` episode this watchdog opened: the one to
        # close, even when the runner now shows another's (a worker's pass in hand,
        # engine/runs/workers.py's `PassInHand`, may have moved to the next organization).
        self._stalled_health: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """One look; whether the pipeline is stalled."""
        now = self.clock()
        progress = self.runner.pipeline.progress
        pending = self.runner.in_hand
        health = self.runner.health
        if progress != self._seen or pending == 0:
            self._seen = progress
            self._since = now
            if self.stalled:
                self.stalled = False
                stalled, self._stalled_health = self._stalled_health, None
                if stalled is not None:
                    stalled.progressing(datetime.fromtimestamp(now, tz=UTC))
                else:
                    log.info("the pipeline moves again")
        elif now - self._since >= self.after.total_seconds() and not self.stalled:
            self.stalled = True
            self._stalled_health = health
            since = datetime.fromtimestamp(self._since, tz=UTC)
            if health is not None:
                health.stalled(datetime.fromtimestamp(now, tz=UTC), since, pending, self.after)
            else:
                log.error(
                    "the pipeline has made no progress since %s, %d activities pending",
                    format_timestamp(since),
                    pending,
                )
        self._write(now, pending)
        return self.stalled

    def _write(self, now: float, pending: int) -> None:
        if self.path is None:
            return
        record = {
            "pid": os.getpid(),
            "checked_at": format_timestamp(datetime.fromtimestamp(now, tz=UTC)),
            "pending": pending,
            "progress_since": format_timestamp(datetime.fromtimestamp(self._since, tz=UTC)),
            "stalled": self.stalled,
        }
        partial = self.path.with_name(self.path.name + ".tmp")
        try:
            with open_private(partial, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
            os.replace(partial, self.path)
        except OSError as error:
            log.debug("cannot write %s: %s", self.path, error)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:
                log.exception("the pipeline watchdog failed; it goes on")

    def start(self) -> Watchdog:
        self._thread = threading.Thread(target=self._loop, name="detect-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def pipeline_file(state: Path) -> Path:
    """Where the live run's watchdog says how the pipeline does (`detect status`)."""
    return state.with_name(state.name + ".pipeline")


# -- wiring ---------------------------------------------------------------------------


def build_runner(
    config: Config,
    ruleset: RuleSet,
    store: StateStore,
    *,
    sinks: Iterable[Callable[[AlertChange], None]] = (),
    on_rejected: Callable[[Any], None] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] | None = None,
    progress: Progress | None = None,
    health: bool = True,
    scope: str = "",
) -> LiveRunner:
    """Everything `detect run` needs, from the configuration (engine/runs/build.py);
    `scope`: the organization a worker correlates alone, part of its alert ids."""
    parts = build.live_source(
        config,
        ruleset,
        store,
        sinks=sinks,
        on_rejected=on_rejected,
        clock=clock,
        sleep=sleep,
        health=health,
        scope=scope,
    )
    return LiveRunner(
        pipeline=parts.pipeline,
        poller=parts.poller,
        health=parts.health,
        poll_interval=config.source.poll_interval,
        clock=clock,
        sleep=sleep,
        progress=progress,
        stopping=parts.stopping,
    )


def partition_runner(
    ruleset: RuleSet, **options: Any
) -> Callable[[Config, StateStore], LiveRunner]:
    """How a worker on Redis builds one partition's runner (`options` go to
    `build_runner`). Each organization's alert ids carry it: two organizations' alerts
    with one dedup key and opening time are two alerts in the shared outbox, not one id
    written twice (the whole feed, one partition, keeps a single process's ids)."""

    def make(partition: Config, store: StateStore) -> LiveRunner:
        scope = ",".join(partition.source.organization_ids)
        return build_runner(partition, ruleset, store, scope=scope, **options)

    return make


def configure_logging(level: int = logging.INFO) -> None:
    """Log lines on stderr, unless the embedding program configured logging already."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=level,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)-7s %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )
    install_log_redaction(root)


def run_from_config(
    config: Config,
    ruleset: RuleSet,
    *,
    once: bool,
    out: IO[str] | None = None,
    deliver_timeout: float = 120.0,
    metrics: MetricsServer | None = None,
    banner: str | None = None,
) -> int:
    """`detect run [--once]`: the live loop on the configured state store. Alerts reach
    people only through the outbox: the dispatcher (console included) is woken after each
    commit; with `--once` it gets `deliver_timeout` seconds to empty the outbox. A bound
    `metrics` server starts serving this run's figures (the caller closes it). `banner`
    goes to stderr once the last setup check (the state file, the API client) passed, so
    a setup error stays the only line of a failed start."""
    from engine.runs.replay import Quarantine, summary

    if config.state.backend == "redis":
        return run_workers(
            config,
            ruleset,
            once=once,
            out=out,
            deliver_timeout=deliver_timeout,
            metrics=metrics,
        )
    require_secrets(config, "source", "destinations")  # every one missing, at once
    configure_logging()
    out = out or sys.stdout
    quarantine = Quarantine(config.quarantine, sys.stderr)
    store = build.open_store(config.state.path)
    dispatcher = build.dispatcher(config, out)
    runner = build_runner(
        config, ruleset, store, sinks=[], on_rejected=quarantine, progress=Progress()
    )
    if banner is not None:
        print(banner, file=sys.stderr, flush=True)
    if not once:
        dispatcher.start()
        runner.after_commit.append(dispatcher.wake)
    previous = install_stop_handlers(
        runner.stopping.is_set, runner.request_stop, " (a second signal stops at once)"
    )
    watchdog = Watchdog(
        runner,
        after=config.source.stall_alert_after,
        path=pipeline_file(Path(config.state.path)) if config.state.path else None,
    ).start()
    if metrics is not None:
        from engine.runs.metrics import LiveMetrics

        view = LiveMetrics(
            runner,
            watchdog=watchdog,
            dispatcher=dispatcher,
            state=config.state.path,
            destinations=config.destinations,
        )
        url = metrics.serve(view).url
        log.info("metrics: %s/metrics and %s/healthz", url, url)
    log.info(
        "polling %s every %s (%d rules, state %s)%s",
        runner.poller.scope,
        describe(config.source.poll_interval),
        len(ruleset.rules),
        config.state.path,
        ", until caught up" if once else "",
    )
    try:
        code = runner.run(once=once)
        if once and not runner.stopping.is_set():
            report = dispatcher.dispatch_pending(deadline=dispatcher.clock() + deliver_timeout)
            log.info("delivery: %s", report)
    except BaseException:
        # Never close (= commit) the store here: that would write half a page without its
        # checkpoint. Nothing uncommitted has reached the file; a restart reads it again.
        watchdog.stop()
        restore_handlers(previous)
        dispatcher.close()
        raise
    watchdog.stop()
    restore_handlers(previous)
    dispatcher.close()
    if runner.abandoned:
        # The half-evaluated page's state is only in memory: closing the store would
        # commit it without its checkpoint. Nothing of it reached the file; the process
        # ends, and with it the store's lock.
        log.info("stopped; the checkpoint is the last committed page")
        quarantine.close()
        runner.poller.client.close()
        return code
    runner.pipeline.suspend()
    store.close()
    quarantine.close()
    runner.poller.client.close()
    print(summary(runner.pipeline.stats, len(ruleset.rules)), file=sys.stderr)
    return code


# -- workers on a shared Redis --------------------------------------------------------


def run_workers(
    config: Config,
    ruleset: RuleSet,
    *,
    once: bool,
    out: IO[str] | None = None,
    deliver_timeout: float = 120.0,
    metrics: MetricsServer | None = None,
) -> int:
    """`detect run` with `state.backend: redis`: this process is one of N workers, each
    organization polled by the holder of its lease with the `LiveRunner` above, on a
    state store confined to that organization (engine/runs/workers.py). A bound
    `metrics` server serves this worker's figures (engine/runs/metrics.py's
    `WorkerMetrics`)."""
    from engine.runs.replay import Quarantine
    from engine.runs.workers import run_worker

    require_secrets(config, "source", "destinations")  # every one missing, at once
    configure_logging()
    quarantine = Quarantine(config.quarantine, sys.stderr)

    make_runner = partition_runner(ruleset, on_rejected=quarantine)

    def watch(pass_in_hand: Any) -> Watchdog:
        # No `.pipeline` file: `detect status` on Redis shows each organization's last poll.
        return Watchdog(pass_in_hand, after=config.source.stall_alert_after).start()

    try:
        return run_worker(
            config,
            make_runner,
            once=once,
            out=out,
            deliver_timeout=deliver_timeout,
            watch=watch,
            metrics=metrics,
            rule_ids=[rule.id for rule in ruleset.rules],
        )
    finally:
        quarantine.close()


# -- the demo -------------------------------------------------------------------------

DEMO_KEY = "demo-key-not-a-secret"


def demo(activities: list[Any], ruleset: RuleSet, out: IO[str] | None = None) -> Stats:
    """`detect run --demo`: the sample activities served by the local mock API, read by
    the real poller over loopback, alerts printed as they open. Nothing is written to
    disk."""
    from engine.config import SourceConfig
    from engine.delivery.console import ConsoleSink
    from engine.runs.replay import Quarantine
    from engine.tools.mock_api import MockComplianceAPI

    out = out or sys.stdout
    with MockComplianceAPI(activities, api_key=DEMO_KEY) as mock:
        oldest = min(
            (parse_timestamp(a["created_at"]) for a in activities if "created_at" in a),
            default=datetime.now(tz=UTC),
        )
        lookback = max(timedelta(days=1), datetime.now(tz=UTC) - oldest + timedelta(days=1))
        source = SourceConfig(
            base_url=mock.url,
            api_key=DEMO_KEY,
            lookback=lookback,
            page_size=5000,
            max_requests_per_minute=600,
            max_retries=2,
        )
        config = Config(source=source)
        quarantine = Quarantine(None, sys.stderr)
        runner = build_runner(
            config,
            ruleset,
            build.open_store(None),
            sinks=[ConsoleSink(out, on="opened")],
            on_rejected=quarantine,
            health=False,
        )
        result = runner.cycle()
        runner.poller.client.close()
    if result.error is not None:
        raise result.error
    stats = runner.pipeline.finish()
    stats.rejected += mock.skipped
    return stats
