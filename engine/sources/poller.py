"""Reading the activity feed continuously: where to start, how far to go, what to skip.

The API returns activities newest first and pages with opaque cursors. The poller turns
that into an ordered stream, oldest first, that can be stopped at any instant and resumed
without losing or repeating an activity. The rules it keeps (docs/ingestion.md explains
them for users):

- **Never read the last minute.** Every request carries `created_at.lt` at least 60 s in
  the past (`SAFETY_LAG`): an activity becomes queryable within about a minute, so the
  newest minute is still filling in.
- **Catch up oldest page first.** A pass starts from a cursor (an activity id) and follows
  `before_id` to newer pages until `has_more` is false; each page is sorted by
  `created_at` and handed over as one `Batch`.
- **Commit a page with its effects.** The caller evaluates a batch, calls `stage(batch)`
  (seen ids and checkpoint into the store) and commits once: correlation state, alerts and
  the cursor land together, so the cursor never passes unprocessed data. A failed request
  (a 429 included) raises before any batch is staged: the cursor stays where it was.
- **Re-read the overlap.** An activity indexed late can appear behind the cursor. The
  checkpoint keeps `settled_before`: the time before which everything that became visible
  within `overlap` of its `created_at` has been read (a position read at wall time `n` is
  settled once it is older than `n - overlap`). Each pass that is not already past it
  starts again at `settled_before`, found through an anchor query (`created_at.lt`,
  `limit=1`), so the last `overlap` is read again and late arrivals are picked up.
- **Deduplicate on id, in bounded memory.** Ids already evaluated are remembered (in
  memory and in the store, in the same commit) while a future read could return them:
  from `min(settled_before, cursor_time - overlap)` on. Older ids are forgotten, so memory
  holds about one overlap's worth of activity.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from engine.activity import (
    describe_validation_error,
    format_timestamp,
    parse_activity,
    parse_timestamp,
)
from engine.sources.compliance_api import (
    MAX_PAGE_SIZE,
    ComplianceClient,
    InvalidCursorError,
    InvalidResponseError,
    Page,
)
from engine.sources.files import Record, Rejected
from engine.state.store import StateStore

log = logging.getLogger(__name__)

SAFETY_LAG = timedelta(seconds=60)
CHECKPOINT_KEY = "checkpoint"
SEEN_NAMESPACE = "source_seen"
CHECKPOINT_VERSION = 1
# Past this much server-clock lag behind ours we say so once; any lag beyond jitter is
# honoured (we read up to the server's "a minute ago", not ours).
_SKEW_WARNING = 30.0
_SKEW_TOLERANCE = 2.0


def _floor(moment: datetime) -> datetime:
    """Whole seconds: query bounds, and every horizon derived from them, stay comparable."""
    return moment.replace(microsecond=0)


def _time(text: Any) -> datetime | None:
    return parse_timestamp(text) if isinstance(text, str) else None


def _position(raw: Any) -> tuple[datetime, str] | None:
    """Where an activity sits in the feed's order: (created_at, id)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        return None
    try:
        moment = parse_timestamp(raw["created_at"])
    except (KeyError, TypeError, ValueError):
        return None
    return moment, raw["id"]


def _dedup_key(raw: Any) -> str:
    """The activity id; for a record without one, a digest of its content (so a broken
    record is quarantined once, not once per re-read)."""
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"]:
        return raw["id"]
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Checkpoint:
    """Where the poller is; stored as the `checkpoint` meta value with every commit."""

    settled_before: datetime
    cursor: str | None = None
    cursor_time: datetime | None = None
    caught_up_to: datetime | None = None
    scope: str = ""

    def to_json(self) -> dict[str, Any]:
        def text(moment: datetime | None) -> str | None:
            return format_timestamp(moment) if moment is not None else None

        return {
            "version": CHECKPOINT_VERSION,
            "cursor": self.cursor,
            "cursor_time": text(self.cursor_time),
            "settled_before": text(self.settled_before),
            "caught_up_to": text(self.caught_up_to),
            "scope": self.scope,
        }

    @classmethod
    def from_json(cls, value: Any) -> Checkpoint | None:
        if not isinstance(value, dict) or value.get("version") != CHECKPOINT_VERSION:
            return None
        settled = _time(value.get("settled_before"))
        if settled is None:
            return None
        return cls(
            settled_before=settled,
            cursor=value.get("cursor") or None,
            cursor_time=_time(value.get("cursor_time")),
            caught_up_to=_time(value.get("caught_up_to")),
            scope=value.get("scope") or "",
        )


@dataclass(frozen=True)
class Batch:
    """One page's new activities, oldest first, and the checkpoint once they are committed."""

    records: list[Record]
    checkpoint: Checkpoint
    new_seen: list[tuple[str, float]]
    fetched: int
    duplicates: int
    complete: bool  # the last batch of the pass: everything before `upper` has been read
    pass_from: datetime
    upper: datetime
    request_id: str | None
    reached: tuple[datetime, str] | None  # the newest activity of the page: (time, id)

    @property
    def activities(self) -> int:
        return sum(1 for r in self.records if not isinstance(r, Rejected))

    @property
    def newest(self) -> datetime | None:
        times = [r.created_at for r in self.records if not isinstance(r, Rejected)]
        return max(times) if times else None


def scope_of(base_url: str, organization_ids: Iterable[str]) -> str:
    """What a checkpoint is valid for: the API and the organization filter."""
    orgs = ",".join(sorted(set(organization_ids))) or "*"
    return f"{base_url} orgs={orgs}"


class Poller:
    """One source's position in the feed. `poll()` yields the batches of one pass; the
    caller evaluates each, calls `stage(batch)`, then commits the store."""

    def __init__(
        self,
        client: ComplianceClient,
        store: StateStore,
        *,
        organization_ids: Iterable[str] = (),
        page_size: int = 1000,
        lookback: timedelta = timedelta(hours=24),
        overlap: timedelta = timedelta(minutes=10),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{MAX_PAGE_SIZE}")
        self.client = client
        self.store = store
        self.organization_ids = list(organization_ids)
        self.page_size = page_size
        self.lookback = lookback
        self.overlap = overlap
        self.clock = clock
        self.scope = scope_of(client.base_url, self.organization_ids)
        self.checkpoint = Checkpoint.from_json(store.get_meta(CHECKPOINT_KEY))
        self.seen: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        for key, epoch in store.items(SEEN_NAMESPACE):
            self.seen[key] = float(epoch)
            self._expiry.append((float(epoch), key))
        heapq.heapify(self._expiry)
        self._skew_warned = False

    # -- time ------------------------------------------------------------------------

    def now(self) -> datetime:
        """Our clock, or the API's when it runs behind ours (from the `Date` header): the
        one-minute safety lag must be measured on the clock that stamps `created_at`."""
        local = self.clock()
        offset = self.client.server_time_offset
        if offset is not None and offset < -_SKEW_TOLERANCE:
            if offset < -_SKEW_WARNING and not self._skew_warned:
                self._skew_warned = True
                log.warning(
                    "the Compliance API's clock is %.0fs behind this machine's; reading up to "
                    "the API's time. Check NTP on this host.",
                    -offset,
                )
            local += offset
        return datetime.fromtimestamp(local, tz=UTC)

    # -- a pass ----------------------------------------------------------------------

    def poll(self) -> Iterator[Batch]:
        """One pass: from the checkpoint up to a minute ago. Raises `ComplianceAPIError`
        when the API fails past the client's retries; batches already staged stay valid."""
        now = self.now()
        upper = _floor(now - SAFETY_LAG)
        if self.checkpoint is None:
            since = _floor(now - self.lookback)
            log.info(
                "no checkpoint yet: reading activity since %s (source.lookback)",
                format_timestamp(since),
            )
            self.checkpoint = Checkpoint(settled_before=since, scope=self.scope)
        elif self.checkpoint.scope != self.scope:
            log.warning(
                "the source changed (%s, was %s): continuing from %s; activity of newly "
                "added organizations before that time is not read",
                self.scope,
                self.checkpoint.scope or "unknown",
                format_timestamp(self.checkpoint.settled_before),
            )
            self.checkpoint = replace(self.checkpoint, cursor=None, scope=self.scope)
        recovered = False
        while True:
            try:
                yield from self._pass(upper, now)
                return
            except InvalidCursorError as exc:
                if recovered or self.checkpoint.cursor is None:
                    raise
                recovered = True
                log.warning(
                    "the saved cursor %s is no longer accepted (%s); finding our place again "
                    "from its time",
                    self.checkpoint.cursor,
                    exc,
                )
                self.checkpoint = replace(self.checkpoint, cursor=None)

    def _pass(self, upper: datetime, started: datetime) -> Iterator[Batch]:
        cp = self.checkpoint
        assert cp is not None
        if cp.cursor and cp.cursor_time is not None and cp.settled_before > cp.cursor_time:
            # Everything up to the cursor is settled: plain catch-up, nothing to re-read.
            before = cp.cursor
            pass_from = cp.cursor_time
        else:
            pass_from = cp.settled_before
            if cp.cursor_time is not None:
                pass_from = min(pass_from, _floor(cp.cursor_time))
            anchor = self._list(created_at_lt=pass_from, limit=1)
            if anchor.data and anchor.first_id:
                before = anchor.first_id
            else:
                # Nothing older than `pass_from`: the oldest page of the window is the last
                # one of a newest-first walk through it.
                oldest = self._oldest_page(pass_from, upper)
                if oldest is None:
                    yield self._batch(None, upper, pass_from, started)
                    return
                batch = self._batch(oldest, upper, pass_from, started, more=True)
                yield batch
                before = self._next_cursor(batch, None)
        while True:
            page = self._list(before_id=before, created_at_lt=upper, limit=self.page_size)
            batch = self._batch(page, upper, pass_from, started)
            yield batch
            if batch.complete:
                return
            before = self._next_cursor(batch, before)

    def _next_cursor(self, batch: Batch, before: str | None) -> str:
        """Where the traversal goes on: the newest activity of the page just read (not the
        checkpoint's cursor, which stays at the newest ever read while a pass re-reads
        the overlap behind it)."""
        if self.checkpoint is not batch.checkpoint:
            raise RuntimeError("Poller.stage(batch) must be called before the next batch")
        if batch.reached is None or batch.reached[1] == before:
            raise InvalidResponseError(
                f"the Compliance API returned a page that does not move past {before}: "
                "stopping this pass instead of looping",
                request_id=batch.request_id,
            )
        return batch.reached[1]

    def _list(self, **kwargs: Any) -> Page:
        return self.client.list_activities(organization_ids=self.organization_ids, **kwargs)

    def _oldest_page(self, start: datetime, upper: datetime) -> Page | None:
        last: Page | None = None
        after: str | None = None
        while True:
            page = self._list(
                created_at_gte=start, created_at_lt=upper, after_id=after, limit=MAX_PAGE_SIZE
            )
            if not page.data:
                return last
            last = page
            if not page.has_more or not page.last_id or page.last_id == after:
                return last
            after = page.last_id

    def _batch(
        self,
        page: Page | None,
        upper: datetime,
        pass_from: datetime,
        started: datetime,
        more: bool | None = None,
    ) -> Batch:
        cp = self.checkpoint
        assert cp is not None
        items = list(reversed(page.data)) if page is not None else []
        positions = [_position(raw) for raw in items]
        # The API's order is newest first; sort oldest first by time, keeping its order
        # for ties (and for records whose time is unreadable, which go first).
        order = sorted(
            range(len(items)),
            key=lambda i: positions[i][0] if positions[i] else datetime.min.replace(tzinfo=UTC),
        )
        records: list[Record] = []
        new_seen: list[tuple[str, float]] = []
        duplicates = 0
        beyond = False
        newest: tuple[datetime, str] | None = None
        keys: set[str] = set()
        request_id = page.request_id if page is not None else None
        for index in order:
            raw, position = items[index], positions[index]
            if position is not None and position[0] >= upper:
                beyond = True  # the API ignored created_at.lt: never read the last minute
                continue
            if position is not None and position[0] < pass_from:
                # Nothing a pass reads legitimately is older than where it started: this is
                # a re-delivery (the anchor, or an activity whose id we may have forgotten).
                duplicates += 1
                continue
            if position is not None and (newest is None or position > newest):
                newest = position
            key = _dedup_key(raw)
            if key in self.seen or key in keys:
                duplicates += 1
                continue
            keys.add(key)
            records.append(_record(raw, request_id, index))
            moment = position[0] if position else (newest[0] if newest else upper)
            new_seen.append((key, moment.timestamp()))
        has_more = page.has_more if page is not None else False
        complete = not (has_more if more is None else more) or beyond or not items
        cursor, cursor_time = cp.cursor, cp.cursor_time
        if newest is not None and (
            cursor is None or cursor_time is None or newest > (cursor_time, cursor)
        ):
            cursor_time, cursor = newest
        if complete:
            read_to = upper
        elif newest is not None:
            read_to = _floor(newest[0])
        else:
            read_to = cp.settled_before
        settled = max(cp.settled_before, min(read_to, _floor(started - self.overlap)))
        checkpoint = Checkpoint(
            settled_before=settled,
            cursor=cursor,
            cursor_time=cursor_time,
            caught_up_to=upper if complete else cp.caught_up_to,
            scope=self.scope,
        )
        return Batch(
            records=records,
            checkpoint=checkpoint,
            new_seen=new_seen,
            fetched=len(items),
            duplicates=duplicates,
            complete=complete,
            pass_from=pass_from,
            upper=upper,
            request_id=request_id,
            reached=newest,
        )

    # -- committing ------------------------------------------------------------------

    def stage(self, batch: Batch) -> None:
        """Put the batch's seen ids and checkpoint in the store's pending transaction;
        the caller's commit makes them durable with the batch's alerts and state."""
        store = self.store
        for key, epoch in batch.new_seen:
            self.seen[key] = epoch
            heapq.heappush(self._expiry, (epoch, key))
            store.put(SEEN_NAMESPACE, key, epoch)
        cp = batch.checkpoint
        self.checkpoint = cp
        # Every later pass starts at or after min(settled_before, floor(cursor_time)) and
        # drops anything older than its start, so an id older than this horizon (at most
        # that, as overlap >= 1 s) can never be returned for evaluation again.
        horizon = cp.settled_before
        if cp.cursor_time is not None:
            horizon = min(horizon, cp.cursor_time - self.overlap)
        limit = horizon.timestamp()
        while self._expiry and self._expiry[0][0] < limit:
            epoch, key = heapq.heappop(self._expiry)
            if self.seen.get(key) == epoch:
                del self.seen[key]
                store.delete(SEEN_NAMESPACE, key)
        store.set_meta(CHECKPOINT_KEY, cp.to_json())


def _record(raw: Any, request_id: str | None, index: int) -> Record:
    source = f"compliance-api {request_id or 'response'}"
    try:
        return parse_activity(raw)
    except ValidationError as exc:
        reason = describe_validation_error(exc)
    except TypeError as exc:
        reason = str(exc)
    text = json.dumps(raw, separators=(",", ":"), default=str)
    return Rejected(source, index + 1, reason, text)
