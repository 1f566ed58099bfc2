"""The noise report as data (`detect.noise/v1`): what `--format json` prints, and what the
text and markdown forms are printed from."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from engine.detection.rule import Rule
from engine.noise.collect import IN_ALERT, AlertSummary, Measured

SCHEMA = "detect.noise/v1"
SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")
MEDIUM_OR_ABOVE = frozenset({"medium", "high", "critical"})
HIGH_OR_CRITICAL = frozenset({"high", "critical"})
# A top key that raised at least this share of a rule's alerts is worth an exception.
KEY_SHARE_WORTH_AN_EXCEPTION = 0.2
_NOT_IN_LIST = re.compile(r'"not_in_list":\s*"([\w.-]+)"')
_NOT_IN_LIST_CALL = re.compile(r"!\s*in_list\([^)]*'([\w.-]+)'\s*\)")


def per_100k(count: int, activities: int) -> float:
    """`count` per 100,000 activities, to two decimals (0 for no activity)."""
    return round(count * 100_000 / activities, 2) if activities else 0.0


def percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def rule_kind(rule: Rule) -> str:
    if not rule.alert:
        return "learns"
    if rule.threshold is not None:
        return "threshold"
    if rule.new_value is not None:
        return "new value"
    if rule.sequence is not None:
        return "sequence"
    return "single"


def exception_lists(rule: Rule) -> list[str]:
    """The named lists whose entries keep activity away from the rule (`not_in_list`,
    `!in_list(…)`): where an exception for a noisy key usually goes."""
    document = rule.document
    if not isinstance(document, dict):
        return []
    logic = {k: v for k, v in document.items() if k in ("match", "when", "sequence")}
    text = json.dumps(logic, default=str)
    names = _NOT_IN_LIST.findall(text) + _NOT_IN_LIST_CALL.findall(text.replace('\\"', '"'))
    return list(dict.fromkeys(names))


def _top(values: Iterable[str], n: int) -> list[dict[str, Any]]:
    counts = Counter(values)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [{"value": value, "count": count} for value, count in ranked[:n]]


def build_report(measured: Measured, top: int = 5, inputs: Iterable[str] = ()) -> dict[str, Any]:
    stats = measured.stats
    activities = stats.activities
    labels = measured.labels
    log = measured.log
    detections = [a for a in measured.alerts if a.kind == "detection"]
    errors = [a for a in measured.alerts if a.kind == "rule_error"]
    touched = log.touched if log is not None else set()
    benign_activities = activities - len(measured.labelled_read)

    by_rule: dict[str, list[AlertSummary]] = {}
    for alert in detections:
        by_rule.setdefault(alert.rule_id, []).append(alert)
    errors_by_rule: dict[str, list[AlertSummary]] = {}
    for alert in errors:
        errors_by_rule.setdefault(alert.rule_id, []).append(alert)

    recall = _recall(measured) if labels is not None else None
    contribution = recall.pop("_by_rule_index") if recall is not None else {}

    rows = []
    for rule in measured.rules:
        alerts = by_rule.get(rule.id, [])
        if not alerts:
            continue
        severities = Counter(a.severity for a in alerts)
        row: dict[str, Any] = {
            "id": rule.id,
            "name": rule.name,
            "severity": rule.severity,
            "kind": rule_kind(rule),
            "matches": stats.matches_by_rule.get(rule.id, 0),
            "alerts": len(alerts),
            "alerts_per_100k": per_100k(len(alerts), activities),
            "alerts_by_severity": {s: severities[s] for s in SEVERITY_ORDER if severities[s]},
            "distinct_keys": len({a.dedup_key for a in alerts}),
            "top_keys": _top((a.dedup_key for a in alerts), top),
            "top_titles": _top((a.title for a in alerts), top),
            "exception_lists": exception_lists(rule),
            "rule_errors": len(errors_by_rule.get(rule.id, [])),
        }
        if labels is not None:
            benign = [a for a in alerts if a.alert_id not in touched]
            row["attack_alerts"] = len(alerts) - len(benign)
            row["benign_alerts"] = len(benign)
            row["benign_alerts_per_100k"] = per_100k(len(benign), benign_activities)
            row["distinct_benign_keys"] = len({a.dedup_key for a in benign})
            row["top_benign_keys"] = _top((a.dedup_key for a in benign), top)
            row["top_benign_titles"] = _top((a.title for a in benign), top)
            row.update(contribution.get(rule.id) or _no_contribution())
        rows.append(row)
    loudness = "benign_alerts" if labels is not None else "alerts"
    rows.sort(key=lambda r: (-r[loudness], -r["alerts"], r["id"]))

    alerting = [r for r in measured.rules if r.alert]
    silent = [r for r in alerting if r.id not in by_rule]
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "inputs": list(inputs),
        "activities": activities,
        "rejected": stats.rejected,
        "rules_loaded": len(measured.rules),
        "matches": stats.matches,
        "alerts": len(detections),
        "alerts_medium_or_above": sum(a.severity in MEDIUM_OR_ABOVE for a in detections),
        "alerts_high_or_critical": sum(a.severity in HIGH_OR_CRITICAL for a in detections),
        "alerts_per_100k": per_100k(len(detections), activities),
        "rule_errors": [
            {"id": rule_id, "alerts": len(found), "first_title": found[0].title}
            for rule_id, found in sorted(errors_by_rule.items())
        ],
        "rules": rows,
        "silent_rules": [
            {"id": r.id, "severity": r.severity, "kind": rule_kind(r)} for r in silent
        ],
        "learning_rules": [r.id for r in measured.rules if not r.alert],
        "labels": None,
        "recall": None,
    }
    if labels is not None and recall is not None:
        attack = sum(a.alert_id in touched for a in detections)
        labelled = set(labels.by_activity)
        report["labels"] = {
            "instances": len(labels.instances),
            "labelled_activities": len(labelled),
            "labelled_activities_read": len(measured.labelled_read & labelled),
            "benign_activities": benign_activities,
            "attack_alerts": attack,
            "benign_alerts": len(detections) - attack,
            "benign_alerts_per_100k": per_100k(len(detections) - attack, benign_activities),
        }
        report["recall"] = recall
        for entry in report["silent_rules"]:  # zeros: every alerting rule has its figures
            entry.update(contribution.get(entry["id"]) or _no_contribution())
    report["next"] = next_steps(report)
    return report


def _no_contribution() -> dict[str, Any]:
    return {"caught": 0, "caught_only": 0, "caught_at_key": 0, "kinds_caught": {}}


def _recall(measured: Measured) -> dict[str, Any]:
    labels = measured.labels
    log = measured.log
    assert labels is not None and log is not None
    instances = labels.instances
    caught_by: list[set[str]] = [set() for _ in instances]
    at_key_by: list[set[str]] = [set() for _ in instances]
    quiet_by: list[dict[str, set[str]]] = [{} for _ in instances]
    alerting = {r.id for r in measured.rules if r.alert}
    for rule_id, activity_id, outcome, _alert in log.records:
        for index in labels.by_activity.get(activity_id, ()):
            if outcome in IN_ALERT and rule_id in alerting:
                caught_by[index].add(rule_id)
                if activity_id == instances[index].key_activity_id:
                    at_key_by[index].add(rule_id)
            else:
                quiet_by[index].setdefault(rule_id, set()).add(outcome)

    kinds: dict[str, dict[str, int]] = {}
    missed = []
    for index, instance in enumerate(instances):
        row = kinds.setdefault(
            instance.kind, {"instances": 0, "caught": 0, "keyed": 0, "caught_at_key": 0}
        )
        row["instances"] += 1
        row["caught"] += bool(caught_by[index])
        if instance.key_activity_id is not None:
            row["keyed"] += 1
            row["caught_at_key"] += bool(at_key_by[index])
        if not caught_by[index]:
            read = sum(i in measured.labelled_read for i in instance.activity_ids)
            missed.append(
                {
                    "instance": instance.instance,
                    "kind": instance.kind,
                    "description": instance.description,
                    "activities_in_feed": read,
                    "activities": len(instance.activity_ids),
                    "matched_without_alert": {
                        rule_id: sorted(outcomes)
                        for rule_id, outcomes in sorted(quiet_by[index].items())
                    },
                }
            )
    by_kind = []
    for kind, row in sorted(kinds.items()):
        entry: dict[str, Any] = {
            "kind": kind,
            **row,
            "recall": percent(row["caught"], row["instances"]),
        }
        if not row["keyed"]:
            entry["caught_at_key"] = None
        entry["recall_at_key"] = percent(row["caught_at_key"] or 0, row["keyed"])
        by_kind.append(entry)

    by_rule: dict[str, dict[str, Any]] = {}
    for index, instance in enumerate(instances):
        for rule_id in caught_by[index]:
            entry = by_rule.setdefault(rule_id, _no_contribution())
            entry["caught"] += 1
            entry["caught_only"] += len(caught_by[index]) == 1
            entry["caught_at_key"] += rule_id in at_key_by[index]
            entry["kinds_caught"][instance.kind] = entry["kinds_caught"].get(instance.kind, 0) + 1
    for entry in by_rule.values():
        entry["kinds_caught"] = dict(sorted(entry["kinds_caught"].items()))

    caught = sum(bool(c) for c in caught_by)
    keyed = sum(i.key_activity_id is not None for i in instances)
    at_key = sum(bool(k) for k in at_key_by)
    return {
        "instances": len(instances),
        "caught": caught,
        "recall": percent(caught, len(instances)),
        "keyed": keyed,
        "caught_at_key": at_key,
        "recall_at_key": percent(at_key, keyed),
        "by_kind": by_kind,
        "by_rule": [
            {"id": rule_id, **entry}
            for rule_id, entry in sorted(by_rule.items(), key=lambda i: (-i[1]["caught"], i[0]))
        ],
        "missed": missed,
        "_by_rule_index": by_rule,
    }


def next_steps(report: dict[str, Any]) -> list[str]:
    """What to do first, in a sentence or two: the loudest rule and its loudest key, and
    what labelled attacks went unseen."""
    steps = []
    labelled = report["labels"] is not None
    count_field = "benign_alerts" if labelled else "alerts"
    rate_field = "benign_alerts_per_100k" if labelled else "alerts_per_100k"
    keys_field = "top_benign_keys" if labelled else "top_keys"
    distinct_field = "distinct_benign_keys" if labelled else "distinct_keys"
    loud = [r for r in report["rules"] if r[count_field]]
    if loud:
        rule = loud[0]
        count = rule[count_field]
        what = "benign alerts" if labelled else "alerts"
        line = (
            f"tune {rule['id']} first: {count} {what} "
            f"({rule[rate_field]:g} per 100k{' benign' if labelled else ''} activities)"
        )
        keys = rule[keys_field]
        if keys and count > 1:
            key = keys[0]
            share = key["count"] / count
            if key["count"] > 1 and share >= KEY_SHARE_WORTH_AN_EXCEPTION:
                where = (
                    f"add it to lists/{rule['exception_lists'][0]}.yml"
                    if rule["exception_lists"]
                    else "add an exception for it to the rule"
                )
                line += (
                    f"; {key['count']} of them ({share:.0%}) have the key "
                    f"{json.dumps(key['value'])}: {where}, or lengthen dedup.window if it is "
                    "one ongoing incident"
                )
            else:
                line += (
                    f"; {rule[distinct_field]} distinct dedup keys (the top one raised "
                    f"{key['count']}): narrow its match, raise its threshold, or key its dedup "
                    "on who acted rather than on what"
                )
        steps.append(line)
    elif report["alerts"] == 0:
        steps.append("no alerts: nothing to tune")
    recall = report["recall"]
    if recall is not None and recall["missed"]:
        kinds = Counter(m["kind"] for m in recall["missed"])
        listed = ", ".join(f"{k} ×{n}" for k, n in kinds.most_common(5))
        steps.append(f"{len(recall['missed'])} attack instance(s) missed: {listed}")
    return steps
