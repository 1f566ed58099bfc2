"""Panther's own engine on a file of activities: the other side of `detect bench --panther`.

Runs in whatever interpreter has `panther_core` (detect never depends on it): `detect bench`
starts it as `PYTHON core_bench.py ACTIVITIES RULES_JSON`, with its own interpreter when
panther_core is importable there, else with the one given by `--panther-python`. So this
file imports nothing from `engine` (only the standard library and panther_core) and can be
run by path.

What it times is what Panther's log analysis does with an event that is already decoded:
wrap it once in `panther_core.enriched_event.PantherEvent`, then call `Rule.run(event, {},
{}, batch_mode=True)` for every rule (in batch mode the title, dedup and other functions
only run when `rule()` returned True). Decoding the JSON and adding the `p_` fields
Panther's log pipeline adds (`p_log_type`, `p_event_time`, `p_any_emails`,
`p_any_ip_addresses`, the same values detect's live events carry) happen before the clock
starts, a chunk of activities at a time, so memory stays flat on large files.

RULES_JSON lists the Python rules detect loaded from the directory (simple detections need
a Panther backend to become Python, so panther_core cannot run them):
`[{"id", "path", "severity", "dedup_minutes", "helper_dirs": [...]}, ...]`. Helper folders
go on `sys.path`, as panther_analysis_tool does. Prints one JSON object: activities,
seconds, matches and errors per rule, the panther_core version.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

CHUNK = 20_000
LOG_TYPE = "Anthropic.Activity"


def event_time(created_at: Any) -> str | None:
    """`p_event_time` as detect writes it (UTC, microseconds, a space before the time)."""
    if not isinstance(created_at, str):
        return None
    text = created_at.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        head, dot, rest = text.partition(".")
        if not dot:
            return None
        digits = len(rest) - len(rest.lstrip("0123456789"))
        try:
            moment = datetime.fromisoformat(f"{head}.{rest[:digits][:6]}{rest[digits:]}")
        except ValueError:
            return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def panther_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The activity with the `p_` fields Panther's pipeline adds (where it lacks them)."""
    enriched = dict(data)
    enriched.setdefault("p_log_type", LOG_TYPE)
    moment = event_time(data.get("created_at"))
    if moment is not None:
        enriched.setdefault("p_event_time", moment)
    actor = data.get("actor")
    if isinstance(actor, dict):
        emails = [
            v
            for v in (actor.get("email_address"), actor.get("unauthenticated_email_address"))
            if isinstance(v, str) and v
        ]
        if emails and "p_any_emails" not in data:
            enriched["p_any_emails"] = list(dict.fromkeys(emails))
        address = actor.get("ip_address")
        if isinstance(address, str) and address and "p_any_ip_addresses" not in data:
            enriched["p_any_ip_addresses"] = [address]
    return enriched


def load_rules(specs: list[dict[str, Any]]) -> list[Any]:
    from panther_core.rule import Rule

    for spec in specs:
        for folder in spec.get("helper_dirs", []):
            if folder not in sys.path:
                sys.path.append(folder)
    rules = []
    for spec in specs:
        rule = Rule(
            {
                "id": spec["id"],
                "versionId": "bench",
                "path": spec["path"],
                "severity": spec.get("severity", "INFO").upper(),
                "dedupPeriodMinutes": spec.get("dedup_minutes", 60),
            }
        )
        if rule.setup_exception is not None:
            raise SystemExit(f"panther_core cannot load {spec['id']}: {rule.setup_exception!r}")
        rules.append(rule)
    return rules


def measure(activities: str, specs: list[dict[str, Any]]) -> dict[str, Any]:
    from panther_core.enriched_event import PantherEvent

    rules = load_rules(specs)
    ids = [rule.detection_id for rule in rules]
    matches = dict.fromkeys(ids, 0)
    errors = dict.fromkeys(ids, 0)
    clock = time.perf_counter
    seconds = 0.0
    count = 0

    def run(chunk: list[dict[str, Any]]) -> float:
        started = clock()
        for data in chunk:
            event = PantherEvent(data)
            for rule in rules:
                result = rule.run(event, {}, {}, batch_mode=True)
                if result.trigger_alert:
                    matches[result.detection_id] += 1
                elif result.detection_exception is not None:
                    errors[result.detection_id] += 1
        return clock() - started

    chunk: list[dict[str, Any]] = []
    with open(activities, "rb") as stream:
        for line in stream:
            if not line.strip():
                continue
            data = json.loads(line)
            if not isinstance(data, dict):
                continue
            chunk.append(panther_fields(data))
            if len(chunk) >= CHUNK:
                seconds += run(chunk)
                count += len(chunk)
                chunk = []
    if chunk:
        seconds += run(chunk)
        count += len(chunk)
    try:
        from importlib.metadata import version

        core_version = version("panther_core")
    except Exception:  # noqa: BLE001 - the version is for the report only
        core_version = "unknown"
    return {
        "activities": count,
        "seconds": seconds,
        "rules": len(rules),
        "matches": matches,
        "errors": errors,
        "panther_core": core_version,
        "python": sys.version.split()[0],
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: core_bench.py ACTIVITIES.jsonl RULES.json", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        specs = json.load(handle)
    print(json.dumps(measure(argv[0], specs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
