"""A loaded rule: its metadata, and its logic compiled into closures.

Everything that can fail on a rule's own text (paths, templates, operators, imports) has
already failed in the loader; what is left to fail at run time is the rule's Python code
and the data, and `evaluate` lets those exceptions through for the evaluator to turn into
`rule_error` alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from engine.activity import ActivityRecord, Event
from engine.detection import budget as timer
from engine.detection.failures import RuleFailed, RuleFailure
from engine.detection.operators import DataCheck, all_of

SEVERITIES = ("info", "low", "medium", "high", "critical")
# The log type the engine evaluates: a rule that names others is loaded but inactive.
LOG_TYPE = "Anthropic.Activity"
# Activity types remembered per rule with their compiled `evaluate` (others look it up).
MAX_RUNNERS = 4096
DataRender = Callable[[Mapping[str, Any]], Any]
# A rule's evaluation compiled for one activity type: (activity, event) -> match or None;
# the event is None for a rule without Python code (nothing reads it then).
Runner = Callable[[ActivityRecord, Event | None], "Match | None"]
StepHits = Callable[[Mapping[str, Any]], tuple[tuple[int, Any], ...]]


@dataclass(frozen=True)
class Threshold:
    count: int
    window: timedelta
    distinct: DataRender | None = None
    distinct_path: str | None = None
    # Panther's semantics: the window is the dedup window opened by the first match, and
    # the alert notifies once `count` matches have joined it (no sliding).
    anchored: bool = False


# Event time is cut in spans of this share of `forget` (from the epoch): a value's
# last-seen time is moved on only by its first sighting in a later span than the stored
# one (one state write per value per 1% of `forget`, not per activity). The correlator
# applies it when it stores values, and the evaluator when it hands `learn_from: all`
# values over, so a value repeated on every activity crosses to the correlator (and, in a
# two-process replay, the pipe) about once per span. Spans, not "1% stale since the last
# write": what the correlator stores then depends only on what it stored before and the
# activity, never on what a process remembers, so a restart (or a worker that takes an
# organization over) stores what an uninterrupted run stores.
LAST_SEEN_SLACK = 0.01


@dataclass(frozen=True)
class NewValue:
    """Fire on a value of `of` never seen (or unseen for `forget`) for the `per` key."""

    of: DataRender
    of_path: str
    per: DataRender | None
    per_path: str | None
    forget: timedelta
    learn_from: str = "matches"
    alert_on_first: bool = False
    # `learn_from` given as a list of activity types: learn from those (and the matches)
    # only, so a baseline that only some types can teach costs nothing on the others.
    learn_types: frozenset[str] | None = None

    @property
    def forget_seconds(self) -> float:
        return self.forget.total_seconds()


@dataclass(frozen=True)
class TypePin:
    """The `type` entry of a `match` that admits exactly `types`, and the checks of the
    rule (or step) without it: for an activity of one of those types they give the same
    result, one condition cheaper. `first`: the entry comes first, so an activity of any
    other type fails before any other check runs (and cannot raise)."""

    types: frozenset[str]
    checks: tuple[DataCheck, ...]
    first: bool


def _checks_for(
    pin: TypePin | None, activity_type: str | None, checks: list[DataCheck] | tuple[DataCheck, ...]
) -> tuple[DataCheck, ...] | None:
    """The checks that decide an activity of `activity_type` (any type: None); None when
    they cannot all hold on that type."""
    if pin is None or activity_type is None:
        return tuple(checks)
    if activity_type in pin.types:
        return pin.checks
    return None if pin.first else tuple(checks)


@dataclass(frozen=True)
class Step:
    checks: tuple[DataCheck, ...]
    by: DataRender
    by_path: str
    pin: TypePin | None = None


@dataclass(frozen=True)
class Sequence:
    """Ordered steps correlated on each step's `by` value, the last less than `within`
    after the first."""

    within: timedelta
    steps: tuple[Step, ...]
    reset: Step | None = None


@dataclass(frozen=True)
class Learn:
    """On a match, add the value at a path to a named list (or remove it)."""

    list_name: str
    value: DataRender
    add: bool


@dataclass(frozen=True)
class Rendered:
    """What an alert takes from the activity that matched: title, dedup key and the rest."""

    title: str
    dedup_key: str
    severity: str
    context: dict[str, Any]
    destinations: list[str] | None
    runbook: str
    # Per-event text from the rule's code (Panther's description()/reference()); None:
    # the rule's own.
    description: str | None = None
    reference: str | None = None


class Match:
    """A rule that held on an activity. What the alert needs from it is rendered on first
    use: a threshold counting below its count, or a sequence waiting for its next step,
    never renders a title (and never runs the rule's title() code) for nothing. Give the
    outputs as keywords to render eagerly; without them the rule renders them from the
    activity (and `event`, what its Python code reads)."""

    __slots__ = (
        "_dedup",
        "_event",
        "_rendered",
        "activity",
        "distinct_value",
        "new_value",
        "new_value_key",
        "rule",
        "steps",
    )

    def __init__(
        self,
        rule: Rule,
        activity: ActivityRecord,
        event: Event | None = None,
        distinct_value: Any = None,
        new_value: Any = None,
        new_value_key: Any = None,
        steps: tuple[tuple[int, Any], ...] = (),
        **outputs: Any,
    ) -> None:
        self.rule = rule
        self.activity = activity
        self.distinct_value = distinct_value
        # new_value rules: the value and its key; sequence rules: (step index, by value).
        self.new_value = new_value
        self.new_value_key = new_value_key
        self.steps = steps
        self._event = event
        self._rendered = Rendered(**outputs) if outputs else None
        # The dedup key alone is needed for every match a threshold counts; the rest only
        # when an alert opens. (A `RuleFailed` when it failed in another process.)
        self._dedup: str | RuleFailed | None = None

    def to_wire(self, number: int, keyed: bool) -> tuple[Any, ...]:
        """The match as it crosses to another process (engine/runs/forked.py): the rule's
        `number` there, the values the rule computed, and, for a rule whose every match
        needs its dedup key (`keyed`, a threshold), that key rendered here unless the
        outputs already were; its failure crosses as a `RuleFailure`."""
        dedup: str | RuleFailure | None = None
        rendered = self._rendered
        if keyed and rendered is None:
            try:
                dedup = self._render_dedup()
            except Exception as error:  # noqa: BLE001 - the other process reports it
                dedup = RuleFailure.of(error)
        return (
            number,
            self.distinct_value,
            self.new_value,
            self.new_value_key,
            self.steps,
            dedup,
            rendered,
        )

    @classmethod
    def from_wire(
        cls, rule: Rule, activity: ActivityRecord, event: Event | None, fields: tuple[Any, ...]
    ) -> Match:
        """The match `to_wire` sent, for `rule` (the rule its number names here)."""
        _, distinct, new_value, key, steps, dedup, rendered = fields
        match = cls(rule, activity, event, distinct, new_value, key, steps)
        match._dedup = RuleFailed(dedup) if type(dedup) is RuleFailure else dedup
        match._rendered = rendered
        return match

    @property
    def rendered(self) -> Rendered:
        """The outputs; may raise what the rule's code raises (a rule error)."""
        rendered = self._rendered
        if rendered is None:
            rule = self.rule
            if rule.runs_code:  # its hooks: timed, and their `BaseException`s kept in
                rendered = timer.guarded(rule.render, rule.budget, self.activity, self._event)
            else:
                rendered = rule.render(self.activity, self._event)
            self._rendered = rendered
        return rendered

    def _render_dedup(self) -> str:
        rule = self.rule
        if rule.runs_code:
            return timer.guarded(rule.render_dedup, rule.budget, self.activity, self._event)
        return rule.render_dedup(self.activity, self._event)

    @property
    def title(self) -> str:
        return self.rendered.title

    @property
    def dedup_key(self) -> str:
        if self._rendered is None:
            dedup = self._dedup
            if dedup is None:
                dedup = self._dedup = self._render_dedup()
            elif type(dedup) is not str:  # its rendering failed in the evaluating process
                raise dedup
            return dedup
        return self._rendered.dedup_key

    @property
    def severity(self) -> str:
        return self.rendered.severity

    @property
    def context(self) -> dict[str, Any]:
        return self.rendered.context

    @property
    def destinations(self) -> list[str] | None:
        return self.rendered.destinations

    @property
    def runbook(self) -> str:
        return self.rendered.runbook

    @property
    def description(self) -> str | None:
        return self.rendered.description

    @property
    def reference(self) -> str | None:
        return self.rendered.reference


@dataclass
class Rule:
    id: str
    name: str
    severity: str
    path: Path
    description: str = ""
    runbook: str = ""
    reference: str = ""
    tags: list[str] = field(default_factory=list)
    mitre: list[str] = field(default_factory=list)
    log_types: list[str] = field(default_factory=lambda: ["Anthropic.ActivityRecord"])
    enabled: bool = True
    types: frozenset[str] | None = None
    checks: list[DataCheck] = field(default_factory=list)
    pin: TypePin | None = None
    module: ModuleType | None = None
    title_template: DataRender | None = None
    dedup_template: DataRender | None = None
    dedup_window: timedelta = timedelta(hours=1)
    threshold: Threshold | None = None
    new_value: NewValue | None = None
    sequence: Sequence | None = None
    learn: list[Learn] = field(default_factory=list)
    alert: bool = True
    context_paths: dict[str, DataRender] = field(default_factory=dict)
    destinations: list[str] | None = None
    tests: list[Any] = field(default_factory=list)
    document: Any = None
    # Seconds the rule's code may take on one activity (`time_budget`); None: the
    # engine's default (engine/detection/budget.py).
    time_budget: float | None = None
    _code: bool | None = field(default=None, init=False, repr=False, compare=False)
    # `evaluate` compiled per activity type, on first use (see `runner`).
    _runners: dict[str | None, Runner | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def needs_event(self) -> bool:
        """Whether evaluating reads the `Event` view (a rule with Python code does)."""
        return self.module is not None

    @property
    def runs_code(self) -> bool:
        """Whether evaluating or rendering runs code of the rule's own (Python hooks, a
        format's own `evaluate`), which the evaluator times and guards."""
        code = self._code
        if code is None:
            code = self._code = (
                self.module is not None
                or self.needs_event
                or getattr(self.evaluate, "__func__", None) is not Rule.evaluate
                or type(self).render is not Rule.render
            )
        return code

    @property
    def budget(self) -> float:
        """The rule's time budget per activity, in seconds."""
        return self.time_budget if self.time_budget is not None else timer.settings.budget

    def _hook(self, name: str) -> Callable[[Event], Any] | None:
        return getattr(self.module, name, None) if self.module is not None else None

    def evaluate(self, activity: ActivityRecord, event: Event | None) -> Match | None:
        """The match of this rule on an activity, or None; raises what the rule's code or
        a path function raises. `event` may be None for a rule without Python code. The
        rule's code is timed, and its `BaseException`s (`SystemExit`...) are raised as
        `RuleAborted` (engine/detection/budget.py): callers catch `Exception`."""
        run = self._compiled(activity.type)
        if run is None:
            return None
        if self.module is not None:
            return timer.guarded(run, self.budget, activity, event)
        return run(activity, event)

    def runner(self, activity_type: str | None = None) -> Runner | None:
        """What the evaluator runs on activities of `activity_type` (of any type: None):
        `evaluate` compiled for that type, or None when the rule cannot hold on it. An
        `evaluate` of a subclass (a Panther rule) or set on the instance (the per-rule
        timer of `detect bench`) is run as it is."""
        if getattr(self.evaluate, "__func__", None) is not Rule.evaluate:
            return self.evaluate
        return self._compiled(activity_type)

    def _compiled(self, activity_type: str | None) -> Runner | None:
        try:
            return self._runners[activity_type]
        except KeyError:
            pass
        # A type no pin names gets the closure for any type (shared, so a feed of junk
        # types compiles nothing new); a pinned type, its own.
        if activity_type is not None and activity_type not in self._pinned_types():
            run = self._compiled(None)
        else:
            run = self._compile(activity_type)
        if len(self._runners) < MAX_RUNNERS:
            self._runners[activity_type] = run
        return run

    def _pinned_types(self) -> frozenset[str]:
        """The activity types some pin of the rule (or of its steps) names."""
        pins = [self.pin]
        if self.sequence is not None:
            pins += [step.pin for step in self.sequence.steps]
            if self.sequence.reset is not None:
                pins.append(self.sequence.reset.pin)
        return frozenset().union(*(pin.types for pin in pins if pin is not None))

    def _compile(self, activity_type: str | None) -> Runner | None:
        """`evaluate` as one closure for activities of `activity_type`, with the rule's
        fields read once (a loaded rule does not change): only the checks that can differ
        between activities run on each one."""
        checks = _checks_for(self.pin, activity_type, self.checks)
        if checks is None:
            return None
        check = all_of(checks)
        module = self.module
        hits = self._step_hits(activity_type) if self.sequence is not None else None
        new_value = self.new_value
        distinct = self.threshold.distinct if self.threshold is not None else None
        rule = self

        def run(activity: ActivityRecord, event: Event | None) -> Match | None:
            data = activity.raw
            if check is not None and not check(data):
                return None
            if module is not None and not module.rule(event):
                return None
            steps: tuple[tuple[int, Any], ...] = ()
            if hits is not None:
                steps = hits(data)
                if not steps:
                    return None
            value = key = None
            if new_value is not None:
                value = new_value.of(data)
                if value is None:
                    return None
                key = new_value.per(data) if new_value.per is not None else ""
                if key is None:
                    return None
            return Match(
                rule,
                activity,
                event,
                None if distinct is None else distinct(data),
                value,
                key,
                steps,
            )

        return run

    def _step_hits(self, activity_type: str | None) -> StepHits:
        """The sequence steps an activity of this type satisfies, with their correlation
        values; the reset, when it holds, as step -1. Steps that cannot hold on the type
        are left out, and neighbouring steps that share a `by` path (N failures, then a
        success and the reset) compute its value once."""
        assert self.sequence is not None
        steps = [*enumerate(self.sequence.steps)]
        if self.sequence.reset is not None:
            steps.append((-1, self.sequence.reset))
        paths: dict[str, str] = {}  # one object per path text, compared with `is`
        plan = []
        for index, step in steps:
            checks = _checks_for(step.pin, activity_type, step.checks)
            if checks is not None:
                path = paths.setdefault(step.by_path, step.by_path)
                plan.append((index, all_of(checks), step.by, path))

        def hits(data: Mapping[str, Any]) -> tuple[tuple[int, Any], ...]:
            found = []
            last = value = None
            for index, check, by, path in plan:
                if check is None or check(data):
                    if path is not last:
                        value = by(data)
                        last = path
                    if value is not None:
                        found.append((index, value))
            return tuple(found)

        return hits

    def render_dedup(self, activity: ActivityRecord, event: Event | None) -> str:
        """The dedup key alone (the title too only when the key defaults to it)."""
        if self.module is None and self.dedup_template is not None:
            return self.dedup_template(activity.raw)[:1000]  # a YAML rule: the usual case
        dedup = self._text_hook("dedup", event)
        if dedup is None:
            if self.dedup_template is not None:
                dedup = self.dedup_template(activity.raw)
            else:
                return self.render(activity, event).dedup_key
        return dedup[:1000]

    def render(self, activity: ActivityRecord, event: Event | None) -> Rendered:
        """Title, dedup key, severity, context, destinations and runbook for an activity
        the rule matched (templates, then the Python hooks that override them)."""
        data = activity.raw
        title = self._text_hook("title", event)
        if title is None:
            title = self.title_template(data) if self.title_template else self.name
        dedup = self._text_hook("dedup", event)
        if dedup is None:
            dedup = self.dedup_template(data) if self.dedup_template else title
        severity = self.severity
        hook = self._hook("severity")
        if hook is not None:
            chosen = str(hook(event) or "").strip().lower()
            if chosen in SEVERITIES:
                severity = chosen
            elif chosen not in ("", "default"):
                raise ValueError(f"severity() returned {chosen!r}, not one of {SEVERITIES}")
        context = {path: render(data) for path, render in self.context_paths.items()}
        hook = self._hook("context")
        if hook is not None:
            extra = hook(event)
            if not isinstance(extra, Mapping):
                raise TypeError(f"context() must return a mapping, not {type(extra).__name__}")
            context.update(extra)
        destinations = self.destinations
        hook = self._hook("destinations")
        if hook is not None:
            chosen = hook(event)
            # None keeps the default routing (as the absent YAML key does); [] sends none.
            destinations = None if chosen is None else [str(d) for d in chosen]
        runbook = self._text_hook("runbook", event) or self.runbook
        return Rendered(
            title=title[:1000],
            dedup_key=dedup[:1000],
            severity=severity,
            context=context,
            destinations=destinations,
            runbook=runbook,
        )

    def _text_hook(self, name: str, event: Event | None) -> str | None:
        hook = self._hook(name)
        if hook is None:
            return None
        value = hook(event)
        return None if value is None or value == "" else str(value)
