"""`detect run --metrics-port N`: `/metrics` in the Prometheus text format (0.0.4) and
`/healthz`, served from a daemon thread beside the live loop.

Nothing here costs the loop anything per activity: the counters are the plain ints and
`Counter`s the pipeline, the dispatcher and the runner keep anyway, read at scrape time
(a CPython dict copy is atomic under the interpreter lock; a copy that races a resize is
tried again). The outbox figures come from a read-only connection to the state file,
opened per scrape: the file is in WAL mode, so a scrape never holds up a commit.
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
from typing import TYPE_CHECKING, Any

from engine import __version__
from engine.activity import parse_timestamp

if TYPE_CHECKING:
    from engine.delivery.dispatcher import Dispatcher
    from engine.runs.live import LiveRunner, Watchdog

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SEVERITIES = ("info", "low", "medium", "high", "critical")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


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


def _snapshot(counts: Mapping[str, int]) -> dict[str, int]:
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
        body = {
            "status": "ok" if healthy else "unhealthy",
            "reason": reason,
            "last_successful_poll": self.runner.status.get("last_success_at"),
        }
        return (200 if healthy else 503), (json.dumps(body) + "\n").encode()

    # -- /metrics ----------------------------------------------------------------------

    def families(self) -> list[Family]:
        now = self.clock()
        runner = self.runner
        stats = runner.pipeline.stats
        status = runner.status
        healthy, _ = self.health()
        families = [
            Family("detect_build_info", "gauge", "The running detect's version.").add(
                1, version=__version__
            ),
            Family(
                "detect_up", "gauge", "1 while polling succeeds and the pipeline moves (/healthz)."
            ).add(1 if healthy else 0),
            Family(
                "detect_activities_read_total",
                "counter",
                "Activities read from the source and evaluated, since the process started.",
            ).add(stats.activities),
            Family(
                "detect_activities_rejected_total",
                "counter",
                "Records that were not valid activities (written to the quarantine file).",
            ).add(stats.rejected),
            _labelled(
                "detect_rule_matches_total",
                "counter",
                "Activities each rule matched.",
                "rule",
                _snapshot(stats.matches_by_rule),
                self.rule_ids,
            ),
            _labelled(
                "detect_rule_errors_total",
                "counter",
                "Failures of each rule on an activity (each one raises a rule_error alert).",
                "rule",
                _snapshot(stats.errors_by_rule),
                self.rule_ids,
            ),
            _labelled(
                "detect_alerts_total",
                "counter",
                "Alerts opened, by severity (joins into an open alert are not counted).",
                "severity",
                _snapshot(stats.alerts_by_severity),
                SEVERITIES,
            ),
        ]
        families += self._delivery()
        families += self._source(now, status)
        if self.watchdog is not None:
            families.append(
                Family(
                    "detect_pipeline_stalled",
                    "gauge",
                    "1 while the watchdog sees activities in hand and no progress.",
                ).add(1 if self.watchdog.stalled else 0)
            )
        return families

    def _source(self, now: float, status: Mapping[str, Any]) -> list[Family]:
        families = []
        success = status.get("last_success_at")
        if success:
            families.append(
                Family(
                    "detect_last_successful_poll_timestamp_seconds",
                    "gauge",
                    "When a polling pass last reached the present (Unix time).",
                ).add(parse_timestamp(success).timestamp())
            )
        checkpoint = self.runner.poller.checkpoint
        if checkpoint is not None:
            families.append(
                Family(
                    "detect_poll_lag_seconds",
                    "gauge",
                    "Seconds between now and the checkpoint's settled time (at least "
                    "source.overlap while polling keeps up).",
                ).add(round(now - checkpoint.settled_before.timestamp(), 3))
            )
        newest = status.get("newest_activity_at")
        if newest:
            families.append(
                Family(
                    "detect_source_silence_seconds",
                    "gauge",
                    "Seconds since the newest activity seen was created (event time).",
                ).add(round(now - parse_timestamp(newest).timestamp(), 3))
            )
        return families

    def _delivery(self) -> list[Family]:
        attempts: dict[str, int] = {}
        failures: dict[str, int] = {}
        if self.dispatcher is not None:
            attempts = _snapshot(self.dispatcher.attempts)
            failures = _snapshot(self.dispatcher.failures)
        families = [
            _labelled(
                "detect_delivery_attempts_total",
                "counter",
                "Delivery attempts per destination (digest messages count once).",
                "destination",
                attempts,
                self.destinations,
            ),
            _labelled(
                "detect_delivery_failures_total",
                "counter",
                "Delivery attempts that did not succeed (retried or dead-lettered).",
                "destination",
                failures,
                self.destinations,
            ),
        ]
        if self.state is None:
            return families
        from engine.delivery.outbox import read_pending_by_destination

        try:
            pending = read_pending_by_destination(self.state)
        except Exception as error:  # noqa: BLE001 - a scrape must not fail on a busy file
            log.warning("metrics: cannot read the outbox: %s", type(error).__name__)
            return families
        now = self.clock()
        depth = {name: count for name, (count, _) in pending.items()}
        oldest = {name: max(0.0, round(now - first, 3)) for name, (_, first) in pending.items()}
        families.append(
            _labelled(
                "detect_outbox_pending",
                "gauge",
                "Deliveries waiting to be sent (pending, retries included), per destination.",
                "destination",
                depth,
                self.destinations,
            )
        )
        families.append(
            _labelled(
                "detect_outbox_oldest_pending_age_seconds",
                "gauge",
                "Age of the oldest pending delivery per destination (0 when none).",
                "destination",
                oldest,
                self.destinations,
            )
        )
        return families

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
        self.view: LiveMetrics | None = None
        self._thread: threading.Thread | None = None
        super().__init__((address.strip("[]"), port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}"

    def serve(self, view: LiveMetrics) -> MetricsServer:
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
