"""Running the rules on one activity.

Rules whose `match` pins `type` are indexed by it, so an activity meets only the rules that
can hold on its type (most rules read one or two of the ~470 types). Each rule is compiled
once per type it meets (`Rule.runner`), and the `Event` that Python rules read is built
only for an activity some rule with Python code will see. An exception in one rule is
caught here and reported, and the other rules still run: any exception, `SystemExit` and
the rule's other `BaseException`s included (engine/detection/budget.py). Plans with rules
that run code (Python, a format's own `evaluate`) are timed: one `SIGALRM` timer armed per
activity, each rule given its budget as it starts; a rule that overruns it fails with
`RuleTimeout`, and one that overruns `quarantine_after` times is disabled (quarantined)
for the rest of the process, with a `rule_error` and a log line that say so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import jmespath

from engine.activity import ActivityRecord, Event
from engine.detection import budget as timer
from engine.detection.budget import RuleAborted, RuleTimeout, owned_by_rule
from engine.detection.failures import RuleFailure
from engine.detection.loader import RuleSet
from engine.detection.rule import LAST_SEEN_SLACK, MAX_RUNNERS, Match, Rule, Runner

Found = tuple[list[Match], list[tuple[Rule, BaseException]]]
# What a `learn_from: all` rule learns from one activity: (its index in
# `Evaluator.learners`, key, value), or (index, failure) when a path failed on the data.
Learned = tuple[int, Any, Any] | tuple[int, RuleFailure]
# The evaluation of every rule of one activity type.
Plan = Callable[[ActivityRecord], Found]
# How many (rule, key, value) hand-overs `learned` remembers before starting afresh.
MAX_HANDED = 50_000
log = logging.getLogger(__name__)


class Evaluator:
    def __init__(self, ruleset: RuleSet, quarantine_after: int | None = None) -> None:
        self.ruleset = ruleset
        # Rules disabled for overrunning their time budget: id -> why.
        self.quarantined: dict[str, str] = {}
        self._quarantine_after = quarantine_after
        self._overruns: dict[str, int] = {}
        timer.prepare()
        self._order = {id(rule): i for i, rule in enumerate(ruleset.rules)}
        self._typed: dict[str, list[Rule]] = {}
        self._any: list[Rule] = []
        for rule in ruleset.rules:
            if rule.types is None:
                self._any.append(rule)
            else:
                for activity_type in rule.types:
                    self._typed.setdefault(activity_type, []).append(rule)
        self._plans: dict[str, Plan] = {}
        # new_value rules with `learn_from: all` see every activity, whatever its type.
        self.learners = [
            rule
            for rule in ruleset.rules
            if rule.new_value is not None and rule.new_value.learn_from == "all"
        ]
        self.learned = _learning(self.learners)

    def rules_for(self, activity_type: str) -> list[Rule]:
        """The rules that can hold on this type, in load order."""
        merged = self._typed.get(activity_type, []) + self._any
        return sorted(merged, key=lambda r: self._order[id(r)])

    def _plan(self, activity_type: str) -> Plan:
        """The plan of a type, built on its first activity; a rule that cannot hold on the
        type is left out."""
        runners = []
        for rule in self.rules_for(activity_type):
            if rule.id in self.quarantined:
                continue
            run = rule.runner(activity_type)
            if run is not None:
                runners.append((rule, run))
        python = any(rule.needs_event for rule, _ in runners)
        timed = any(rule.runs_code for rule, _ in runners)
        plan = _compose(
            tuple(runners),
            self.ruleset.options if python else None,
            self.overran if timed else None,
        )
        if len(self._plans) < MAX_RUNNERS:  # a feed of endless junk types stays bounded
            self._plans[activity_type] = plan
        return plan

    def evaluate(self, activity: ActivityRecord) -> Found:
        return (self._plans.get(activity.type) or self._plan(activity.type))(activity)

    def overran(self, rule: Rule, error: RuleTimeout) -> RuleTimeout:
        """Count an overrun of `rule`'s budget; the error to report (which says so when
        this overrun quarantines the rule: it is left out of every plan from now on)."""
        count = self._overruns[rule.id] = self._overruns.get(rule.id, 0) + 1
        limit = self._quarantine_after or timer.settings.quarantine_after
        if count < limit or rule.id in self.quarantined:
            return error
        reason = (
            f"quarantined: disabled for the rest of this process after {count} overruns"
            f" of its time budget of {rule.budget:g}s"
        )
        self.quarantined[rule.id] = reason
        self._plans.clear()  # rebuilt without it on each type's next activity
        log.warning("rule %s (%s) %s", rule.id, rule.path, reason)
        quarantined = RuleTimeout(f"{error}; {reason}")
        quarantined.__traceback__ = error.__traceback__
        return quarantined


def _learning(learners: list[Rule]) -> Callable[[ActivityRecord, list[Match]], list[Learned]]:
    """`Evaluator.learned`: what each `learn_from: all` rule learns from an activity it did
    not match (its own matches are learned as they are judged). It runs on every activity,
    so the paths are read inline, not through `NewValue`.

    A value handed over is not handed over again within the same span of event time
    (`LAST_SEEN_SLACK` of its rule's `forget`, engine/detection/rule.py): the correlator
    would change nothing for it (the hand-over left its stored last-seen time in that span
    or a later one, and it moves it on only in a later span), and the same member's domain
    or address on every activity would otherwise cross to it, and through the pipe of a
    two-process replay, each time. The one difference it can make: a value the correlator
    dropped meanwhile (a key's cap of values) is learned again up to a span late."""
    plan = [
        (index, rule, rule.new_value.of, rule.new_value.per)  # type: ignore[union-attr]
        for index, rule in enumerate(learners)
    ]
    if not plan:
        return lambda activity, matches: _NO_LEARNING
    slack = [rule.new_value.forget_seconds * LAST_SEEN_SLACK for rule in learners]  # type: ignore[union-attr]
    handed: dict[tuple[int, str, str], float] = {}
    # The learners of each activity type: those that learn from every type, and those
    # whose `learn_from` names it. Built on a type's first activity, bounded like the plans.
    by_type: dict[str, list[tuple[int, Rule, Any, Any]]] = {}

    def learners_of(activity_type: str) -> list[tuple[int, Rule, Any, Any]]:
        chosen = [
            entry
            for entry in plan
            if entry[1].new_value.learn_types is None  # type: ignore[union-attr]
            or activity_type in entry[1].new_value.learn_types  # type: ignore[union-attr]
        ]
        if len(by_type) < MAX_RUNNERS:
            by_type[activity_type] = chosen
        return chosen

    def learned(activity: ActivityRecord, matches: list[Match]) -> list[Learned]:
        found = _NO_LEARNING
        typed = by_type.get(activity.type)
        for index, rule, of, per_of in typed if typed is not None else learners_of(activity.type):
            for match in matches:
                if match.rule is rule:
                    break
            else:
                data = activity.raw
                try:
                    value = of(data)
                    if value is None:
                        continue
                    per = per_of(data) if per_of is not None else ""
                except Exception as error:  # noqa: BLE001 - a path's function failed on data
                    per, value = RuleFailure.of(error), None
                if per is None:
                    continue
                if type(value) is type(per) is str:
                    now = activity.epoch
                    last = handed.get((index, per, value))
                    span = slack[index]
                    if last is not None and last <= now and now // span == last // span:
                        continue
                    if len(handed) >= MAX_HANDED:
                        handed.clear()  # bounded: at worst a value is handed over again
                    handed[(index, per, value)] = now
                if found is _NO_LEARNING:
                    found = []
                found.append((index, per) if value is None else (index, per, value))
        return found

    return learned


_NO_LEARNING: list[Learned] = []  # shared, never appended to


def _nothing(activity: ActivityRecord) -> Found:
    return [], []


def _compose(
    runners: tuple[tuple[Rule, Runner], ...],
    options: jmespath.Options | None,
    overran: Callable[[Rule, RuleTimeout], RuleTimeout] | None = None,
) -> Plan:
    """The runners as one function of the activity. `options`: some rule has Python code,
    so an `Event` is built for it (None: none is). `overran`: some rule runs code of its
    own, so the plan is timed, and overruns are counted there. Most types meet no rule,
    or one rule without code (the content views), and get a function without the loop."""
    if not runners:
        return _nothing
    if len(runners) == 1 and options is None and overran is None:
        ((rule, run),) = runners

        def one(activity: ActivityRecord) -> Found:
            try:
                found = run(activity, None)
            except Exception as exc:  # noqa: BLE001 - a rule's bug must not stop the stream
                return [], [(rule, exc)]
            except BaseException as exc:
                if not owned_by_rule(exc):
                    raise
                return [], [(rule, exc)]
            return ([] if found is None else [found]), []

        timer.register_caller(one.__code__)
        return one

    timed = overran is not None
    plan = tuple((rule, run, rule.budget) for rule, run in runners)
    first = min(seconds for _, _, seconds in plan)
    arm, start, disarm = timer.arm, timer.start, timer.disarm

    def every(activity: ActivityRecord) -> Found:
        matches: list[Match] = []
        errors: list[tuple[Rule, BaseException]] = []
        event = None if options is None else Event.of(activity, options)
        armed = timed and arm(first)
        try:
            for rule, run, seconds in plan:
                if armed:
                    start(seconds)
                try:
                    found = run(activity, event)
                except Exception as exc:  # noqa: BLE001 - a rule's bug must not stop the stream
                    if type(exc) is RuleAborted and type(exc.original) is RuleTimeout:
                        exc = RuleAborted(overran(rule, exc.original))  # type: ignore[misc]
                    errors.append((rule, exc))
                    continue
                except BaseException as exc:
                    if type(exc) is RuleTimeout:
                        exc = overran(rule, exc)  # type: ignore[misc]
                    elif not owned_by_rule(exc):
                        raise
                    errors.append((rule, exc))
                    continue
                if found is not None:
                    matches.append(found)
        finally:
            if armed:
                disarm()
        return matches, errors

    timer.register_caller(every.__code__)
    return every
