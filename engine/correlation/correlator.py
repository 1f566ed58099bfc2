"""Dedup windows and thresholds, on event time.

Every window is measured on `created_at`, never on the wall clock, so a replay of last
month's file raises the alerts the live stream raised. The correlator turns matches into
alert changes (opened, joined, closed) and keeps everything it must remember in the state
store, so a restart resumes open windows and counters where they were.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_core import from_json, to_json

from engine.activity import ActivityRecord, parse_activity
from engine.alerts import MAX_SAMPLE_EVENTS, Alert, alert_id_for
from engine.correlation.windows import Window
from engine.detection.failures import RuleFailure
from engine.detection.rule import LAST_SEEN_SLACK, Match, Rule
from engine.state.store import StateStore

ALERTS = "alert"
COUNTERS = "threshold"
HELD_SAMPLES = "threshold_samples"
# Sample activities of threshold windows held in memory (JSON-encoded): about 7 MB at
# most. Only a window that fires needs its samples; over the cap, the windows furthest
# from their count lose theirs (see `_shed_samples`), which costs an alert examples, never
# a count.
MAX_HELD_SAMPLES = 10_000
# How often (event time, seconds) windows that slid out of use are dropped from memory.
SWEEP_EVERY = 600.0
SWEEP_ABOVE = 4096  # fewer windows than this are not worth a sweep's scan
SEEN = "new_value"
PARTIALS = "sequence"
# A key that gathers more values than this forgets its least recently seen ones first.
MAX_VALUES_PER_KEY = 1000
MAX_SEEN_LATELY = 20_000
log = logging.getLogger(__name__)
_NOTHING: list[AlertChange] = []  # shared, never appended to: no allocation per activity
RULE_ERROR_WINDOW = timedelta(hours=1)
_NEVER = float("-inf")  # the watermark before the first activity
RULE_ERROR_SEVERITY = "medium"


@dataclass(frozen=True)
class Counted:
    """A threshold's full window: how many activities, their span, and a few samples."""

    samples: list[ActivityRecord]
    count: int
    first: float
    last: float


@dataclass(frozen=True)
class AlertChange:
    """`opened` (owes a notification), `joined` (counted, silent) or `closed` (final)."""

    change: str
    alert: Alert


def _text(value: Any) -> str:
    """A state key for any JSON value: strings as they are, others as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _epoch(moment: datetime) -> float:
    return moment.timestamp()


_LATEST = datetime.max.replace(tzinfo=UTC)


def _from_epoch(value: float) -> datetime:
    """The moment of an epoch. Near the end of year 9999 a float has no microseconds
    left, and the last ones round past the largest datetime: those are that datetime."""
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, ValueError):
        return _LATEST


class _HeldSamples(dict[str, bytes]):
    """Held sample activities by name (JSON-encoded). Each is stored in its own row while
    held (`Correlator._count`); one dropped from here (its entry left the window, the
    window was dropped or lost its samples) has its row deleted with the next commit, so
    the stored samples stay those the stored windows name."""

    __slots__ = ("store",)

    def __init__(self, store: StateStore) -> None:
        super().__init__()
        self.store = store

    def pop(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        found = super().pop(name, _ABSENT)
        if found is _ABSENT:
            return default
        self.store.delete(HELD_SAMPLES, name)
        return found


_ABSENT = object()


class Correlator:
    def __init__(self, store: StateStore, scope: str = "") -> None:
        self.store = store
        # The organization this correlator alone correlates (a worker's partition), part
        # of every alert id it makes (engine/alerts.py `alert_id_for`); empty otherwise.
        self.scope = scope
        # Event time reached so far, as an epoch.
        self._watermark_epoch = _NEVER
        # (window end, state key): open alerts to close when event time passes their end.
        self._closing: list[tuple[float, str, str]] = []
        self._samples = _HeldSamples(store)
        # Threshold windows by state key, those changed since the last flush, and when
        # windows that event time has left behind were last dropped from memory.
        self._windows: dict[str, Window] = {}
        self._changed_windows: set[str] = set()
        # Windows whose entries may name held samples, in the order they first held one.
        self._sampled: dict[str, None] = {}
        self._swept = 0.0
        # (rule id, key, value) -> the last-seen time stored for new_value values lately.
        self._seen_lately: dict[tuple[str, str, str], float] = {}
        self._rule_numbers: dict[str, int] = {}  # tells apart sample names per rule
        # Open alerts by state key, and those changed since the last flush (with whether
        # they owe a notification).
        self._open: dict[str, Alert] = {}
        self._dirty: dict[str, tuple[Alert, bool]] = {}
        for key, state in store.items(ALERTS):
            alert = Alert.from_state(state)
            heapq.heappush(self._closing, (_epoch(alert.window_end), key, alert.alert_id))

    # -- event time -------------------------------------------------------------------

    def advance(self, now: float) -> list[AlertChange]:
        """Move event time forward to `now` (an activity's epoch); the alerts whose window
        closed."""
        if now <= self._watermark_epoch:
            return _NOTHING
        self._watermark_epoch = now
        closing = self._closing
        if not closing or closing[0][0] > now:
            return _NOTHING
        closed = []
        while closing and closing[0][0] <= now:
            _, key, alert_id = heapq.heappop(closing)
            alert = self._take(key, alert_id)
            if alert is not None and not alert.pending:
                closed.append(AlertChange("closed", alert))
        return closed

    @property
    def watermark(self) -> datetime | None:
        """Event time reached so far: the newest `created_at` seen (from its epoch, so to
        the microsecond until about year 2250)."""
        now = self._watermark_epoch
        return None if now == _NEVER else _from_epoch(now)

    def close_all(self) -> Iterator[AlertChange]:
        """End of input: every open alert is final (used by replays and tests)."""
        while self._closing:
            _, key, alert_id = heapq.heappop(self._closing)
            alert = self._take(key, alert_id)
            if alert is not None and not alert.pending:
                yield AlertChange("closed", alert)

    def open_alerts(self) -> int:
        """The alerts `close_all` would close now (in memory or in the store)."""
        count = 0
        for _, key, alert_id in self._closing:
            alert = self._load(key)
            if alert is not None and alert.alert_id == alert_id and not alert.pending:
                count += 1
        return count

    def flush(self) -> None:
        """Write the alerts and threshold windows changed since the last flush into the
        store (state and outbox), and now and then drop windows that slid out of use; the
        pipeline calls it right before each commit."""
        for key, (alert, notify) in self._dirty.items():
            state = alert.to_state()
            self.store.put(ALERTS, key, state, expires=_epoch(alert.window_end))
            if not alert.pending:
                self.store.save_alert(state, notify=notify)
        self._dirty.clear()
        windows = self._windows
        put = self.store.put
        for key in self._changed_windows:
            window = windows[key]
            put(COUNTERS, key, window.live(), expires=window.newest + window.width)
        self._changed_windows.clear()
        now = self._watermark_epoch
        if now - self._swept >= SWEEP_EVERY and len(self._windows) > SWEEP_ABOVE:
            self._sweep(now)

    def _shed_samples(self) -> None:
        """Over the cap: the samples of the half of the windows furthest from their
        count, those that event time has left behind first. A window nearing its count
        (an attack) keeps its first activities; a burst that petered out, or one view in
        a window that counts fifty, loses its own. Halving the set at a time keeps this
        rare: well under a thousandth of a counted match's cost."""
        samples, sampled, windows = self._samples, self._sampled, self._windows
        now = self._watermark_epoch

        def progress(key: str) -> float:
            window = windows.get(key)
            if window is None or window.newest + window.width <= now:
                return -1.0
            return window.progress()

        while len(samples) > MAX_HELD_SAMPLES and sampled:
            # Sorted is stable: among equals, the windows that began holding first.
            ranked = sorted(sampled, key=progress)
            for key in ranked[: max(1, len(ranked) // 2)]:
                del sampled[key]
                window = windows.get(key)
                if window is not None:
                    window.forget_samples(samples)
                    # Stored without them, so a process that loads it agrees.
                    self._changed_windows.add(key)

    def _sweep(self, now: float) -> None:
        """Drop from memory the windows whose every entry is older than their width: what
        a later match on the key would evict anyway (their stored rows expire with them).
        Bounds memory by the keys active lately."""
        self._swept = now
        gone = [k for k, w in self._windows.items() if w.newest + w.width <= now]
        for key in gone:
            self._windows.pop(key).release(self._samples)
            self._sampled.pop(key, None)

    # -- matches ----------------------------------------------------------------------

    def process(self, match: Match) -> list[AlertChange]:
        """The alert changes one match causes. New values and sequences decide first, so
        a match that changes nothing is never rendered (no title, no dedup key)."""
        rule = match.rule
        counted: list[ActivityRecord] | Counted | None = None
        if rule.new_value is not None:
            if not self._is_new(match):
                return []
        elif rule.sequence is not None:
            counted = self._advance_sequence(match)
            if counted is None:
                return []
        key = f"detection\x1f{rule.id}\x1f{match.dedup_key}"
        threshold = rule.threshold
        if threshold is not None and not threshold.anchored:
            counted = self._count(key, match)
            if counted is None:
                return []
        return self._dedup(key, match, rule, counted or [match.activity])

    def learner(self, rule: Rule) -> Callable[[Any, Any, float], None]:
        """`learn_from: all` for one rule: a function that remembers a value for its key
        (`NewValue.values` of an activity the rule did not match) at an activity's epoch.
        It runs on nearly every activity, so the usual case, a value stored as seen in this
        span of event time (`LAST_SEEN_SLACK`) or a later one, is answered from memory in
        one closure."""
        spec = rule.new_value
        assert spec is not None
        slack = spec.forget_seconds * LAST_SEEN_SLACK
        seen_lately = self._seen_lately
        remember = self._remember
        rule_id = rule.id

        def learn(per: Any, value: Any, now: float) -> None:
            if type(value) is type(per) is str:
                last = seen_lately.get((rule_id, per, value))
                if last is not None and now // slack <= last // slack:
                    return
            remember(rule, per, value, now)

        return learn

    def rule_error(
        self, rule: Rule, activity: ActivityRecord, failure: RuleFailure
    ) -> list[AlertChange]:
        """An exception in a rule: one `rule_error` alert per rule per hour of event time."""
        context: dict[str, Any] = {
            "error_type": failure.error_type,
            "error": failure.message[:1000],
            "rule_file": str(rule.path),
        }
        if failure.location is not None:
            context["location"] = failure.location
        key = f"rule_error\x1f{rule.id}"
        alert_key = f"{rule.id}#rule_error"
        existing = self._open_alert(key, activity.created_at)
        if existing is not None:
            existing.add(activity)
            return [self._save(key, existing, "joined")]
        opened = activity.created_at
        alert = Alert(
            alert_id=alert_id_for(alert_key, "rule_error", opened, self.scope),
            kind="rule_error",
            rule_id=rule.id,
            rule_name=rule.name,
            severity=RULE_ERROR_SEVERITY,
            title=f"Rule {rule.id} raised {failure.error_type}: {failure.message[:200]}",
            dedup_key="rule_error",
            opened_at=opened,
            window_end=opened + RULE_ERROR_WINDOW,
            description="The rule failed on an activity; it may be missing attacks until "
            "it is fixed. The activity it failed on is attached.",
            runbook="1. Open the rule file named in the context.\n"
            "2. Reproduce with `detect test` using the attached activity as a test event.\n"
            "3. Fix the rule to handle this shape of activity, then `detect validate`.",
            context=context,
        )
        alert.add(activity)
        return [self._new(key, alert)]

    def raise_alert(
        self,
        *,
        kind: str,
        rule_id: str,
        name: str,
        severity: str,
        title: str,
        dedup_key: str,
        at: datetime,
        description: str,
        runbook: str,
        tags: list[str],
        context: dict[str, Any],
    ) -> AlertChange:
        """An alert no rule raises (source health): opened and final at `at`, with no
        activity to quote (the detection time stands in for event time, so the outbox
        orders it where it happened), written to the outbox with the next commit and owed
        a notification. Its id is stable for (rule, dedup key, time)."""
        alert = Alert(
            alert_id=alert_id_for(rule_id, dedup_key, at, self.scope),
            kind=kind,
            rule_id=rule_id,
            rule_name=name,
            severity=severity,
            title=title,
            dedup_key=dedup_key,
            opened_at=at,
            window_end=at,
            description=description,
            runbook=runbook,
            tags=tags,
            context=context,
            first_event_at=at,
            last_event_at=at,
        )
        self.store.save_alert(alert.to_state(), notify=True)
        return AlertChange("opened", alert)

    # -- internals --------------------------------------------------------------------

    def _load(self, key: str) -> Alert | None:
        """The key's current alert: from memory, else from the store (after a restart)."""
        alert = self._open.get(key)
        if alert is None:
            state = self.store.get(ALERTS, key)
            if state is None:
                return None
            alert = self._open[key] = Alert.from_state(state)
        return alert

    def _take(self, key: str, alert_id: str | None = None) -> Alert | None:
        """Remove the key's alert (when it is `alert_id`), writing its final state to the
        outbox first; the alert, as a copy sinks may keep."""
        alert = self._load(key)
        if alert is None or (alert_id is not None and alert.alert_id != alert_id):
            return None
        if key in self._dirty:
            _, notify = self._dirty.pop(key)
            if not alert.pending:
                self.store.save_alert(alert.to_state(), notify=notify)
        del self._open[key]
        self.store.delete(ALERTS, key)
        return alert

    def _open_alert(self, key: str, moment: datetime) -> Alert | None:
        alert = self._load(key)
        if alert is None or moment >= alert.window_end:
            return None
        return alert

    def _save(self, key: str, alert: Alert, change: str) -> AlertChange:
        """Record a change; the alert is written at the next flush (once per commit, however
        many activities joined it). Sinks get a copy of an opened alert, which later joins
        do not change."""
        previous = self._dirty.get(key)
        notify = change == "opened" or (previous is not None and previous[1])
        self._open[key] = alert
        self._dirty[key] = (alert, notify)
        return AlertChange(change, alert.snapshot() if change == "opened" else alert)

    def _new(self, key: str, alert: Alert) -> AlertChange:
        heapq.heappush(self._closing, (_epoch(alert.window_end), key, alert.alert_id))
        return self._save(key, alert, "opened")

    def _dedup(
        self, key: str, match: Match, rule: Rule, activities: list[ActivityRecord] | Counted
    ) -> list[AlertChange]:
        moment = match.activity.created_at
        existing = self._open_alert(key, moment)
        if existing is not None:
            existing.add(match.activity)
            if existing.pending and existing.event_count >= rule.threshold.count:
                existing.pending = False
                return [self._save(key, existing, "opened")]
            change = self._save(key, existing, "joined")
            return [] if existing.pending else [change]
        changes: list[AlertChange] = []
        previous = self._take(key)
        if previous is not None and not previous.pending:
            # Its window has passed but event time has not closed it yet (a late batch).
            changes.append(AlertChange("closed", previous))
        alert = Alert(
            alert_id=alert_id_for(rule.id, match.dedup_key, moment, self.scope),
            kind="detection",
            rule_id=rule.id,
            rule_name=rule.name,
            severity=match.severity,
            title=match.title,
            dedup_key=match.dedup_key,
            opened_at=moment,
            window_end=moment + rule.dedup_window,
            description=match.description or rule.description,
            runbook=match.runbook,
            reference=match.reference or rule.reference,
            tags=list(rule.tags),
            mitre=list(rule.mitre),
            context=match.context,
            destinations=match.destinations,
        )
        if isinstance(activities, Counted):
            for activity in activities.samples:
                alert.add(activity)
            alert.event_count = activities.count
            alert.first_event_at = _from_epoch(activities.first)
            alert.last_event_at = max(alert.last_event_at or moment, _from_epoch(activities.last))
        else:
            for activity in activities:
                alert.add(activity)
        threshold = rule.threshold
        if threshold is not None and threshold.anchored and alert.event_count < threshold.count:
            alert.pending = True
            heapq.heappush(self._closing, (_epoch(alert.window_end), key, alert.alert_id))
            self._save(key, alert, "opened")
            return changes
        changes.append(self._new(key, alert))
        return changes

    def _remember(self, rule: Rule, per: Any, value: Any, now: float) -> bool:
        """Record `value` for `per`; True when it is new (unseen, or unseen for `forget`)
        and the key already had a baseline (or the rule alerts on first values)."""
        spec = rule.new_value
        assert spec is not None
        forget = spec.forget_seconds
        span = forget * LAST_SEEN_SLACK
        if type(value) is type(per) is str:
            last = self._seen_lately.get((rule.id, per, value))
            if last is not None and now // span <= last // span:
                return False  # stored as seen in this span: what follows changes nothing
        key = f"{rule.id}\x1f{per if type(per) is str else _text(per)}"
        text = value if type(value) is str else _text(value)
        seen: dict[str, float] | None = self.store.get(SEEN, key)
        if seen is None:
            seen = {}
        last = seen.get(text)
        if last is not None and now - last < forget:
            # The common case: a known value seen again. Its last-seen time is moved on
            # only in a later span (`LAST_SEEN_SLACK`) than the stored one, which spares a
            # state write per activity at the price of forgetting up to 1% early.
            if now // span > last // span:
                seen[text] = last = now
                self.store.put(SEEN, key, seen, expires=now + forget)
            self._note_seen_lately(rule, per, value, last)
            return False
        # Values unseen for `forget` are gone, as if never seen (and from the memo, where
        # a late activity could still find them).
        fresh = {v: t for v, t in seen.items() if now - t < forget}
        if len(fresh) < len(seen) and type(per) is str:
            for gone in seen.keys() - fresh.keys():
                self._seen_lately.pop((rule.id, per, gone), None)
        is_new = bool(fresh) or spec.alert_on_first
        fresh[text] = now
        if len(fresh) > MAX_VALUES_PER_KEY:
            oldest = sorted(fresh, key=fresh.__getitem__)[: len(fresh) - MAX_VALUES_PER_KEY]
            for dropped in oldest:
                del fresh[dropped]
            self._seen_lately.clear()  # it may name a dropped value
            log.warning(
                "rule %s: key %r holds over %d values; forgot the %d least recently seen",
                rule.id,
                _text(per)[:100],
                MAX_VALUES_PER_KEY,
                len(oldest),
            )
        self.store.put(SEEN, key, fresh, expires=max(fresh.values()) + forget)
        self._note_seen_lately(rule, per, value, now)
        return is_new

    def _note_seen_lately(self, rule: Rule, per: Any, value: Any, now: float) -> None:
        """Remember in memory that `value` was stored as seen at `now`, so `learn` can skip
        it, without building its key or reading the store, until its time needs moving."""
        if type(value) is type(per) is str:
            seen_lately = self._seen_lately
            if len(seen_lately) >= MAX_SEEN_LATELY:
                for old in list(itertools.islice(seen_lately, MAX_SEEN_LATELY // 10)):
                    del seen_lately[old]  # the oldest noted tenth: a bounded memo
            seen_lately[(rule.id, per, value)] = now

    def _is_new(self, match: Match) -> bool:
        return self._remember(
            match.rule, match.new_value_key, match.new_value, match.activity.epoch
        )

    def _advance_sequence(self, match: Match) -> list[ActivityRecord] | None:
        """Move partial sequences on with this activity; the steps' activities when it
        completes one. Partial state per correlation value: for each step reached, the
        latest start and the activities so far (the latest start lives longest)."""
        rule = match.rule
        spec = rule.sequence
        assert spec is not None
        last_step = len(spec.steps) - 1
        within = spec.within.total_seconds()
        now = match.activity.epoch
        raw = match.activity.raw
        # Later steps first, so one activity cannot satisfy two steps of one sequence; the
        # reset (-1) last, so an activity that completes a sequence still completes it.
        for index, value in sorted(match.steps, reverse=True):
            key = f"{rule.id}\x1f{_text(value)}"
            if index == -1:
                self.store.delete(PARTIALS, key)
                continue
            partials: dict[str, list[Any]] = self.store.get(PARTIALS, key) or {}
            if index == 0:
                if last_step == 0:
                    return [match.activity]
                current = partials.get("0")
                if current is None or current[0] <= now:
                    partials["0"] = [now, now, [raw]]
            else:
                previous = partials.get(str(index - 1))
                if previous is None:
                    continue
                start, reached, events = previous
                if now < reached or now - start >= within:
                    continue
                if index == last_step:
                    self.store.delete(PARTIALS, key)
                    return [parse_activity(e) for e in [*events, raw]]
                current = partials.get(str(index))
                if current is None or current[0] <= start:
                    partials[str(index)] = [start, now, [*events, raw]]
            live = {k: p for k, p in partials.items() if now - p[0] < within}
            if live:
                newest = max(p[0] for p in live.values())
                self.store.put(PARTIALS, key, live, expires=newest + within)
            else:
                self.store.delete(PARTIALS, key)
        return None

    def _fetch_samples(self, window: Window) -> None:
        """The stored samples a window loaded from the store names (one read each; the
        stores answer a key never written without asking)."""
        samples = self._samples
        for _, _, name in window.live():
            if name is not None and name not in samples:
                saved = self.store.get(HELD_SAMPLES, name)
                if saved is not None:
                    # JSON text; stores written before that hold the decoded activity.
                    samples[name] = saved.encode() if isinstance(saved, str) else to_json(saved)

    def _count(self, key: str, match: Match) -> Counted | None:
        """Add the match to its sliding window; the counted activities when it completes
        the threshold, else None."""
        threshold = match.rule.threshold
        assert threshold is not None
        activity = match.activity
        window = self._windows.get(key)
        if window is None:
            width = threshold.window.total_seconds()
            stored = self.store.get(COUNTERS, key) or []
            if stored and stored[-1][0] + width <= activity.epoch:
                stored = []  # all of it has slid out of the window (the usual case)
            window = self._windows[key] = Window(
                stored, width, threshold.count, threshold.distinct is not None
            )
            if window.held:  # names samples an earlier process stored
                self._sampled[key] = None
                self._fetch_samples(window)
        distinct = match.distinct_value
        if (
            type(distinct) is not str
            and distinct is not None
            and not isinstance(distinct, int | float)  # bool is an int
        ):
            distinct = repr(distinct)
        # The first few entries of a window name a sample activity, held in memory and
        # stored once, in its own row, with the commit that stores the entry naming it:
        # writing activities into the counter would rewrite kilobytes per busy key at every
        # commit. A process that takes the window over (a restart, a crash, another worker)
        # fetches them, so the alert's events and the indicators taken from them are those
        # of an uninterrupted run. The row goes when the sample leaves memory.
        sample = None
        samples = self._samples
        if window.held < MAX_SAMPLE_EVENTS:
            # Named per rule: two thresholds counting one activity each hold it, and each
            # window drops its own when it slides on.
            number = self._rule_numbers.setdefault(match.rule.id, len(self._rule_numbers))
            sample = f"{activity.id}:{number}"
            # Encoded: a quarter of the memory of the decoded mapping (and free when the
            # reader kept the activity's own line).
            raw = samples[sample] = activity.text or to_json(activity.raw)
            self._sampled[key] = None
            self.store.put(
                HELD_SAMPLES, sample, raw.decode(), expires=activity.epoch + window.width
            )
        full = window.add([activity.epoch, distinct, sample], samples)
        self._changed_windows.add(key)
        counted = None
        if full is not None:
            counted = [
                parse_activity(from_json(samples[name]))
                for _, _, name in full
                if name is not None and name in samples
            ]
            if sample is None:
                counted.append(activity)  # the activity that completed the count
        if len(samples) > MAX_HELD_SAMPLES:
            self._shed_samples()
        if counted is None:
            return None
        assert full is not None
        return Counted(counted, len(full), full[0][0], full[-1][0])
