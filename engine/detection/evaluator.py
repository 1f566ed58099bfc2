"""Running the rules on one activity.

Rules whose `match` pins `type` are indexed by it, so an activity meets only the rules that
can hold on its type (most rules read one or two of the ~470 types). An exception in one
rule is caught here and reported, and the other rules still run.
"""

from __future__ import annotations

from engine.activity import ActivityRecord, Event
from engine.detection.loader import RuleSet
from engine.detection.rule import Match, Rule


class Evaluator:
    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self._order = {id(rule): i for i, rule in enumerate(ruleset.rules)}
        self._typed: dict[str, list[Rule]] = {}
        self._any: list[Rule] = []
        for rule in ruleset.rules:
            if rule.types is None:
                self._any.append(rule)
            else:
                for activity_type in rule.types:
                    self._typed.setdefault(activity_type, []).append(rule)
        self._plan: dict[str, list[Rule]] = {}
        # new_value rules with `learn_from: all` see every activity, whatever its type.
        self.learners = [
            rule
            for rule in ruleset.rules
            if rule.new_value is not None and rule.new_value.learn_from == "all"
        ]

    def rules_for(self, activity_type: str) -> list[Rule]:
        """The rules that can hold on this type, in load order (cached per type)."""
        plan = self._plan.get(activity_type)
        if plan is None:
            merged = self._typed.get(activity_type, []) + self._any
            plan = self._plan[activity_type] = sorted(merged, key=lambda r: self._order[id(r)])
        return plan

    def evaluate(
        self, activity: ActivityRecord
    ) -> tuple[list[Match], list[tuple[Rule, Exception]]]:
        matches: list[Match] = []
        errors: list[tuple[Rule, Exception]] = []
        rules = self.rules_for(activity.type)
        if not rules:
            return matches, errors
        event = Event.of(activity, self.ruleset.options)
        for rule in rules:
            try:
                found = rule.evaluate(activity, event)
            except Exception as exc:  # noqa: BLE001 - a rule's bug must not stop the stream
                errors.append((rule, exc))
                continue
            if found is not None:
                matches.append(found)
        return matches, errors
