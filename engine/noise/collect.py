"""What `detect noise` measures: a replay through the real pipeline, the alerts it raised,
and, with attack labels, which labelled activities each alerting match consumed.

Nothing here evaluates or correlates: the feed goes through `Pipeline` exactly as in
`detect replay`, and `MatchLog` watches `Pipeline.on_match` (each match and the alert
changes it caused). An alert's `events` are a sample of ten; the match log is what tells
which activities an alert took in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from engine.activity import ActivityRecord
from engine.correlation.correlator import AlertChange
from engine.detection.loader import RuleSet
from engine.detection.rule import Match, Rule
from engine.errors import InputError
from engine.pipeline import Stats
from engine.sources.files import Rejected

# What became of a match. `counted`: a threshold or sequence match that raised nothing
# itself but was in the window (or among the steps) of an alert a later match opened or
# joined. Matches that opened, joined or were counted are in an alert; `suppressed` ones
# (below a threshold, a step of an unfinished sequence, a value already seen) are not.
OPENED, JOINED, COUNTED, SUPPRESSED, LEARNED, ERROR = (
    "opened",
    "joined",
    "counted",
    "suppressed",
    "learned",
    "error",
)
IN_ALERT = frozenset({OPENED, JOINED, COUNTED})


@dataclass(frozen=True)
class Instance:
    """One attack instance from a labels file."""

    instance: str
    kind: str
    organization_id: str | None
    activity_ids: tuple[str, ...]
    key_activity_id: str | None
    started_at: str | None
    description: str


@dataclass
class Labels:
    instances: list[Instance]
    # activity id -> indexes into `instances` (an activity may belong to several)
    by_activity: dict[str, list[int]]


def _labels_error(path: str, line: int, message: str) -> InputError:
    return InputError(f"{path}:{line}: {message}")


def load_labels(path: str | Path) -> Labels:
    """Attack labels, JSON Lines, one instance per line; `InputError` when the file cannot
    be read or a line is not a label."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read labels {name}: {error}") from error
    instances: list[Instance] = []
    by_activity: dict[str, list[int]] = {}
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as error:
            raise _labels_error(name, number, f"not JSON: {error.msg}") from error
        if not isinstance(doc, dict):
            raise _labels_error(name, number, "a label is a JSON object")
        ident, kind = doc.get("instance"), doc.get("kind")
        ids = doc.get("activity_ids")
        key = doc.get("key_activity_id")
        if not isinstance(ident, str) or not ident:
            raise _labels_error(name, number, "`instance` must be a non-empty string")
        if not isinstance(kind, str) or not kind:
            raise _labels_error(name, number, "`kind` must be a non-empty string")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise _labels_error(name, number, "`activity_ids` must be a list of strings")
        if key is not None and not isinstance(key, str):
            raise _labels_error(name, number, "`key_activity_id` must be a string or null")
        if ident in seen:
            raise _labels_error(name, number, f"instance {ident} repeats line {seen[ident]}")
        seen[ident] = number
        org = doc.get("organization_id")
        started = doc.get("started_at")
        index = len(instances)
        instances.append(
            Instance(
                instance=ident,
                kind=kind,
                organization_id=org if isinstance(org, str) else None,
                activity_ids=tuple(dict.fromkeys(ids)),
                key_activity_id=key,
                started_at=started if isinstance(started, str) else None,
                description=str(doc.get("description") or ""),
            )
        )
        for activity_id in instances[-1].activity_ids:
            by_activity.setdefault(activity_id, []).append(index)
        if key is not None and key not in instances[-1].activity_ids:
            by_activity.setdefault(key, []).append(index)
    return Labels(instances, by_activity)


@dataclass(frozen=True)
class AlertSummary:
    """What the report keeps of a final alert (not its events)."""

    alert_id: str
    kind: str
    rule_id: str
    severity: str
    dedup_key: str
    title: str
    event_count: int


class AlertCollector:
    """A pipeline sink: each alert once, when final (as `detect replay` prints them)."""

    def __init__(self) -> None:
        self.alerts: list[AlertSummary] = []

    def __call__(self, change: AlertChange) -> None:
        if change.change == "closed":
            a = change.alert
            self.alerts.append(
                AlertSummary(
                    a.alert_id, a.kind, a.rule_id, a.severity, a.dedup_key, a.title, a.event_count
                )
            )


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


class MatchLog:
    """`Pipeline.on_match` for labelled feeds: for every match on a labelled activity,
    `[rule id, activity id, outcome, alert id or None]`, and the alerts that took in a
    labelled activity.

    The matches on unlabelled activities are looked at only to find out whether they
    opened or joined an alert that earlier labelled matches of the same threshold key (or
    sequence value) were counted into; they are not kept.
    """

    def __init__(self, labelled: dict[str, list[int]] | set[str] | frozenset[str]) -> None:
        self.labelled = labelled
        self.records: list[list[Any]] = []
        self.touched: set[str] = set()  # alert ids that took in a labelled activity
        # Labelled matches that raised nothing yet, by (rule id, threshold key or sequence
        # value): [(epoch, record)], for a later alert to count in.
        self._pending: dict[tuple[str, str], list[tuple[float, list[Any]]]] = {}

    def __call__(self, match: Match, changes: list[AlertChange] | None) -> None:
        rule = match.rule
        activity = match.activity
        labelled = activity.id in self.labelled
        if changes is None:
            if labelled:
                self.records.append([rule.id, activity.id, LEARNED, None])
            return
        outcome, alert = SUPPRESSED, None
        for change in changes:
            if change.change in ("opened", "joined"):
                if change.alert.kind == "detection":
                    outcome, alert = change.change, change.alert
                    break
                outcome = ERROR
        if alert is not None:
            if labelled:
                self.records.append([rule.id, activity.id, outcome, alert.alert_id])
                self.touched.add(alert.alert_id)
            if self._pending and (rule.threshold is not None or rule.sequence is not None):
                self._count_in(match, rule, activity, alert.alert_id, alert.dedup_key, alert)
            return
        if labelled:
            record = [rule.id, activity.id, outcome, None]
            self.records.append(record)
            if outcome == SUPPRESSED:
                self._hold(match, rule, activity, record)
        if rule.sequence is not None and self._pending:
            for index, value in match.steps:
                if index == -1:  # a reset clears the value's partial sequences
                    self._pending.pop((rule.id, _text(value)), None)

    # -- threshold windows and sequence steps --------------------------------------------

    def _keys(self, match: Match, rule: Rule, dedup_key: str | None) -> list[tuple[str, str]]:
        if rule.sequence is not None:
            return [(rule.id, _text(value)) for index, value in match.steps if index >= 0]
        if rule.threshold is not None and dedup_key is not None:
            return [(rule.id, dedup_key)]
        return []

    @staticmethod
    def _width(rule: Rule) -> float:
        if rule.sequence is not None:
            return rule.sequence.within.total_seconds()
        assert rule.threshold is not None
        if rule.threshold.anchored:
            return rule.dedup_window.total_seconds()
        return rule.threshold.window.total_seconds()

    def _hold(self, match: Match, rule: Rule, activity: ActivityRecord, record: list) -> None:
        if rule.threshold is None and rule.sequence is None:
            return
        dedup_key = None
        if rule.threshold is not None:
            try:
                dedup_key = match.dedup_key  # rendered (and kept) when it was counted
            except Exception:  # noqa: BLE001 - its failure is the rule's, reported already
                return
        horizon = activity.epoch - self._width(rule)
        for key in self._keys(match, rule, dedup_key):
            held = self._pending.setdefault(key, [])
            if held and held[0][0] < horizon:
                held[:] = [entry for entry in held if entry[0] >= horizon]
            held.append((activity.epoch, record))

    def _count_in(
        self,
        match: Match,
        rule: Rule,
        activity: ActivityRecord,
        alert_id: str,
        dedup_key: str,
        alert: Any,
    ) -> None:
        """An alert of a threshold or sequence rule opened or took in a match: the labelled
        matches held for its key within the window (from its opening, for an anchored
        threshold) were counted into it."""
        threshold = rule.threshold
        if threshold is not None and threshold.anchored:
            horizon = alert.opened_at.timestamp()
        else:
            horizon = activity.epoch - self._width(rule)
        for key in self._keys(match, rule, dedup_key):
            held = self._pending.pop(key, None)
            if not held:
                continue
            for epoch, record in held:
                if epoch >= horizon:
                    record[2], record[3] = COUNTED, alert_id
                    self.touched.add(alert_id)


@dataclass
class Measured:
    """Everything one noise run observed."""

    stats: Stats
    rules: list[Rule]
    alerts: list[AlertSummary]
    labels: Labels | None = None
    log: MatchLog | None = None
    labelled_read: set[str] = field(default_factory=set)  # labelled ids found in the feed


def measure(
    paths: Sequence[str],
    ruleset: RuleSet,
    labels: Labels | None = None,
    *,
    sort: bool = False,
    reorder_capacity: int = 10_000,
    err: IO[str] | None = None,
) -> Measured:
    """Replay `paths` through the rules in this process; raises `InputError` when an input
    cannot be read."""
    from engine.runs import build
    from engine.runs.replay import Quarantine

    collector = AlertCollector()
    quarantine = Quarantine(None, err) if err is not None else None
    pipeline = build.pipeline(ruleset, None, [collector], on_rejected=quarantine)
    log = None
    labelled_read: set[str] = set()
    records: Iterator[ActivityRecord | Rejected]
    records = build.file_source(paths, sort=sort, reorder_capacity=reorder_capacity)()
    if labels is not None:
        log = MatchLog(labels.by_activity)
        pipeline.on_match = log
        records = _noting(records, labels.by_activity, labelled_read)
    try:
        pipeline.run(records)
        stats = pipeline.finish()
    finally:
        if quarantine is not None:
            quarantine.close()
    return Measured(stats, list(ruleset.rules), collector.alerts, labels, log, labelled_read)


def _noting(
    records: Iterator[ActivityRecord | Rejected],
    labelled: dict[str, list[int]],
    found: set[str],
) -> Iterator[ActivityRecord | Rejected]:
    """The records as they are, noting which labelled activities the feed holds."""
    for record in records:
        if type(record) is not Rejected and record.id in labelled:
            found.add(record.id)
        yield record
