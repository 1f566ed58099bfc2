"""The stages after the source: activity → evaluator → correlator → store → sinks.

`engine/runs/build.py` builds it for every mode (`detect run`, `detect replay`, the
rule-test runner and the benchmarks), so the alerts a test sees are the alerts
production raises.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from engine.activity import ActivityRecord, format_timestamp
from engine.correlation.correlator import AlertChange, Correlator
from engine.detection.evaluator import Evaluator, Learned
from engine.detection.failures import RuleFailure
from engine.detection.functions import NamedLists
from engine.detection.loader import RuleSet
from engine.detection.rule import Match, Rule
from engine.sources.files import ReadError, Rejected
from engine.state.store import StateStore

Sink = Callable[[AlertChange], None]
# How far behind event time expired state is purged: generous, so late activities within
# the reorder window still find their counters.
PURGE_LAG = timedelta(days=1)


def learn_lists(lists: NamedLists, rule: Rule, record: ActivityRecord) -> list[RuleFailure]:
    """Apply a matched rule's `learn` entries to the named lists; the failures of the
    paths that could not be read."""
    failures = []
    for learn in rule.learn:
        try:
            value = learn.value(record.raw)
        except Exception as error:  # noqa: BLE001 - a path's function failed on data
            failures.append(RuleFailure.of(error))
            continue
        lists.learn(learn.list_name, value, learn.add)
    return failures


def collect_less() -> None:
    """Tune Python's cycle collector for a long stream, before the first activity.

    Activities wait in the reorder buffer and state lives for minutes, so most of what a
    stream allocates survives a young collection and is scanned again by every older one:
    with the default thresholds the collector took about 7% of a replay. What the engine
    allocates per activity holds no reference cycles, so reference counting frees it
    anyway; the collector is left for the rare cycle (an exception's traceback), run a
    hundred times less often, and what is loaded before the stream (rules, modules) is
    moved out of its sight for good.
    """
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


@dataclass
class Stats:
    activities: int = 0
    rejected: int = 0
    matches: int = 0
    rule_errors: int = 0
    alerts_by_severity: Counter[str] = field(default_factory=Counter)
    alerts_by_rule: Counter[str] = field(default_factory=Counter)
    matches_by_rule: Counter[str] = field(default_factory=Counter)
    # Rule failures per rule id (`rule_errors` is their sum); counted only on failure.
    errors_by_rule: Counter[str] = field(default_factory=Counter)
    # What reading a finite input found (engine/sources/files.py `ReadReport`), filled
    # in by the replay: inputs that broke half-way, duplicate ids dropped, activities
    # that came back in time past the reorder buffer; and, for a replay that keeps its
    # windows open (`suspend`), the alerts left open in the state store.
    read_errors: list[ReadError] = field(default_factory=list)
    duplicates: int = 0
    backwards: int = 0
    still_open: int = 0

    @property
    def alerts(self) -> int:
        return sum(self.alerts_by_severity.values())


class Pipeline:
    def __init__(
        self,
        ruleset: RuleSet,
        store: StateStore,
        sinks: Iterable[Sink] = (),
        on_rejected: Callable[[Rejected], None] | None = None,
        commit_every: int = 1000,
        scope: str = "",
    ) -> None:
        self.ruleset = ruleset
        self.store = store
        self.evaluator = Evaluator(ruleset)
        self.correlator = Correlator(store, scope)
        # What each `learn_from: all` rule remembers its values with, in the order of
        # `Evaluator.learners` (the indexes `Evaluator.learned` gives).
        self._learn = [self.correlator.learner(rule) for rule in self.evaluator.learners]
        ruleset.lists.attach(store)
        self.sinks = list(sinks)
        self.on_rejected = on_rejected
        self.commit_every = commit_every
        self.stats = Stats()
        self._since_commit = 0
        self._last_purge: float | None = None
        # Moves on with every activity correlated and every commit: a watchdog thread of
        # the live run compares it over time to see a stalled pipeline.
        self.progress = 0
        # Optional observer of correlation (`detect noise`): called with each match and
        # the alert changes it caused ([] when none, None for a rule with `alert: false`).
        # Unset, it costs one test per match.
        self.on_match: Callable[[Match, list[AlertChange] | None], None] | None = None

    def _emit(self, changes: Iterable[AlertChange]) -> None:
        for change in changes:
            if change.change == "opened":
                alert = change.alert
                self.stats.alerts_by_severity[alert.severity] += 1
                self.stats.alerts_by_rule[alert.rule_id] += 1
            for sink in self.sinks:
                sink(change)

    def process(self, record: ActivityRecord | Rejected) -> None:
        """Evaluate one activity (or count one rejected record)."""
        if type(record) is Rejected:
            self.reject(record)
            return
        epoch = record.epoch
        self.advance(epoch)  # the alerts its time closes go out before anything of its own
        evaluator = self.evaluator
        matches, errors = evaluator.evaluate(record)
        failures = [(rule, RuleFailure.of(error)) for rule, error in errors] if errors else ()
        self.correlate(epoch, record, matches, failures, evaluator.learned(record, matches))

    def advance(self, epoch: float) -> None:
        """Move event time to `epoch` (an activity's, before it is evaluated), emitting the
        alerts whose windows it closes."""
        closed = self.correlator.advance(epoch)
        if closed:
            self._emit(closed)

    def reject(self, rejected: Rejected) -> None:
        self.stats.rejected += 1
        if self.on_rejected is not None:
            self.on_rejected(rejected)

    def correlate(
        self,
        epoch: float,
        record: ActivityRecord | None,
        matches: Sequence[Match],
        failures: Iterable[tuple[Rule, RuleFailure]],
        learned: Iterable[Learned],
    ) -> None:
        """Everything after evaluation, for one activity: event time moved on to `epoch`
        (if `advance` has not already), its matches, its rules' failures and its
        `learn_from: all` values (`Evaluator.learned`) turned into state and alert
        changes. Also what the correlating process runs for activities another process
        evaluated (engine/runs/forked.py), where `record` is None when nothing needs
        more than the time."""
        stats = self.stats
        stats.activities += 1
        correlator = self.correlator
        closed = correlator.advance(epoch)
        if closed:
            self._emit(closed)
        for rule, failure in failures:
            assert record is not None
            stats.rule_errors += 1
            stats.errors_by_rule[rule.id] += 1
            self._emit(correlator.rule_error(rule, record, failure))
        if matches:
            assert record is not None
            self._matched(record, matches)
        for found in learned:
            if len(found) == 3:
                self._learn[found[0]](found[1], found[2], epoch)
            else:
                assert record is not None
                stats.rule_errors += 1
                rule = self.evaluator.learners[found[0]]
                stats.errors_by_rule[rule.id] += 1
                self._emit(correlator.rule_error(rule, record, found[1]))
        self._since_commit += 1
        self.progress += 1
        if self._since_commit >= self.commit_every:
            self.commit()

    def _matched(self, record: ActivityRecord, matches: Sequence[Match]) -> None:
        stats = self.stats
        by_rule = stats.matches_by_rule
        observe = self.on_match
        for match in matches:
            rule = match.rule
            stats.matches += 1
            by_rule[rule.id] += 1
            changes = None
            if rule.alert:
                try:
                    changes = self.correlator.process(match)
                except Exception as error:  # noqa: BLE001 - the rule's title()/dedup() failed
                    stats.rule_errors += 1
                    stats.errors_by_rule[rule.id] += 1
                    changes = self.correlator.rule_error(rule, record, RuleFailure.of(error))
                if changes:
                    self._emit(changes)
            if observe is not None:
                observe(match, changes)
            if rule.learn:
                for failure in learn_lists(self.ruleset.lists, rule, record):
                    stats.rule_errors += 1
                    stats.errors_by_rule[rule.id] += 1
                    self._emit(self.correlator.rule_error(rule, record, failure))

    def run(self, records: Iterable[ActivityRecord | Rejected]) -> Stats:
        for record in records:
            self.process(record)
        self.commit()
        return self.stats

    def commit(self) -> None:
        """Make state, alerts and checkpoint durable together; purge expired state daily."""
        self._since_commit = 0
        self.correlator.flush()
        watermark = self.correlator.watermark
        if watermark is not None:
            # Event time reached so far: the dispatcher closes alert windows against it.
            self.store.set_meta("watermark", format_timestamp(watermark))
            now = watermark.timestamp()
            if self._last_purge is None or now - self._last_purge > PURGE_LAG.total_seconds():
                self.store.purge(now - PURGE_LAG.total_seconds())
                self._last_purge = now
        self.store.commit()
        self.progress += 1

    def idle(self, budget: float) -> float:
        """This side has had `budget` seconds with nothing to correlate lately: let the
        store do housekeeping of about that cost; the seconds it took."""
        return self.store.idle(budget)

    def suspend(self) -> Stats:
        """A clean stop: commit, so the next process on the same store resumes exactly
        here (every commit stores all it needs: a crash after one resumes there too)."""
        self.commit()
        return self.stats

    def open_alerts(self) -> int:
        """How many alerts are open (their windows not yet passed in event time)."""
        return self.correlator.open_alerts()

    def finish(self) -> Stats:
        """End of a finite input: close every open alert so sinks see final counts. (A
        replay whose state is kept for the next one suspends instead, and its open
        windows close when a later replay's event time passes them.)"""
        self._emit(self.correlator.close_all())
        return self.suspend()
