"""The one place a run is assembled: source → pipeline → outbox → dispatcher.

Every mode (`detect run`, `detect replay` on one or two processes, `detect run --demo`,
`detect bench`, `detect alerts test`) takes its parts from here and only loops over
them: `pipeline()` for the stages after the source, `file_source()` or `live_source()`
for what feeds them, `evaluate()` to drive a finite source through the pipeline,
`live_health()` for the source's own alerts, `dispatcher()` and `deliver()` for what the
outbox holds.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from engine.activity import ActivityRecord
from engine.config import Config, StateConfig, register_secrets, require_secrets
from engine.correlation.correlator import AlertChange
from engine.detection.loader import RuleSet
from engine.errors import ConfigError
from engine.pipeline import Pipeline, Sink
from engine.sources.files import ReadReport, Rejected, read_sources
from engine.sources.reorder import reorder, sort_all
from engine.state.store import MemoryStore, StateStore

if TYPE_CHECKING:
    from datetime import timedelta

    from engine.delivery.dispatcher import Dispatcher, DispatchReport
    from engine.runs.forked import ChildReport
    from engine.runs.leases import Leases
    from engine.sources.health import SourceHealth
    from engine.sources.poller import Poller

Records = Iterator[ActivityRecord | Rejected]


def open_store(path: Path | str | None, state: StateConfig | None = None) -> StateStore:
    """The state store of a run: the SQLite file at `path`, or memory without one; with
    `state` (the configuration's `state:`) of `backend: redis`, the configured Redis
    instead, checked for persistence and eviction first, as partition `*` under its
    lease (`open_redis_store`; workers open their partitions' stores themselves, each
    fenced by its lease)."""
    if state is not None and state.backend == "redis":
        return open_redis_store(state)
    if path is None:
        return MemoryStore()
    from engine.state.sqlite import SqliteStore

    return SqliteStore(Path(path))


def open_redis_store(state: StateConfig, partition: str = "*") -> StateStore:
    """The configured Redis's store of `partition`, fenced by the partition's lease,
    which it takes as a worker does (the same key, `state.redis.lease_ttl`, a token of
    its own), keeps by a thread while open and gives back on close. Workers without
    `organization_ids` hold `*` too: without the lease a replay would be a second,
    unfenced writer of their partition. A lease held by anyone else is refused
    (`StateInUseError`, one line). It closes the client with itself."""
    from engine.state.redis_connect import check_redis_safety, open_redis
    from engine.state.redis_store import RedisStore

    settings = state.redis
    if settings is None:
        raise ConfigError("state.backend: redis needs `state.redis` with at least a `url`")
    client = open_redis(settings)
    try:
        check_redis_safety(client)
        held = _HeldLease.take(client, settings.key_prefix, partition, settings.lease_ttl)
    except BaseException:
        client.close()
        raise
    return RedisStore(
        client,
        settings.key_prefix,
        partition,
        lease=held.lease,
        close_client=True,
        on_close=held.stop,
    )


class _HeldLease:
    """One partition's lease, taken for a store outside worker mode (a replay, the
    benchmark) and renewed every third of its TTL by a daemon thread until `stop`. A
    renewal that finds the lease gone ends the thread: the store's fence then refuses
    the next commit (`LeaseLost`)."""

    def __init__(self, leases: Leases, partition: str) -> None:
        self.leases = leases
        self.partition = partition
        self.lease: tuple[str, str] = leases.lease(partition)
        self.stopping = threading.Event()
        self.thread = threading.Thread(
            target=self._renew, name=f"detect-lease-{partition}", daemon=True
        )
        self.thread.start()

    @classmethod
    def take(cls, client: Any, prefix: str, partition: str, ttl: timedelta) -> _HeldLease:
        from engine.errors import StateInUseError
        from engine.runs.leases import Leases, holder_of, new_worker_id

        leases = Leases(
            client, prefix=prefix, ttl=ttl.total_seconds(), worker_id=f"replay-{new_worker_id()}"
        )
        for _ in range(2):  # once more when the holder's lease ran out as we looked
            if leases.acquire(partition):
                return cls(leases, partition)
            token = client.get(leases.key(partition))
            if token is not None:
                holder = holder_of(token.decode() if isinstance(token, bytes) else token)
                raise StateInUseError(
                    f"partition {partition} is held by worker {holder}: stop the workers "
                    "or replay under another key_prefix"
                )
        raise StateInUseError(f"partition {partition}'s lease could not be taken: try again")

    def _renew(self) -> None:
        import redis

        while not self.stopping.wait(self.leases.ttl / 3):
            try:
                if not self.leases.renew(self.partition):
                    return
            except redis.RedisError:
                continue  # the next beat tries again; the fence guards the meantime

    def stop(self) -> None:
        """Stop renewing and give the lease back (another may take it at once)."""
        import redis

        self.stopping.set()
        self.thread.join()
        with contextlib.suppress(redis.RedisError):  # else it runs out by its TTL
            self.leases.release(self.partition)


def pipeline(
    ruleset: RuleSet,
    store: StateStore | None = None,
    sinks: Iterable[Sink] = (),
    *,
    on_rejected: Callable[[Rejected], None] | None = None,
    live: bool = False,
    scope: str = "",
) -> Pipeline:
    """The stages after the source. A live run commits only at page ends (a page, its
    alerts and its checkpoint are one unit); a finite input commits every 1000
    activities. `scope`: the organization a worker on Redis correlates alone, part of its
    alert ids (engine/alerts.py)."""
    commit_every = sys.maxsize if live else 1000
    return Pipeline(
        ruleset,
        store or MemoryStore(),
        sinks,
        on_rejected=on_rejected,
        commit_every=commit_every,
        scope=scope,
    )


def file_source(
    paths: Sequence[str],
    *,
    sort: bool = False,
    reorder_capacity: int = 10_000,
    report: ReadReport | None = None,
) -> Callable[[], Records]:
    """Files (or `-`) as a source: read, parsed, and put in time order (all at once with
    `sort`, else through a bounded reorder buffer). A function, so that a forked child
    opens the files itself. With a `report`, an input that breaks half-way is noted there
    and the next read, duplicate ids are dropped, and activities later than the reorder
    buffer could hold back are counted (`engine/sources/files.py`)."""

    def records() -> Records:
        read = read_sources(paths, report)
        return sort_all(read) if sort else reorder(read, reorder_capacity, report)

    return records


def evaluate(
    run: Pipeline,
    records: Callable[[], Records],
    processes: int = 1,
    *,
    finish: Callable[[], Any] | None = None,
    started: Callable[[int], None] | None = None,
) -> ChildReport | None:
    """A finite source through the pipeline, on one process or two (a forked child reads
    and evaluates, this process correlates: engine/runs/forked.py). Commits included;
    `run.finish()` is the caller's. With two processes, the child's report."""
    if processes > 1:
        from engine.runs.forked import run_forked

        return run_forked(run, records, finish, started)
    run.run(records())
    return None


PAGE_REFUSED_KEY = "source_page_refused"


def record_page_refusal(store: StateStore, error: Any, now: float) -> None:
    """A page refused for its size (`PageTooLargeError`), kept in the state with the
    page's commit: how many so far, and the last one (its size, the limit, request-id)."""
    from datetime import UTC, datetime

    from engine.activity import format_timestamp
    from engine.secrets import redact_value

    known = store.get_meta(PAGE_REFUSED_KEY)
    count = known.get("count", 0) if isinstance(known, dict) else 0
    last = {
        **redact_value(error.to_dict()),
        "size": error.size,
        "max_page_bytes": error.max_bytes,
        "page_limit": error.page_limit,
        "at": format_timestamp(datetime.fromtimestamp(now, tz=UTC)),
    }
    store.set_meta(PAGE_REFUSED_KEY, {"count": count + 1, "last": last})


@dataclass
class LiveParts:
    """What a live loop turns: the poller feeding the pipeline, and the source's health."""

    pipeline: Pipeline
    poller: Poller
    health: SourceHealth | None
    stopping: threading.Event


def live_source(
    config: Config,
    ruleset: RuleSet,
    store: StateStore,
    *,
    sinks: Iterable[Sink] = (),
    on_rejected: Callable[[Any], None] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] | None = None,
    health: bool = True,
    scope: str = "",
) -> LiveParts:
    """The Compliance API as a source, from the configuration: its client and
    checkpointed poller on `store`, the pipeline (its alert ids in `scope`), and (with
    `health`) the monitor whose alerts go to the pipeline's sinks."""
    from engine.sources.compliance_api import ComplianceClient
    from engine.sources.health import SourceHealth
    from engine.sources.poller import Poller

    require_secrets(config, "source")
    source = config.source
    register_secrets(config)
    apply_rule_budget(config)
    if source.api_key is None:
        raise ConfigError(
            "source.api_key is not set; for example `api_key: ${ANTHROPIC_COMPLIANCE_API_KEY}`"
        )
    stopping = threading.Event()

    def interruptible(seconds: float) -> None:
        stopping.wait(seconds)

    client = ComplianceClient(
        source.base_url,
        source.api_key,
        max_requests_per_minute=source.max_requests_per_minute,
        max_retries=source.max_retries,
        max_page_bytes=source.max_page_bytes,
        on_refusal=lambda error: record_page_refusal(store, error, clock()),
        timeout=source.request_timeout.total_seconds(),
        clock=clock,
        sleep=sleep or interruptible,
        should_stop=stopping.is_set,
    )
    poller = Poller(
        client,
        store,
        organization_ids=source.organization_ids,
        page_size=source.page_size,
        lookback=source.lookback,
        overlap=source.overlap,
        clock=clock,
    )
    run = pipeline(ruleset, store, sinks, on_rejected=on_rejected, live=True, scope=scope)

    def emit(change: AlertChange) -> None:
        for sink in run.sinks:
            sink(change)

    monitor = None
    if health:
        monitor = SourceHealth(
            store,
            run.correlator,
            source=poller.scope,
            silence_after=source.silence_alert_after,
            failure_after=source.failure_alert_after,
            emit=emit,
        )
    return LiveParts(run, poller, monitor, stopping)


def apply_rule_budget(config: Config) -> None:
    """The configuration's `rule_budget:` as the engine-wide default of every rule with
    code (engine/detection/budget.py)."""
    from engine.detection import budget

    budget.configure(
        budget=config.rule_budget.per_activity.total_seconds(),
        quarantine_after=config.rule_budget.quarantine_after,
    )


def dispatcher(
    config: Config,
    out: IO[str] | None = None,
    *,
    state: Path | None = None,
    only: Sequence[str] | None = None,
    **options: Any,
) -> Dispatcher:
    """The dispatcher over the configured state file's outbox (or the one at `state`),
    to every configured destination (or only those named in `only`: `detect alerts
    test`). `options` go to the dispatcher (its clock and sleep)."""
    from engine.delivery.dispatcher import Dispatcher

    require_secrets(config, "destinations", only=only)
    register_secrets(config)
    destinations = config.destinations
    if only is not None:
        destinations = {name: config.destinations[name] for name in only}
    return Dispatcher(state or config.state.path, destinations, stream=out, **options)


def deliver(config: Config, timeout: float | None = None, **options: Any) -> DispatchReport:
    """One delivery pass over the outbox (after a replay): everything pending, or what
    `timeout` seconds allow."""
    from engine.delivery.dispatcher import deliver_pending

    require_secrets(config, "destinations")
    return deliver_pending(config, timeout=timeout, **options)
