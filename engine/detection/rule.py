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

SEVERITIES = ("info", "low", "medium", "high", "critical")
DataCheck = Callable[[Mapping[str, Any]], bool]
DataRender = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Threshold:
    count: int
    window: timedelta
    distinct: DataRender | None = None
    distinct_path: str | None = None
    # Panther's semantics: the window is the dedup window opened by the first match, and
    # the alert notifies once `count` matches have joined it (no sliding).
    anchored: bool = False


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

    @property
    def forget_seconds(self) -> float:
        return self.forget.total_seconds()


@dataclass(frozen=True)
class Step:
    checks: tuple[DataCheck, ...]
    by: DataRender
    by_path: str


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
    outputs as keywords to render eagerly, or `render` to defer."""

    __slots__ = (
        "_dedup",
        "_render",
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
        *,
        render: Callable[[], Rendered] | None = None,
        dedup: Callable[[], str] | None = None,
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
        self._render = render
        self._rendered = None if render is not None else Rendered(**outputs)
        # The dedup key alone is needed for every match a threshold counts; the rest only
        # when an alert opens.
        self._dedup = dedup

    @property
    def rendered(self) -> Rendered:
        """The outputs; may raise what the rule's code raises (a rule error)."""
        if self._rendered is None:
            assert self._render is not None
            self._rendered = self._render()
        return self._rendered

    @property
    def title(self) -> str:
        return self.rendered.title

    @property
    def dedup_key(self) -> str:
        if self._rendered is None and self._dedup is not None:
            if callable(self._dedup):
                self._dedup = self._dedup()
            return self._dedup
        return self.rendered.dedup_key

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

    def _hook(self, name: str) -> Callable[[Event], Any] | None:
        return getattr(self.module, name, None) if self.module is not None else None

    def holds(self, activity: ActivityRecord, event: Event) -> bool:
        """Whether `match`, `when` and `rule()` all hold (cheapest first)."""
        data = activity.raw
        for check in self.checks:
            if not check(data):
                return False
        if self.module is not None:
            return bool(self.module.rule(event))
        return True

    def step_hits(self, data: Mapping[str, Any]) -> tuple[tuple[int, Any], ...]:
        """The sequence steps this activity satisfies, with their correlation values; the
        reset, when it holds, as step -1."""
        assert self.sequence is not None
        hits = []
        for index, step in enumerate(self.sequence.steps):
            if all(check(data) for check in step.checks):
                value = step.by(data)
                if value is not None:
                    hits.append((index, value))
        reset = self.sequence.reset
        if reset is not None and all(check(data) for check in reset.checks):
            value = reset.by(data)
            if value is not None:
                hits.append((-1, value))
        return tuple(hits)

    def evaluate(self, activity: ActivityRecord, event: Event) -> Match | None:
        if not self.holds(activity, event):
            return None
        data = activity.raw
        steps: tuple[tuple[int, Any], ...] = ()
        if self.sequence is not None:
            steps = self.step_hits(data)
            if not steps:
                return None
        new_value = new_value_key = None
        if self.new_value is not None:
            new_value = self.new_value.of(data)
            if new_value is None:
                return None
            new_value_key = self.new_value.per(data) if self.new_value.per else ""
            if new_value_key is None:
                return None
        distinct = None
        if self.threshold is not None and self.threshold.distinct is not None:
            distinct = self.threshold.distinct(data)
        return Match(
            self,
            activity,
            render=lambda: self.render(activity, event),
            dedup=lambda: self.render_dedup(activity, event),
            distinct_value=distinct,
            new_value=new_value,
            new_value_key=new_value_key,
            steps=steps,
        )

    def render_dedup(self, activity: ActivityRecord, event: Event) -> str:
        """The dedup key alone (the title too only when the key defaults to it)."""
        dedup = self._text_hook("dedup", event)
        if dedup is None:
            if self.dedup_template is not None:
                dedup = self.dedup_template(activity.raw)
            else:
                return self.render(activity, event).dedup_key
        return dedup[:1000]

    def render(self, activity: ActivityRecord, event: Event) -> Rendered:
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

    def _text_hook(self, name: str, event: Event) -> str | None:
        hook = self._hook(name)
        if hook is None:
            return None
        value = hook(event)
        return None if value is None or value == "" else str(value)
