"""The dispatcher: routes new alerts into the outbox, then sends, retries and gives up.

Scheduling is single-threaded and non-blocking; sending is not. Each destination has at
most one request in flight, on a worker thread of its own, so a destination that hangs
until its timeout, or answers 429 for an hour, delays nobody else; and within one
destination messages leave in order, paced by a token bucket (Slack: about one a second).

Failures:
- transient (connection trouble, timeout, 408, 429, 5xx): the destination pauses — all its
  messages, since a rate limit or an outage is the receiver's, not the message's — for the
  receiver's `Retry-After` when it gives one, else an exponential backoff with jitter
  (`retry_initial_delay` doubling up to `retry_max_delay`, each delay drawn from its upper
  half). A delivery still failing `give_up_after` after it was queued becomes a dead letter.
- permanent (3xx, other 4xx): that message goes to the dead letters at once, with the
  receiver's reason (`HTTP 410: channel_is_archived`).

Every state change is committed before the next step, so a crash or restart resumes
exactly where the database says: a delivery marked sent is never sent again; one whose
attempt was in flight is retried once its lease (the attempt's longest time, connecting
plus awaiting the answer, + 10 s) has passed. That, and a receiver that takes longer than
`transport.ANSWER_TIMEOUT` (30 s) to answer a request it then accepts, are the cases in
which a receiver can see a message twice (at-least-once delivery); a webhook's repeat
carries the same `webhook-id`. An attempt's outcome is recorded only under the claim it
ran under (`claim` returns the row with the lease it set; `finish` and `reschedule` take
that lease back): a dispatcher that stalls past its lease while another claims the
delivery again records nothing and logs one line, so it never overwrites the newer
attempt nor frees its lease for a third.

Digests (engine/delivery/digest.py): an alert below a destination's `digest.below` is
routed into status `digest` instead of `pending`; once its period has closed on this
dispatcher's clock (or at a flush: `dispatch_pending(flush_digests=True)`, the end of
`deliver_pending`, the shutdown of a `start()`ed dispatcher), the waiting alerts are
rendered into one message (or numbered parts) that is queued like any delivery, with the
same retries, pauses, leases and dead letters; the alerts follow their message's outcome.

Time is injected (`clock`, `sleep`) so tests run days of retries in milliseconds.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from engine.activity import format_timestamp
from engine.config import Config, DestinationConfig
from engine.delivery.channels import Channel, build_channel, rate_of
from engine.delivery.digest import (
    DigestInfo,
    goes_to_digest,
    new_digest_id,
    part_key,
    period_start,
)
from engine.delivery.outbox import (
    DEAD,
    DIGEST,
    OPENED,
    PENDING,
    SENT,
    SILENCED,
    Delivery,
    DestinationState,
    Outbox,
    OutboxStore,
    PlannedDelivery,
    Silence,
)
from engine.delivery.routing import route
from engine.delivery.transport import REDACTOR, Outcome, attempt_seconds
from engine.delivery.webhook import message_id

log = logging.getLogger("engine.delivery")

Clock = Callable[[], float]
Sleep = Callable[[float], None]
ChannelFactory = Callable[[str, DestinationConfig], Channel]
# How long past its timeout an attempt's claim outlives a crashed process.
LEASE_MARGIN = 10.0
# A Retry-After is honoured as given, plus up to this share, so many waiting senders do
# not all come back in the same instant.
RETRY_AFTER_JITTER = 0.1
# The shortest wait the scheduler allows itself, so that no state can make it spin.
MIN_PAUSE = 0.001
# How long the shutdown of a background dispatcher may spend sending open digests.
FLUSH_TIMEOUT = 10.0
# Members of unsealed digests are all routed before this (a flush takes every one).
_ALL = 1e18


@dataclass
class DispatchReport:
    routed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    silenced: int = 0
    # Left pending when the call returned (waiting for a retry, a rate limit or a deadline).
    pending: int = 0
    # Alerts put into digest messages (each digest message counts once in `sent`).
    digested: int = 0
    # Alerts still waiting for their digest period to close when the call returned.
    in_digests: int = 0

    def __str__(self) -> str:
        text = (
            f"{self.sent} sent, {self.retried} retries scheduled, {self.dead} dead letters, "
            f"{self.silenced} silenced, {self.pending} pending"
        )
        if self.digested or self.in_digests:
            text += (
                f", {self.digested} alerts put in digests, {self.in_digests} waiting for a digest"
            )
        return text


@dataclass
class _InFlight:
    future: Future[Outcome]
    delivery: Delivery
    started: float


@dataclass
class TokenBucket:
    """`rate` messages a second on average, at most `burst` back to back."""

    rate: float
    burst: int
    updated: float
    tokens: float = field(default=-1.0)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = float(self.burst)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def ready_at(self, now: float) -> float:
        self._refill(now)
        if self.tokens >= 1.0 - 1e-9:
            return now
        return now + (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0


def backoff_delay(config: DestinationConfig, failures: int, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": the n-th consecutive failure waits
    between half and all of `initial * 2**(n-1)`, capped at `retry_max_delay`."""
    initial = config.retry_initial_delay.total_seconds()
    cap = config.retry_max_delay.total_seconds()
    base = min(cap, initial * 2 ** min(max(failures, 1) - 1, 40))
    return base / 2 + rng.random() * base / 2


def human(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)


def silence_reason(silence: Silence) -> str:
    until = format_timestamp(silence.ends_at, "seconds")
    return f"silenced by {silence.silence_id} until {until}: {silence.reason}"


class Dispatcher:
    """Delivers what the outbox owes. Call `dispatch_pending()` after each commit (or
    `start()` it in the background); `close()` when done.

    `dispatch_pending(deadline=None)` routes new alerts, then sends everything due and
    keeps waiting out rate limits and retry delays until nothing is pending (every
    delivery sent, dead or silenced) — the `--once` mode. With a `deadline` (a `clock()`
    value) it returns then at the latest, leaving slow requests running for the next call.
    """

    def __init__(
        self,
        outbox: str | Path | OutboxStore,
        config: Config | Mapping[str, DestinationConfig],
        *,
        clock: Clock = time.time,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        stream: IO[str] | None = None,
        channel_factory: ChannelFactory | None = None,
    ) -> None:
        destinations = config.destinations if isinstance(config, Config) else config
        self.destinations: dict[str, DestinationConfig] = dict(destinations)
        self.clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        # A path is the SQLite state file's outbox; any other outbox (`RedisOutbox`,
        # from `open_outbox(config)`) is used as given. Either way `close()` closes it.
        self.outbox: OutboxStore = Outbox(outbox) if isinstance(outbox, (str, Path)) else outbox
        factory = channel_factory or (lambda name, cfg: build_channel(name, cfg, stream))
        self.channels: dict[str, Channel] = {}
        for name, cfg in self.destinations.items():
            if cfg.url is not None:
                REDACTOR.add_url(cfg.url.get_secret_value())
            self.channels[name] = factory(name, cfg)
        now = clock()
        self._buckets: dict[str, TokenBucket] = {}
        for name, cfg in self.destinations.items():
            rate = rate_of(cfg)
            if rate is not None:
                self._buckets[name] = TokenBucket(rate, cfg.max_burst, now)
        self._states = {name: self.outbox.destination_state(name) for name in self.channels}
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, len(self.channels)), thread_name_prefix="detect-delivery"
        )
        self._inflight: dict[str, _InFlight] = {}
        # Attempts whose outcome is recorded, and those that did not succeed, per
        # destination since this dispatcher started (the metrics endpoint reads them).
        self.attempts: dict[str, int] = dict.fromkeys(self.channels, 0)
        self.failures: dict[str, int] = dict.fromkeys(self.channels, 0)
        self._lock = threading.RLock()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- public ----------------------------------------------------------------------

    def dispatch_pending(
        self, deadline: float | None = None, flush_digests: bool = False
    ) -> DispatchReport:
        """With `flush_digests`, alerts waiting for a digest are sealed and sent now,
        before their period ends. Without it, a digest goes out when its period closes
        on `clock`: waiting for that is not "pending", so a call without a deadline
        never waits for a period to end."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the dispatcher is closed")
            report = DispatchReport()
            self._enqueue(report)
            self._seal_digests(self.clock(), report, flush_digests)
            while True:
                if self._wakeup.is_set():
                    self._wakeup.clear()
                    self._enqueue(report)
                self._collect(report)
                now = self.clock()
                self._seal_digests(now, report, False)
                self._expire(now, report)
                if deadline is None or now < deadline:
                    self._start_due(now, report)
                wake_at = self._next_wake(now)
                if not self._inflight and wake_at is None:
                    break
                if deadline is not None and (now >= deadline or self._stopping.is_set()):
                    break
                if self._inflight:
                    self._wait_for_inflight(now, wake_at, deadline)
                else:
                    assert wake_at is not None
                    target = wake_at if deadline is None else min(wake_at, deadline)
                    self._pause(max(0.0, target - now))
            counts = self.outbox.counts()
            report.pending = counts.get(PENDING, 0)
            report.in_digests = counts.get(DIGEST, 0)
            return report

    def start(self, poll_interval: float = 1.0) -> None:
        """Deliver from a background thread until `close()`; `wake()` after a commit
        makes it route new alerts at once instead of at the next poll."""
        if self._thread is not None:
            return

        def serve() -> None:
            while not self._stopping.is_set():
                try:
                    self.dispatch_pending(deadline=self.clock() + poll_interval)
                except Exception as error:  # noqa: BLE001 - keep delivering; say why
                    log.error("delivery pass failed: %s", type(error).__name__)
                # A pass clears the wakeup; close() sets `_stopping` before it, so a
                # close during the pass is seen here instead of after a whole interval.
                if self._stopping.is_set():
                    break
                self._wakeup.wait(poll_interval)

        self._thread = threading.Thread(target=serve, name="detect-dispatcher", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wakeup.set()

    def close(self) -> None:
        """Stop, record the outcome of requests still in flight, release everything.
        A dispatcher that ran in the background (`detect run`) first flushes its open
        digests, for up to FLUSH_TIMEOUT: they go out early rather than wait for the
        next start. One used in passes (`--once`, a replay) leaves them to their period,
        durable in the state file; `deliver_pending` flushes on its own."""
        if self._closed:
            return
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._thread is not None and any(c.digest for c in self.destinations.values()):
                self._stopping.clear()
                try:
                    self.dispatch_pending(self.clock() + FLUSH_TIMEOUT, flush_digests=True)
                except Exception as error:  # noqa: BLE001 - the digests stay in the outbox
                    log.error("flushing digests at shutdown failed: %s", type(error).__name__)
                self._stopping.set()
            report = DispatchReport()
            if self._inflight:
                wait([i.future for i in self._inflight.values()])
                self._collect(report)
            self._executor.shutdown(wait=True)
            for channel in self.channels.values():
                channel.close()
            self.outbox.close()
            self._closed = True

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- routing ---------------------------------------------------------------------

    def _enqueue(self, report: DispatchReport) -> None:
        now = self.clock()
        while True:
            alerts = self.outbox.unrouted_alerts()
            if not alerts:
                break
            batch = []
            for alert in alerts:
                plan = route(alert, self.destinations)
                silence = None
                if plan.destinations:
                    silence = self.outbox.silence_for(
                        str(alert.get("rule_id", "")), str(alert.get("dedup_key", "")), now
                    )
                planned = []
                for name in plan.destinations:
                    if silence is not None:
                        planned.append(PlannedDelivery(name, SILENCED, silence_reason(silence)))
                        report.silenced += 1
                    elif goes_to_digest(self.destinations.get(name), alert):
                        planned.append(PlannedDelivery(name, DIGEST, notice=plan.notice))
                    else:
                        planned.append(PlannedDelivery(name, PENDING, notice=plan.notice))
                for name in plan.unknown:
                    reason = f"destination {name!r} is not defined in the configuration"
                    planned.append(PlannedDelivery(name, DEAD, reason))
                    report.dead += 1
                    log.error(
                        "alert %s (rule %s): %s", alert["alert_id"], alert.get("rule_id"), reason
                    )
                note = plan.note
                if silence is not None:
                    note += f"; {silence_reason(silence)}"
                batch.append((alert, note, planned))
            self.outbox.record_routes(batch, now)
            report.routed += len(batch)
        self._enqueue_summaries(now, report)
        report.dead += self.outbox.dead_letter_unconfigured(set(self.channels), now)

    def _enqueue_summaries(self, now: float, report: DispatchReport) -> None:
        watermark = self.outbox.watermark()
        if not watermark:
            return
        for delivery, alert in self.outbox.summaries_due(watermark):
            config = self.destinations.get(delivery.destination)
            grown = int(alert.get("event_count") or 0) > int(delivery.event_count or 0)
            plan = None
            # PagerDuty's `resolve_on_close` closes every alert, grown or not.
            if config is not None and (
                (config.summary_on_close and grown) or config.resolve_on_close
            ):
                silence = self.outbox.silence_for(
                    str(alert.get("rule_id", "")), str(alert.get("dedup_key", "")), now
                )
                if silence is not None:
                    plan = PlannedDelivery(delivery.destination, SILENCED, silence_reason(silence))
                    report.silenced += 1
                else:
                    plan = PlannedDelivery(delivery.destination, PENDING)
            self.outbox.settle_summary(
                delivery.delivery_id, delivery.alert_id, delivery.destination, plan, now
            )

    # -- digests ---------------------------------------------------------------------

    def _seal_digests(self, now: float, report: DispatchReport, flush: bool) -> None:
        """Turn the alerts of every closed period (all of them, with `flush`) into
        digest messages, queued in one transaction with the alerts they list."""
        for name, first in self.outbox.open_digests().items():
            config = self.destinations.get(name)
            channel = self.channels.get(name)
            if config is None or channel is None:
                continue  # dead-lettered as unconfigured
            if config.digest is None:
                # The configuration no longer batches for it: send them one by one.
                self.outbox.undigest(name, now)
                continue
            every = config.digest.every.total_seconds()
            boundary = period_start(now, every)
            if not flush and first >= boundary:
                continue
            members = self.outbox.digest_members(name, _ALL if flush else boundary)
            if not members:
                continue
            early = any(d.queued_at >= boundary for d, _ in members)
            info = DigestInfo(
                new_digest_id(),
                name,
                period_start(members[0][0].queued_at, every),
                now if early else boundary,
                config.digest.below,
                early,
            )
            self._seal(channel, info, members, now, report)

    def _seal(
        self,
        channel: Channel,
        info: DigestInfo,
        members: list[tuple[Delivery, dict[str, Any] | None]],
        now: float,
        report: DispatchReport,
    ) -> None:
        settled: list[tuple[int, str, str]] = []
        included: list[tuple[Delivery, dict[str, Any]]] = []
        for delivery, alert in members:
            if alert is None:
                settled.append(
                    (delivery.delivery_id, DEAD, "the alert is no longer in the state database")
                )
                continue
            # A silence set while the alert waited keeps it out, as it would a retry.
            silence = self.outbox.silence_for(
                str(alert.get("rule_id", "")), str(alert.get("dedup_key", "")), now
            )
            if silence is not None:
                settled.append((delivery.delivery_id, SILENCED, silence_reason(silence)))
                continue
            included.append((delivery, alert))
        ids = {alert["alert_id"]: d.delivery_id for d, alert in included}
        messages: list[tuple[str, str, list[int]]] = []
        if included:
            try:
                parts = channel.render_digest([alert for _, alert in included], info)
                listed = [alert_id for _, alert_ids in parts for alert_id in alert_ids]
                if sorted(listed) != sorted(ids):
                    raise ValueError("a digest must list each of its alerts exactly once")
            except Exception as error:  # noqa: BLE001 - one bad digest must not stop the queue
                reason = f"could not render the digest ({type(error).__name__})"
                log.error("digest %s to %s: %s", info.digest_id, info.destination, reason)
                settled += [(d.delivery_id, DEAD, reason) for d, _ in included]
                parts = []
            for number, (payload, alert_ids) in enumerate(parts, start=1):
                key = part_key(info.digest_id, number, len(parts))
                messages.append((key, payload, [ids[a] for a in alert_ids]))
        if not self.outbox.seal_digest(info.destination, messages, settled, now):
            log.info("digest %s to %s: sealed by another process", info.digest_id, info.destination)
            return
        report.digested += sum(len(members) for _, _, members in messages)
        report.dead += sum(1 for _, status, _ in settled if status == DEAD)
        report.silenced += sum(1 for _, status, _ in settled if status == SILENCED)
        if messages:
            log.info(
                "digest %s to %s: %d alert(s) in %d message(s)%s",
                info.digest_id,
                info.destination,
                len(included),
                len(messages),
                " (flushed before its period ended)" if info.early else "",
            )

    # -- sending ---------------------------------------------------------------------

    def _gate(self, name: str, now: float) -> float:
        """When a destination may send next, rate limit and pause considered."""
        ready = self._states[name].paused_until
        bucket = self._buckets.get(name)
        if bucket is not None:
            ready = max(ready, bucket.ready_at(now))
        return ready

    def _start_due(self, now: float, report: DispatchReport) -> None:
        for name, channel in self.channels.items():
            if name in self._inflight or self._gate(name, now) > now:
                continue
            while True:
                delivery = self.outbox.next_due(name, now)
                if delivery is None:
                    break
                if self._start(name, channel, delivery, now, report):
                    break

    def _start(
        self, name: str, channel: Channel, delivery: Delivery, now: float, report: DispatchReport
    ) -> bool:
        """Send one delivery; False when it was settled without sending (try the next)."""
        if delivery.purpose == DIGEST:
            # Rendered when it was sealed; its alerts were checked against silences then.
            if delivery.payload is None:
                return self._settle(delivery, DEAD, now, "the digest has no body", report)
            payload, count = delivery.payload, int(delivery.event_count or 0)
        else:
            alert = self.outbox.alert(delivery.alert_id)
            if alert is None:
                reason = "the alert is no longer in the state database"
                return self._settle(delivery, DEAD, now, reason, report)
            silence = self.outbox.silence_for(
                str(alert.get("rule_id", "")), str(alert.get("dedup_key", "")), now
            )
            if silence is not None:
                return self._settle(delivery, SILENCED, now, silence_reason(silence), report)
            payload = delivery.payload
            if payload is None:
                try:
                    payload = channel.render(alert, delivery.purpose, delivery.notice)
                except Exception as error:  # noqa: BLE001 - one bad alert must not stop the queue
                    reason = f"could not render the message ({type(error).__name__})"
                    log.error("alert %s to %s: %s", delivery.alert_id, name, reason)
                    return self._settle(delivery, DEAD, now, reason, report)
            count = int(alert.get("event_count") or 0)
        lease = now + attempt_seconds(channel.config.timeout.total_seconds()) + LEASE_MARGIN
        claimed = self.outbox.claim(delivery.delivery_id, now, lease, payload, count)
        if claimed is None:  # another process holds it
            return True
        bucket = self._buckets.get(name)
        if bucket is not None:
            bucket.take(now)
        msg_id = message_id(claimed.alert_id, name, claimed.purpose)
        assert claimed.payload is not None
        future = self._executor.submit(
            channel.send, claimed.payload, msg_id, int(now), claimed.purpose
        )
        self._inflight[name] = _InFlight(future, claimed, now)
        return True

    def _settle(
        self, delivery: Delivery, status: str, now: float, reason: str, report: DispatchReport
    ) -> bool:
        """Settle a due delivery without an attempt (dead or silenced before sending).
        False (try the next one) when settled; True when another process claimed it in
        the meantime, as a lost claim is: it is theirs now."""
        if not self.outbox.finish(delivery.delivery_id, status, now, reason, lease=None):
            return True
        if status == SILENCED:
            report.silenced += 1
        else:
            report.dead += 1
        return False

    def _collect(self, report: DispatchReport) -> None:
        for name, item in list(self._inflight.items()):
            if not item.future.done():
                continue
            try:
                outcome = item.future.result()
            except Exception as error:  # noqa: BLE001 - a sender bug is a transient failure
                outcome = Outcome("retry", f"internal error while sending ({type(error).__name__})")
                log.error("alert %s to %s: %s", item.delivery.alert_id, name, outcome.reason)
            # Forgotten only once recorded: if the database refuses the write (locked too
            # long, disk full), the next pass records the same outcome again.
            self._record(name, item.delivery, outcome, report)
            del self._inflight[name]
            self.attempts[name] += 1
            if outcome.kind != SENT:
                self.failures[name] += 1

    def _record(
        self, name: str, delivery: Delivery, outcome: Outcome, report: DispatchReport
    ) -> None:
        now = self.clock()
        config = self.destinations[name]
        state = self._states[name]
        if outcome.kind == SENT:
            summary = (config.summary_on_close or config.resolve_on_close) and (
                delivery.purpose == OPENED
            )
            if self._finish(name, delivery, SENT, now, "", outcome.status, summary):
                report.sent += 1
            self._set_state(name, DestinationState(state.paused_until, 0, ""))
            return
        if outcome.kind == DEAD:
            if self._finish(name, delivery, DEAD, now, outcome.reason, outcome.status):
                report.dead += 1
                log.warning(
                    "dead letter: alert %s to %s: %s", delivery.alert_id, name, outcome.reason
                )
            # The receiver answered, so the destination itself is reachable.
            self._set_state(name, DestinationState(state.paused_until, 0, ""))
            return
        failures = state.consecutive_failures + 1
        give_up_at = delivery.queued_at + config.give_up_after.total_seconds()
        if outcome.retry_after is not None:
            delay = outcome.retry_after * (1 + RETRY_AFTER_JITTER * self._rng.random())
            next_at = now + delay
        else:
            delay = backoff_delay(config, failures, self._rng)
            # One last attempt right at the limit rather than giving up early.
            next_at = min(now + delay, max(give_up_at, now))
        # The whole destination waits: a rate limit or an outage is the receiver's.
        self._set_state(name, DestinationState(next_at, failures, outcome.reason))
        if now >= give_up_at or next_at > give_up_at:
            waited = human(now - delivery.queued_at)
            reason = (
                f"gave up after {delivery.attempts} attempt(s) over {waited} "
                f"(give_up_after {human(config.give_up_after.total_seconds())}): "
                f"{outcome.reason}"
            )
            if outcome.retry_after is not None and next_at > give_up_at:
                reason += f" (the receiver asked to wait {human(outcome.retry_after)})"
            if self._finish(name, delivery, DEAD, now, reason, outcome.status):
                report.dead += 1
                log.warning("dead letter: alert %s to %s: %s", delivery.alert_id, name, reason)
            return
        assert delivery.lease_until is not None  # a claimed delivery's
        rescheduled = self.outbox.reschedule(
            delivery.delivery_id,
            next_at,
            outcome.reason,
            outcome.status,
            lease=delivery.lease_until,
        )
        if not rescheduled:
            _not_recorded(name, delivery, "retry")
            return
        report.retried += 1
        log.info(
            "alert %s to %s: %s; attempt %d failed, next at %s",
            delivery.alert_id,
            name,
            outcome.reason,
            delivery.attempts,
            format_timestamp(next_at, "seconds"),
        )

    def _finish(
        self,
        name: str,
        delivery: Delivery,
        status: str,
        now: float,
        reason: str,
        http_status: int | None,
        summary_due: bool = False,
    ) -> bool:
        """Record a claimed attempt's final outcome under its claim (the lease it set);
        False, said in one line, when the outbox refused it."""
        recorded = self.outbox.finish(
            delivery.delivery_id,
            status,
            now,
            reason,
            http_status,
            summary_due,
            lease=delivery.lease_until,
        )
        if not recorded:
            _not_recorded(name, delivery, status)
        return recorded

    def _set_state(self, name: str, state: DestinationState) -> None:
        if state != self._states[name]:
            self._states[name] = state
            self.outbox.set_destination_state(name, state)

    # -- time ------------------------------------------------------------------------

    def _grace(self, name: str) -> float:
        return attempt_seconds(self.destinations[name].timeout.total_seconds()) + LEASE_MARGIN

    def _expire(self, now: float, report: DispatchReport) -> None:
        for name, config in self.destinations.items():
            limit = config.give_up_after.total_seconds()
            why = f"gave up: not delivered within give_up_after {human(limit)}"
            failing = self._states[name].reason
            if failing:
                why += f" (the destination is failing: {failing})"
            report.dead += self.outbox.expire(name, limit, self._grace(name), now, why)

    def _next_wake(self, now: float) -> float | None:
        """The earliest moment an idle destination can make progress (send or expire),
        or None when nothing idle is pending. An open digest period is not waited for:
        every pass seals what has closed (the background loop passes each second), and
        a bounded pass (`--once`) must not sit out its deadline for a period's end."""
        soonest: float | None = None
        for name, config in self.destinations.items():
            if name in self._inflight:
                continue
            limit = config.give_up_after.total_seconds()
            times = self.outbox.queue_times(name, limit, self._grace(name))
            if times is None:
                continue
            due, expires = times
            moment = min(max(due, self._gate(name, now)), expires)
            soonest = moment if soonest is None else min(soonest, moment)
        if soonest is not None and soonest <= now:
            # Due now yet nothing started: never spin, whatever the cause.
            soonest = now + MIN_PAUSE
        return soonest

    def _pause(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        elif seconds > 0:
            self._wakeup.wait(seconds)

    def _wait_for_inflight(self, now: float, wake_at: float | None, deadline: float | None) -> None:
        """Until a request finishes, or an idle destination (or the deadline) is due."""
        futures = [i.future for i in self._inflight.values()]
        if self._sleep is None:
            targets = [t for t in (wake_at, deadline) if t is not None]
            timeout = max(0.0, min(targets) - now) if targets else None
            wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)
            return
        # An injected clock: a request takes no clock time. Wait (in real time, bounded
        # by the request's own timeout) for one to finish before the clock may move, so
        # a run under a fake clock makes the decisions a real one would.
        wait(futures, return_when=FIRST_COMPLETED)


def _not_recorded(name: str, delivery: Delivery, outcome: str) -> None:
    """The outbox refuses an attempt's outcome when the dispatcher stalled past its claim's
    lease and the delivery was claimed again (or settled) meanwhile: the newer record
    stands, and this one is only logged."""
    log.warning(
        "delivery %d (alert %s to %s) was claimed again by another worker after this one's "
        "lease ran out; its result (%s) is not recorded",
        delivery.delivery_id,
        delivery.alert_id,
        name,
        outcome,
    )


def deliver_pending(
    config: Config,
    timeout: float | None = None,
    stream: IO[str] | None = None,
    flush_digests: bool = True,
    **options: Any,
) -> DispatchReport:
    """One delivery pass over the configured outbox (`open_outbox`: the state file's, or
    Redis's) for `replay --deliver` and `detect alerts retry --send`: everything
    pending, or what `timeout` seconds allow. Open digests are flushed (sent before their
    period ends) unless `flush_digests=False`: a replay has no later pass to send them in."""
    from engine.delivery.backend import open_outbox

    with Dispatcher(open_outbox(config), config, stream=stream, **options) as dispatcher:
        deadline = None if timeout is None else dispatcher.clock() + timeout
        return dispatcher.dispatch_pending(deadline, flush_digests=flush_digests)
