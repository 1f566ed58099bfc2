"""`detect run --metrics-port N`: `/metrics` in the Prometheus text format (0.0.4) and
`/healthz`, served from a daemon thread beside the live loop.

Nothing here costs the loop anything per activity: the counters are the plain ints and
`Counter`s the pipeline, the dispatcher and the runner keep anyway, read at scrape time
(a CPython dict copy is atomic under the interpreter lock; a copy that races a resize is
tried again). The outbox figures come from a read-only connection to the state file,
opened per scrape: the file is in WAL mode, so a scrape never holds up a commit.

A worker on a shared Redis (engine/runs/workers.py) shows the same families through
`WorkerMetrics`: the pipeline counters summed over the organizations it runs and has
run, the time figures per organization it holds (label `organization`), its leases, and
the shared outbox, read from Redis (the same figures on every worker).
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engine import __version__
from engine.activity import parse_timestamp
from engine.secrets import redact

if TYPE_CHECKING:
    from engine.delivery.dispatcher import Dispatcher
    from engine.pipeline import Stats
    from engine.runs.live import LiveRunner, Watchdog
    from engine.runs.workers import Worker

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SEVERITIES = ("info", "low", "medium", "high", "critical")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_V = TypeVar("_V")


# -- the exposition format --------------------------------------------------------------


def escape_label(value: str) -> str:
    """A label value as the format writes it: backslash, double quote and line feed
    escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


@dataclass
class Family:
    """One metric: its name, type, help, and samples as (labels, value)."""

    name: str
    kind: str  # counter | gauge
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Family:
        self.samples.append((labels, value))
        return self

    def render(self) -> str:
        assert _NAME.match(self.name), self.name
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in self.samples:
            inner = ",".join(f'{key}="{escape_label(str(v))}"' for key, v in labels.items())
            lines.append(
                f"{self.name}{{{inner}}} {_number(value)}"
                if inner
                else f"{self.name} {_number(value)}"
            )
        return "\n".join(lines) + "\n"


def exposition(families: Iterable[Family]) -> str:
    return "".join(family.render() for family in families)


def _snapshot(counts: Mapping[str, _V]) -> dict[str, _V]:
    """A copy of a dict another thread may be adding keys to."""
    for _ in range(10):
        try:
            return dict(counts)
        except RuntimeError:  # changed size during the copy: take it again
            continue
    return {}


def _labelled(
    name: str,
    kind: str,
    help_text: str,
    label: str,
    counts: Mapping[str, float],
    seed: Iterable[str],
) -> Family:
    values: dict[str, float] = dict.fromkeys(seed, 0)
    values.update(counts)
    family = Family(name, kind, help_text)
    for key in sorted(values):
        family.add(values[key], **{label: key})
    return family


def _pipeline_families(
    activities: int,
    rejected: int,
    matches: Mapping[str, int],
    errors: Mapping[str, int],
    alerts: Mapping[str, int],
    rule_ids: Iterable[str],
) -> list[Family]:
    rule_ids = list(rule_ids)
    return [
        Family(
            "detect_activities_read_total",
            "counter",
            "Activities read from the source and evaluated, since the process started.",
        ).add(activities),
        Family(
            "detect_activities_rejected_total",
            "counter",
            "Records that were not valid activities (written to the quarantine file).",
        ).add(rejected),
        _labelled(
            "detect_rule_matches_total",
            "counter",
            "Activities each rule matched.",
            "rule",
            matches,
            rule_ids,
        ),
        _labelled(
            "detect_rule_errors_total",
            "counter",
            "Failures of each rule on an activity (each one raises a rule_error alert).",
            "rule",
            errors,
            rule_ids,
        ),
        _labelled(
            "detect_alerts_total",
            "counter",
            "Alerts opened, by severity (joins into an open alert are not counted).",
            "severity",
            alerts,
            SEVERITIES,
        ),
    ]


def _delivery_families(
    dispatcher: Dispatcher | None,
    destinations: list[str],
    pending: Mapping[str, tuple[int, float]] | None,
    now: float,
    shared: str = "",
) -> list[Family]:
    """Attempts and failures of this process's dispatcher; the outbox's depth and oldest
    age per destination when `pending` could be read (`shared` ends their help text)."""
    attempts: dict[str, int] = {}
    failures: dict[str, int] = {}
    if dispatcher is not None:
        attempts = _snapshot(dispatcher.attempts)
        failures = _snapshot(dispatcher.failures)
    families = [
        _labelled(
            "detect_delivery_attempts_total",
            "counter",
            "Delivery attempts per destination (digest messages count once).",
            "destination",
            attempts,
            destinations,
        ),
        _labelled(
            "detect_delivery_failures_total",
            "counter",
            "Delivery attempts that did not succeed (retried or dead-lettered).",
            "destination",
            failures,
            destinations,
        ),
    ]
    if pending is None:
        return families
    depth = {name: count for name, (count, _) in pending.items()}
    oldest = {name: max(0.0, round(now - first, 3)) for name, (_, first) in pending.items()}
    families.append(
        _labelled(
            "detect_outbox_pending",
            "gauge",
            "Deliveries waiting to be sent (pending, retries included), per destination." + shared,
            "destination",
            depth,
            destinations,
        )
    )
    families.append(
        _labelled(
            "detect_outbox_oldest_pending_age_seconds",
            "gauge",
            "Age of the oldest pending delivery per destination (0 when none)." + shared,
            "destination",
            oldest,
            destinations,
        )
    )
    return families


def _source_families(
    now: float, sources: Iterable[tuple[dict[str, str], LiveRunner]]
) -> list[Family]:
    """When polling last reached the present, the poll lag and the source silence, one
    sample per (labels, runner) that has the figure."""
    success = Family(
        "detect_last_successful_poll_timestamp_seconds",
        "gauge",
        "When a polling pass last reached the present (Unix time).",
    )
    lag = Family(
        "detect_poll_lag_seconds",
        "gauge",
        "Seconds between now and the checkpoint's settled time (at least "
        "source.overlap while polling keeps up).",
    )
    silence = Family(
        "detect_source_silence_seconds",
        "gauge",
        "Seconds since the newest activity seen was created (event time).",
    )
    for labels, runner in sources:
        status = runner.status
        if succeeded := status.get("last_success_at"):
            success.add(parse_timestamp(succeeded).timestamp(), **labels)
        checkpoint = runner.poller.checkpoint
        if checkpoint is not None:
            lag.add(round(now - checkpoint.settled_before.timestamp(), 3), **labels)
        if newest := status.get("newest_activity_at"):
            silence.add(round(now - parse_timestamp(newest).timestamp(), 3), **labels)
    return [family for family in (success, lag, silence) if family.samples]


def _stalled_family(watchdog: Any) -> Family:
    return Family(
        "detect_pipeline_stalled",
        "gauge",
        "1 while the watchdog sees activities in hand and no progress.",
    ).add(1 if watchdog.stalled else 0)


def _health_body(healthy: bool, reason: str, **facts: Any) -> tuple[int, bytes]:
    body = {"status": "ok" if healthy else "unhealthy", "reason": reason, **facts}
    return (200 if healthy else 503), (json.dumps(body) + "\n").encode()


# -- what a live run shows ---------------------------------------------------------------


class LiveMetrics:
    """The figures of one `detect run`, computed when scraped."""

    def __init__(
        self,
        runner: LiveRunner,
        *,
        watchdog: Watchdog | None = None,
        dispatcher: Dispatcher | None = None,
        state: Path | None = None,
        destinations: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runner = runner
        self.watchdog = watchdog
        self.dispatcher = dispatcher
        self.state = state
        self.destinations = sorted(destinations)
        self.clock = clock
        self.rule_ids = [rule.id for rule in runner.pipeline.ruleset.rules]

    # -- /healthz ----------------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """(healthy, why): polling succeeded in this process, is not failing now, and the
        watchdog sees no stall."""
        runner = self.runner
        if self.watchdog is not None and self.watchdog.stalled:
            return False, (
                f"the pipeline is stalled: {runner.in_hand} activities in hand and no "
                "progress (the watchdog's threshold is source.stall_alert_after)"
            )
        if runner.failure is not None:
            since = runner.status.get("failing_since", "")
            return (
                False,
                f"polling is failing{' since ' + since if since else ''}: {runner.failure}",
            )
        if runner.succeeded_at is None:
            return False, "no successful poll yet"
        return True, "polling succeeds and the pipeline moves"

    def health_body(self) -> tuple[int, bytes]:
        healthy, reason = self.health()
        return _health_body(
            healthy, reason, last_successful_poll=self.runner.status.get("last_success_at")
        )

    # -- /metrics ----------------------------------------------------------------------

    def families(self) -> list[Family]:
        now = self.clock()
        runner = self.runner
        stats = runner.pipeline.stats
        healthy, _ = self.health()
        families = [
            Family("detect_build_info", "gauge", "The running detect's version.").add(
                1, version=__version__
            ),
            Family(
                "detect_up", "gauge", "1 while polling succeeds and the pipeline moves (/healthz)."
            ).add(1 if healthy else 0),
            *_pipeline_families(
                stats.activities,
                stats.rejected,
                _snapshot(stats.matches_by_rule),
                _snapshot(stats.errors_by_rule),
                _snapshot(stats.alerts_by_severity),
                self.rule_ids,
            ),
        ]
        families += _delivery_families(self.dispatcher, self.destinations, self._pending(), now)
        families += _source_families(now, [({}, runner)])
        if self.watchdog is not None:
            families.append(_stalled_family(self.watchdog))
        return families

    def _pending(self) -> dict[str, tuple[int, float]] | None:
        if self.state is None:
            return None
        from engine.delivery.outbox import read_pending_by_destination

        try:
            return read_pending_by_destination(self.state)
        except Exception as error:  # noqa: BLE001 - a scrape must not fail on a busy file
            log.warning("metrics: cannot read the outbox: %s", type(error).__name__)
            return None

    def render(self) -> str:
        return exposition(self.families())


# -- what a worker on a shared Redis shows ------------------------------------------------

SHARED = " Read from the shared Redis outbox: the same on every worker."


class WorkerMetrics:
    """The figures of one worker (engine/runs/workers.py), computed when scraped.

    The pipeline counters are summed over the partitions the worker runs now and those
    it ran before (`Worker.retired`), so they never go down when an organization moves
    to another worker; summed over the workers they give the whole. The time figures are
    one sample per organization held (label `organization`): an organization shows on
    the worker that polls it. The dispatcher's outbox (the shared `RedisOutbox`) gives
    the depth and oldest age every worker shows alike."""

    def __init__(
        self,
        worker: Worker,
        client: Any,
        *,
        rule_ids: Iterable[str],
        watchdog: Watchdog | None = None,
        dispatcher: Dispatcher | None = None,
        destinations: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.worker = worker
        self.client = client
        self.rule_ids = list(rule_ids)
        self.watchdog = watchdog
        self.dispatcher = dispatcher
        self.outbox: Any = dispatcher.outbox if dispatcher is not None else None
        self.destinations = sorted(destinations)
        self.clock = clock
        self.host = socket.gethostname()

    # -- /healthz ----------------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """(healthy, why): Redis answers, the lease thread lives and renewed within a
        TTL, and no held organization's polling fails or stalls. A worker holding no
        organization (the others hold them all) is a healthy standby."""
        worker = self.worker
        try:
            self.client.ping()
        except Exception as error:  # noqa: BLE001 - any failure to answer is the reason
            return False, f"Redis does not answer: {redact(str(error)) or type(error).__name__}"
        if worker.stopping.is_set():
            return False, "stopping: the leases are being released"
        if not worker.lease_loop_alive:
            return False, "the lease thread has stopped: this worker's leases are not renewed"
        ttl = worker.leases.ttl
        renewed = worker.balanced_at
        if renewed is None or self.clock() - renewed > ttl:
            ago = "never" if renewed is None else f"{self.clock() - renewed:.1f}s ago"
            return False, f"the leases were last renewed {ago} (lease TTL {ttl:g}s)"
        running = _snapshot(worker.running)
        for partition in sorted(running):
            runner = running[partition].runner
            if runner.failure is not None:
                since = runner.status.get("failing_since", "")
                return False, (
                    f"{partition}: polling is failing"
                    f"{' since ' + since if since else ''}: {runner.failure}"
                )
        current = worker.current
        if self.watchdog is not None and self.watchdog.stalled and current is not None:
            return False, (
                f"{current.partition}: the pipeline is stalled: {current.runner.in_hand} "
                "activities in hand and no progress (the watchdog's threshold is "
                "source.stall_alert_after)"
            )
        held = len(worker.leases.held)
        if not held:
            return True, "a standby: the other workers hold every organization"
        return True, f"{held} organization{'' if held == 1 else 's'} held; polling succeeds"

    def health_body(self) -> tuple[int, bytes]:
        healthy, reason = self.health()
        running = _snapshot(self.worker.running)
        return _health_body(
            healthy,
            reason,
            worker_id=self.worker.leases.worker_id,
            organizations=sorted(running),
            last_successful_poll={
                partition: held.runner.status.get("last_success_at")
                for partition, held in sorted(running.items())
            },
        )

    # -- /metrics ----------------------------------------------------------------------

    def families(self) -> list[Family]:
        now = self.clock()
        worker = self.worker
        running, totals = worker.tally()
        for held in running.values():
            stats: Stats = held.runner.pipeline.stats
            totals.activities += stats.activities
            totals.rejected += stats.rejected
            totals.matches_by_rule.update(_snapshot(stats.matches_by_rule))
            totals.errors_by_rule.update(_snapshot(stats.errors_by_rule))
            totals.alerts_by_severity.update(_snapshot(stats.alerts_by_severity))
        healthy, _ = self.health()
        families = [
            Family("detect_build_info", "gauge", "The running detect's version.").add(
                1, version=__version__
            ),
            Family(
                "detect_worker_info",
                "gauge",
                "Always 1: this worker's id (as detect status shows it) and host.",
            ).add(1, worker_id=worker.leases.worker_id, host=self.host),
            Family(
                "detect_up",
                "gauge",
                "1 while /healthz says ok: Redis answers, the leases are renewed, and the "
                "organizations held poll without failing or stalling.",
            ).add(1 if healthy else 0),
            *_pipeline_families(
                totals.activities,
                totals.rejected,
                totals.matches_by_rule,
                totals.errors_by_rule,
                totals.alerts_by_severity,
                self.rule_ids,
            ),
        ]
        families += _delivery_families(
            self.dispatcher, self.destinations, self._pending(), now, SHARED
        )
        families.append(
            Family(
                "detect_leases_held",
                "gauge",
                "Organizations (partitions) whose lease this worker holds; summed over the "
                "workers, detect_organizations when every one is held.",
            ).add(len(worker.leases.held))
        )
        families.append(
            Family(
                "detect_organizations",
                "gauge",
                "Organizations (partitions) the workers share: the same on every worker.",
            ).add(len(worker.partitions))
        )
        families += _source_families(
            now, [({"organization": p}, running[p].runner) for p in sorted(running)]
        )
        if self.watchdog is not None:
            families.append(_stalled_family(self.watchdog))
        return families

    def _pending(self) -> dict[str, tuple[int, float]] | None:
        if self.outbox is None:
            return None
        try:
            return self.outbox.pending_by_destination()
        except Exception as error:  # noqa: BLE001 - a scrape must not fail on Redis
            log.warning("metrics: cannot read the outbox: %s", type(error).__name__)
            return None

    def render(self) -> str:
        return exposition(self.families())


# -- the server ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        view = self.server.view
        assert view is not None  # served only once `serve` gave it
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                status, body, kind = 200, view.render().encode(), CONTENT_TYPE
            elif path == "/healthz":
                status, body = view.health_body()
                kind = "application/json"
            else:
                status, body, kind = (
                    404,
                    b"not found: /metrics and /healthz are served\n",
                    "text/plain",
                )
        except Exception:
            log.exception("metrics: %s failed", path)
            status, body, kind = 500, b"internal error\n", "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics: " + format, *args)


class MetricsServer(ThreadingHTTPServer):
    """Bound at once (so a busy port stops the start, before anything is read); serves
    from a daemon thread once `serve` gives it the run to show."""

    daemon_threads = True

    def __init__(self, address: str, port: int) -> None:
        if ":" in address:
            self.address_family = socket.AF_INET6
        self.view: LiveMetrics | WorkerMetrics | None = None
        self._thread: threading.Thread | None = None
        super().__init__((address.strip("[]"), port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}"

    def serve(self, view: LiveMetrics | WorkerMetrics) -> MetricsServer:
        self.view = view
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.1,), name="detect-metrics", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()
