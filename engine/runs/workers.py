"""`detect run` on a shared Redis: this process is one of N workers.

Every organization of `source.organization_ids` (or `*`, the key's whole feed, when the
list is empty) is a partition. A worker holds leases on its fair share of them
(engine/runs/leases.py) and runs, for each, the same loop as a single `detect run`: a
poller filtered to that organization, a pipeline, and a state store confined to that
partition and fenced by the lease (`RedisStore(partition=org, lease=(key, token))`).

- **One thread evaluates.** Rules with code are timed by a `SIGALRM` timer, which only
  the main thread can arm (engine/detection/budget.py), so the held partitions take
  turns on the main thread: each pass reads one organization up to the present, or for
  `PASS_SLICE` seconds when it has more to catch up (to the next page boundary), then
  the next whose poll is due goes. Named lists are re-attached to the partition's store
  before its pass, so what one organization's rules learned never leaks into another's.
- **A background thread keeps the leases**: every TTL/3 it renews them, beats the
  registry, and moves toward the fair share. A lease it fails to renew is lost: the
  partition's pass is stopped before its next activity and its pipeline dropped unsaved
  (its memory is stale; the new holder resumes from the checkpoint). A partition over the
  share is handed back when its pass (or slice) ends, saved, then released.
- **Fencing**: when the store's fence refuses a commit (`LeaseLost`), the pipeline is
  dropped the same way. Nothing of that page was written; the new holder reads it again.
- **A clean stop** (SIGTERM, SIGINT) saves every partition that is between two pages,
  drops the page in hand, and releases every lease, so another worker takes over at once
  instead of after the TTL.

Correlation does not cross organizations in this mode: each partition's dedup windows,
thresholds and sequences see only its organization.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol

from engine.config import Config
from engine.durations import describe
from engine.errors import LeaseLost
from engine.pipeline import Stats
from engine.runs.leases import Leases
from engine.runs.stopping import install_stop_handlers, restore_handlers
from engine.state.store import StateStore

if TYPE_CHECKING:
    from engine.delivery.dispatcher import Dispatcher
    from engine.runs.metrics import MetricsServer

log = logging.getLogger(__name__)

WHOLE_FEED = "*"
# Seconds between balance steps while a worker holds less than its fair share and a
# partition may come free soon (`Balance.eager`): each step is one SET NX per partition
# it lacks and one MGET, cheap for Redis.
EAGER_INTERVAL = 0.5


class Runner(Protocol):
    """What a worker needs of engine/runs/live.py's `LiveRunner`."""

    pipeline: Any
    poller: Any
    store: StateStore
    abandoned: bool
    after_commit: list[Callable[[], None]]
    in_hand: int
    health: Any
    status: dict[str, Any]  # the source status of its last pass (the metrics read it)
    failure: str | None  # the error of its failing pass, None once one succeeds

    def cycle(self, until: float | None = None) -> Any: ...

    def request_stop(self) -> None: ...


MakeRunner = Callable[[Config, StateStore], Runner]

# Seconds of one organization's pass before the next due one gets its turn (it ends at
# the next page boundary): a long catch-up of one organization neither keeps the others
# this worker holds unread nor keeps its surplus from the workers that joined later.
PASS_SLICE = 5.0


def partitions_of(config: Config) -> list[str]:
    """The configured organizations, or the whole feed as one partition."""
    orgs = list(dict.fromkeys(config.source.organization_ids))
    return orgs or [WHOLE_FEED]


def partition_config(config: Config, partition: str) -> Config:
    """The configuration one partition's poller reads with: its organization only, and its
    part of `source.max_requests_per_minute` (that figure over the number of configured
    organizations, at least 1). The API's 600 requests a minute are per parent
    organization, shared by every key and integration: each organization's client with
    the whole budget would let ten organizations send ten times it. Split, all workers
    together never exceed the configured figure, whoever holds what (unless there are
    more organizations than that figure: each still gets one a minute)."""
    if partition == WHOLE_FEED:
        return config
    budget = max(1, config.source.max_requests_per_minute // len(partitions_of(config)))
    source = config.source.model_copy(
        update={"organization_ids": [partition], "max_requests_per_minute": budget}
    )
    return config.model_copy(update={"source": source})


@dataclass
class Held:
    """One held partition's loop: its runner, the lease token its store is fenced with,
    its named lists' learned values (read once, when the loop opens) and when its next
    pass is due."""

    partition: str
    runner: Runner
    token: str
    learned: dict[str, set[str]]
    due: float = 0.0
    passes: int = 0


class Worker:
    """The partitions this process holds, their passes, and the thread keeping leases."""

    def __init__(
        self,
        config: Config,
        client: Any,
        make_runner: MakeRunner,
        *,
        leases: Leases,
        open_store: Callable[[str, tuple[str, str]], StateStore],
        after_commit: Sequence[Callable[[], None]] = (),
        clock: Callable[[], float] = time.time,
        once: bool = False,
        pass_slice: float = PASS_SLICE,
    ) -> None:
        self.config = config
        self.client = client
        self.make_runner = make_runner
        self.leases = leases
        self.open_store = open_store
        self.after_commit = list(after_commit)
        self.clock = clock
        self.once = once
        self.pass_slice = pass_slice
        self.partitions = partitions_of(config)
        self.poll_interval = config.source.poll_interval.total_seconds()
        self.running: dict[str, Held] = {}
        self.stopping = threading.Event()
        self.changed = threading.Event()  # the balance thread has news for the main loop
        self.failed = False
        self.share = len(self.partitions)  # the fair share, as of the last balance step
        self.eager = False  # whether the last step asks for the next one early
        self._lock = threading.Lock()  # `leases` and the lists below
        self._lost: set[str] = set()
        self._surplus: set[str] = set()
        self._current: Held | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        # For the metrics endpoint's thread (engine/runs/metrics.py): the counters of the
        # partitions this worker ran and no longer runs (so its totals never go down when
        # a partition moves away), and when a balance step last reached Redis. `running`
        # changes, and `retired` grows, under `_tally` only: once per partition moved,
        # never per activity.
        self.retired = Stats()
        self.balanced_at: float | None = None
        self._tally = threading.Lock()

    # -- the lease thread --------------------------------------------------------------

    def balance(self) -> None:
        """One balance step (the thread's body; called once directly before it starts)."""
        with self._lock:
            step = self.leases.balance(self.partitions)
            self.share = step.share
            self.eager = step.eager
            self._lost.update(step.lost)
            self._surplus.update(step.surplus)
            current = self._current
        self.balanced_at = self.clock()
        for partition in step.lost:
            log.warning("lease of %s lost: its pass stops and its pipeline is dropped", partition)
            if current is not None and current.partition == partition:
                current.runner.request_stop()
        if step.acquired:
            log.info(
                "leased %s (share %d of %d partitions, %d workers live)",
                ", ".join(step.acquired),
                step.share,
                len(self.partitions),
                step.live_workers,
            )
        if step.acquired or step.lost or step.surplus:
            self.changed.set()

    def _keep_leases(self) -> None:
        """A balance step every TTL/3; every `EAGER_INTERVAL` while this worker holds less
        than its share and a partition may come free (another worker is over its share),
        so a partition handed back is taken within a fraction of a second rather than a
        third of the TTL. Below the share with nothing to come free (ten organizations
        over three workers: 4/4/2), the steps stay TTL/3 apart."""
        interval = self.leases.ttl / 3
        while not self.stopping.wait(interval):
            try:
                self.balance()
            except Exception:
                # Redis unreachable: the leases run out on their own and the fence refuses
                # the commits; keep trying, the next step may get through.
                log.exception("renewing the leases failed; trying again in %.1fs", interval)
            eager = self.eager and len(self.leases.held) < self.share
            interval = min(self.leases.ttl / 3, EAGER_INTERVAL) if eager else self.leases.ttl / 3

    def start(self) -> Worker:
        self.balance()
        self._thread = threading.Thread(target=self._keep_leases, name="leases", daemon=True)
        self._thread.start()
        return self

    @property
    def lease_loop_alive(self) -> bool:
        """Whether the thread keeping the leases runs (it only ends with the worker)."""
        return self._thread is not None and self._thread.is_alive()

    def tally(self) -> tuple[dict[str, Held], Stats]:
        """The partitions run now and a copy of the retired counters, taken together (a
        partition moving away between two reads would otherwise count twice or not at
        all). The running partitions' counters are read by the caller, as they are."""
        with self._tally:
            retired = self.retired
            copy = Stats(
                activities=retired.activities,
                rejected=retired.rejected,
                matches_by_rule=retired.matches_by_rule.copy(),
                errors_by_rule=retired.errors_by_rule.copy(),
                alerts_by_severity=retired.alerts_by_severity.copy(),
            )
            return dict(self.running), copy

    def _remove(self, partition: str) -> Held | None:
        """Stop running a partition; its counters join the retired ones."""
        with self._tally:
            held = self.running.pop(partition, None)
            if held is not None:
                stats, retired = held.runner.pipeline.stats, self.retired
                retired.activities += stats.activities
                retired.rejected += stats.rejected
                retired.matches_by_rule.update(stats.matches_by_rule)
                retired.errors_by_rule.update(stats.errors_by_rule)
                retired.alerts_by_severity.update(stats.alerts_by_severity)
        return held

    # -- the main loop -----------------------------------------------------------------

    def _settle(self) -> None:
        """Between passes: drop what was lost, save and hand back the surplus, open a
        loop for every newly held partition."""
        with self._lock:
            lost, self._lost = self._lost, set()
            surplus, self._surplus = self._surplus, set()
            held = list(self.leases.held)
        for partition in lost:
            self._drop(partition)
        for partition in surplus:
            self._save(partition)
            with self._lock:
                self.leases.release(partition)
            log.info("handed %s back (over this worker's share)", partition)
        for partition in held:
            if partition not in self.running and partition not in surplus:
                self._open(partition)

    def _open(self, partition: str) -> None:
        with self._lock:
            if partition not in self.leases.held:
                return
            lease = self.leases.lease(partition)
        store = self.open_store(partition, lease)
        runner = self.make_runner(partition_config(self.config, partition), store)
        runner.after_commit.extend(self.after_commit)
        # The pipeline has just attached the named lists to its store: its learned values.
        learned = runner.pipeline.ruleset.lists.attached()
        with self._tally:
            self.running[partition] = Held(partition, runner, lease[1], learned, due=self.clock())

    def _drop(self, partition: str, release: bool = False) -> None:
        """Forget a partition's loop without writing anything: its lease is gone (or,
        with `release`, given back: its memory cannot be saved). Only the lease its store
        was fenced with: one a balance step has taken again since is the next loop's."""
        held = self._remove(partition)
        if held is None:
            return
        with self._lock:
            if not release:
                self.leases.forget(partition, held.token)
            else:
                try:
                    self.leases.release(partition, held.token)
                except Exception:
                    log.warning("releasing %s failed; its lease runs out", partition, exc_info=True)
        held.runner.poller.client.close()

    def _save(self, partition: str) -> None:
        """A partition's loop ended between two pages: commit what only memory holds
        (threshold samples), under the lease still held."""
        held = self._remove(partition)
        if held is None:
            return
        try:
            if not held.runner.abandoned:
                held.runner.pipeline.suspend()
        except LeaseLost:
            log.warning("lease of %s lost before its state was saved", partition)
        finally:
            held.runner.poller.client.close()

    def _pass(self, held: Held) -> None:
        runner = held.runner
        with self._lock:
            if held.partition in self._lost:
                return  # `_settle` drops it
            self._current = held
        try:
            # The named lists are the rules' (shared): give them this partition's values.
            runner.pipeline.ruleset.lists.attach(runner.store, held.learned)
            result = runner.cycle(until=self.clock() + self.pass_slice)
        except LeaseLost as error:
            log.warning("%s: the partition's pipeline is dropped", error)
            self._drop(held.partition)
            return
        except BaseException:
            # Its memory may hold half a page: never commit it. The other partitions are
            # between two pages; the caller's `close` saves them.
            self._drop(held.partition, release=True)
            raise
        finally:
            with self._lock:
                self._current = None
        if result.ok and not result.complete and not runner.abandoned:
            # Its slice ended mid catch-up: due again at once, after the others now due.
            held.due = self.clock()
            return
        held.passes += 1
        held.due = self.clock() + self.poll_interval
        if runner.abandoned:
            # Stopped mid-page (a lost lease, a stop): its memory must never be committed.
            # A lease still ours (this worker stops) is given back, so another worker need
            # not wait a TTL; one lost is no longer held, and the release touches nothing.
            self._drop(held.partition, release=True)
            return
        if not result.ok and self.once:
            self.failed = True

    def run(self) -> int:
        """Until stopped (with `once`: until every partition held has had a pass)."""
        while not self.stopping.is_set():
            self.changed.clear()  # news from here on wakes the wait below
            self._settle()
            if self.once and all(h.passes for h in self.running.values()):
                break
            due = sorted(self.running.values(), key=lambda h: h.due)
            now = self.clock()
            if due and due[0].due <= now:
                self._pass(due[0])
                continue
            wait = (due[0].due - now) if due else self.leases.ttl / 3
            self.changed.wait(max(0.0, min(wait, self.leases.ttl / 3)))
        return 1 if self.failed else 0

    @property
    def current(self) -> Held | None:
        """The partition whose pass runs now, if any."""
        return self._current

    def request_stop(self) -> None:
        """Stop before the next activity (signal-safe)."""
        self.stopping.set()
        current = self._current
        if current is not None:
            current.runner.request_stop()
        self.changed.set()

    def close(self) -> None:
        """Save every partition between two pages, then release every lease (once). A
        partition that fails to save is logged and released all the same (the next holder
        reads its last page again); a Redis that fails now is logged: the leases then run
        out by themselves."""
        if self._closed:
            return
        self._closed = True
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.leases.ttl)
        try:
            for partition in list(self.running):
                try:
                    if self.running[partition].runner.abandoned:
                        self._drop(partition, release=True)
                    else:
                        self._save(partition)
                except Exception:
                    log.exception("stopping: %s could not be saved", partition)
        finally:
            try:
                with self._lock:
                    self.leases.leave()
            except Exception:
                log.exception("stopping: the leases could not be released")


class _Idle:
    """No pass in hand: nothing progresses, nothing waits."""

    progress = 0


class PassInHand:
    """The pass in hand, seen as the stalled-pipeline watchdog sees a single run's
    `LiveRunner`: its pipeline's progress, the activities read and not yet committed, its
    organization's source health (whose `stalled` alert is committed with that page,
    once it moves). Between two passes nothing waits."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    @property
    def pipeline(self) -> Any:
        held = self.worker.current
        return held.runner.pipeline if held is not None else _Idle()

    @property
    def in_hand(self) -> int:
        held = self.worker.current
        return held.runner.in_hand if held is not None else 0

    @property
    def health(self) -> Any:
        held = self.worker.current
        return held.runner.health if held is not None else None


def run_worker(
    config: Config,
    make_runner: MakeRunner,
    *,
    once: bool = False,
    out: IO[str] | None = None,
    deliver_timeout: float = 120.0,
    worker_id: str | None = None,
    watch: Callable[[PassInHand], Any] | None = None,
    metrics: MetricsServer | None = None,
    rule_ids: Sequence[str] = (),
) -> int:
    """`detect run` with `state.backend: redis`. The Redis is checked first (persistence,
    no eviction of state), before any lease is taken or any request sent. `watch` starts
    the stalled-pipeline watchdog on the pass in hand (engine/runs/live.py's `Watchdog`;
    anything with `stop()` and `stalled`). A bound `metrics` server starts serving this
    worker's figures once its first balance step has taken its share (the caller closes
    it); `rule_ids` seed its per-rule counters."""
    from engine.state.redis_connect import check_redis_safety, open_redis
    from engine.state.redis_store import RedisStore

    settings = config.state.redis
    assert settings is not None  # the configuration refuses backend: redis without it
    client = open_redis(settings)
    check_redis_safety(client)
    prefix = settings.key_prefix
    leases = Leases(
        client, prefix=prefix, ttl=settings.lease_ttl.total_seconds(), worker_id=worker_id
    )

    def open_store(partition: str, lease: tuple[str, str]) -> StateStore:
        return RedisStore(client, prefix, partition=partition, lease=lease)

    dispatcher = shared_dispatcher(config, client, prefix, out)
    worker = Worker(
        config,
        client,
        make_runner,
        leases=leases,
        open_store=open_store,
        after_commit=[] if once else [dispatcher.wake],
        once=once,
    )
    previous = install_stop_handlers(
        worker.stopping.is_set, worker.request_stop, ", then releasing the leases"
    )
    partitions = worker.partitions
    log.info(
        "worker %s: %d partition%s to share (%s), lease TTL %s, polling every %s%s",
        leases.worker_id,
        len(partitions),
        "" if len(partitions) == 1 else "s",
        ", ".join(partitions),
        describe(settings.lease_ttl),
        describe(config.source.poll_interval),
        ", until caught up" if once else "",
    )
    watchdog = None
    try:
        if not once:
            dispatcher.start()
        worker.start()
        if watch is not None:
            watchdog = watch(PassInHand(worker))
        if metrics is not None:
            from engine.runs.metrics import WorkerMetrics

            view = WorkerMetrics(
                worker,
                client,
                rule_ids=rule_ids,
                watchdog=watchdog,
                dispatcher=dispatcher,
                destinations=config.destinations,
            )
            url = metrics.serve(view).url
            log.info("metrics: %s/metrics and %s/healthz", url, url)
        code = worker.run()
        interrupted = worker.stopping.is_set()  # a signal; `close` sets it too
        worker.close()
        if once and not interrupted:
            report = dispatcher.dispatch_pending(deadline=dispatcher.clock() + deliver_timeout)
            log.info("delivery: %s", report)
    finally:
        if watchdog is not None:
            watchdog.stop()
        worker.close()
        dispatcher.close()
        restore_handlers(previous)
        client.close()
    log.info("worker %s stopped; its leases are released", leases.worker_id)
    return code


def shared_dispatcher(config: Config, client: Any, prefix: str, out: IO[str] | None) -> Dispatcher:
    """This worker's dispatcher over the shared Redis outbox: every worker runs one, and
    a delivery is claimed by one script, so exactly one of them sends it."""
    from engine.config import register_secrets
    from engine.delivery.dispatcher import Dispatcher
    from engine.delivery.redis_outbox import RedisOutbox
    from engine.state.redis_alerts import RedisAlertRows

    register_secrets(config)
    outbox = RedisOutbox(client, prefix, alerts=RedisAlertRows(client, prefix))
    return Dispatcher(outbox, config.destinations, stream=out)
