"""The noise report (`engine/noise/report.py`) as text for a terminal and as a markdown
table for docs/rules.md."""

from __future__ import annotations

import json
from typing import Any

from engine.noise.report import SEVERITY_ORDER, percent

MAX_CELL = 60


def _short(text: str, width: int = MAX_CELL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def _tops(entries: list[dict[str, Any]], total: int) -> str:
    parts = []
    for entry in entries:
        share = f" ({entry['count'] / total:.0%})" if total else ""
        parts.append(
            f"{json.dumps(_short(entry['value']), ensure_ascii=False)} ×{entry['count']}{share}"
        )
    return " · ".join(parts)


def header(report: dict[str, Any]) -> list[str]:
    parts = [
        f"{report['activities']} activities read",
        f"{report['rejected']} rejected",
        f"{report['rules_loaded']} rules loaded",
        f"{_plural(report['alerts'], 'alert')} ({report['alerts_per_100k']:g} per 100k)",
        f"{report['alerts_medium_or_above']} medium or above",
        f"{report['alerts_high_or_critical']} high or critical",
    ]
    errors = sum(e["alerts"] for e in report["rule_errors"])
    if errors:
        parts.append(_plural(errors, "rule error alert"))
    lines = [" · ".join(parts)]
    labels, recall = report["labels"], report["recall"]
    if labels is not None and recall is not None:
        at_key = (
            f", {recall['caught_at_key']} of {recall['keyed']} at the key activity"
            if recall["keyed"]
            else ""
        )
        missing = labels["labelled_activities"] - labels["labelled_activities_read"]
        lines.append(
            f"labels: {recall['caught']} of {recall['instances']} attack instances caught "
            f"({_pct(recall['recall'])}){at_key} · {labels['attack_alerts']} alerts on attack "
            f"activity, {labels['benign_alerts']} on benign activity "
            f"({labels['benign_alerts_per_100k']:g} per 100k benign activities)"
            + (f" · {missing} labelled activities not in the feed" if missing else "")
        )
    return lines


def text(report: dict[str, Any], show_all: bool = False) -> str:
    out = header(report)
    out += [f"next: {step}" for step in report["next"]]
    labelled = report["labels"] is not None
    rows = report["rules"]
    if rows:
        width = max(len(r["id"]) for r in rows)
        out.append("")
        if labelled:
            out.append(
                "rules that alerted, loudest first (benign alerts per 100k benign activities)"
            )
            out.append(
                f"  {'ALERTS':>6}  {'BENIGN':>6}  {'/100K':>8}  {'RULE':<{width}}  SEVERITY  KIND"
            )
        else:
            out.append("rules that alerted, loudest first (alerts per 100k activities)")
            out.append(f"  {'ALERTS':>6}  {'/100K':>8}  {'RULE':<{width}}  SEVERITY  KIND")
        for row in rows:
            by_severity = ", ".join(
                f"{row['alerts_by_severity'][s]} {s}"
                for s in SEVERITY_ORDER
                if s in row["alerts_by_severity"]
            )
            if labelled:
                lead = (
                    f"  {row['alerts']:>6}  {row['benign_alerts']:>6}  "
                    f"{row['benign_alerts_per_100k']:>8.2f}"
                )
            else:
                lead = f"  {row['alerts']:>6}  {row['alerts_per_100k']:>8.2f}"
            n = row["matches"]
            extra = f"{row['kind']}, {n} match{'es' if n != 1 else ''}; alerts {by_severity}"
            if row["rule_errors"]:
                extra += f"; {row['rule_errors']} rule error alerts"
            out.append(f"{lead}  {row['id']:<{width}}  {row['severity']:<8}  {extra}")
            indent = " " * (len(lead) + 2)
            keys, titles, total = row["top_keys"], row["top_titles"], row["alerts"]
            distinct = row["distinct_keys"]
            if labelled:
                keys, titles, total = (
                    row["top_benign_keys"],
                    row["top_benign_titles"],
                    row["benign_alerts"],
                )
                distinct = row["distinct_benign_keys"]
                if row["caught"]:
                    kinds = ", ".join(f"{k} ×{n}" for k, n in row["kinds_caught"].items())
                    out.append(f"{indent}caught: {kinds}")
            what = "benign " if labelled else ""
            if keys and keys[0]["count"] == 1 and total > 1:
                out.append(f"{indent}{what}keys:       {distinct} distinct, one alert each")
            elif keys:
                out.append(f"{indent}top {what}keys:   {_tops(keys, total)}")
            if titles and titles[0]["count"] == 1 and total > 1:
                out.append(f"{indent}{what}titles:     all different")
            elif titles:
                out.append(f"{indent}top {what}titles: {_tops(titles, total)}")
            if row["exception_lists"]:
                lists = ", ".join(f"lists/{name}.yml" for name in row["exception_lists"])
                out.append(f"{indent}exceptions: {lists}")
    out.append("")
    silent = report["silent_rules"]
    line = f"silent: {_plural(len(silent), 'alerting rule')} raised nothing"
    if silent and not show_all:
        line += " (--all lists them)"
    out.append(line)
    if show_all:
        out += [f"  {r['id']}  ({r['severity']}, {r['kind']})" for r in silent]
    if report["learning_rules"]:
        out.append(f"learning only (alert: false): {', '.join(report['learning_rules'])}")
    for error in report["rule_errors"]:
        out.append(
            f"rule errors: {error['id']} ×{error['alerts']}: {_short(error['first_title'], 100)}"
        )
    recall = report["recall"]
    if recall is not None:
        out += _recall_text(recall)
    return "\n".join(out) + "\n"


def _recall_text(recall: dict[str, Any]) -> list[str]:
    out = [
        "",
        f"recall: {recall['caught']} of {recall['instances']} instances caught "
        f"({_pct(recall['recall'])})",
    ]
    if recall["keyed"]:
        out[-1] += (
            f"; {recall['caught_at_key']} of {recall['keyed']} caught at the key activity "
            f"({_pct(recall['recall_at_key'])})"
        )
    kinds = recall["by_kind"]
    if kinds:
        width = max(len("KIND"), *(len(k["kind"]) for k in kinds))
        out.append(f"  {'KIND':<{width}}  INSTANCES  CAUGHT  RECALL  AT KEY")
        for k in kinds:
            at_key = f"{k['caught_at_key']}/{k['keyed']}" if k["keyed"] else "—"
            out.append(
                f"  {k['kind']:<{width}}  {k['instances']:>9}  {k['caught']:>6}  "
                f"{_pct(k['recall']):>6}  {at_key}"
            )
    rules = recall["by_rule"]
    if rules:
        width = max(len("RULE"), *(len(r["id"]) for r in rules))
        out.append(f"  {'RULE':<{width}}  CAUGHT  ALONE  AT KEY  KINDS")
        for r in rules:
            kinds_caught = ", ".join(f"{k} ×{n}" for k, n in r["kinds_caught"].items())
            out.append(
                f"  {r['id']:<{width}}  {r['caught']:>6}  {r['caught_only']:>5}  "
                f"{r['caught_at_key']:>6}  {kinds_caught}"
            )
    missed = recall["missed"]
    out.append(f"missed: {len(missed)}")
    for m in missed:
        notes = []
        if m["activities_in_feed"] < m["activities"]:
            notes.append(f"{m['activities_in_feed']} of {m['activities']} activities in the feed")
        for rule_id, outcomes in m["matched_without_alert"].items():
            notes.append(f"{rule_id} matched ({'/'.join(outcomes)})")
        note = f"  [{'; '.join(notes)}]" if notes else ""
        out.append(f"  {m['instance']}  {m['kind']}  {_short(m['description'], 80)}{note}")
    return out


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def markdown(report: dict[str, Any]) -> str:
    """One table, a row per alerting rule (loudest first, then the silent ones), ready to
    paste into docs/rules.md."""
    labels, recall = report["labels"], report["recall"]
    inputs = ", ".join(f"`{p}`" for p in report["inputs"]) or "the feed"
    lines = [
        f"Measured with `detect noise` over {inputs}: {report['activities']} activities, "
        f"{report['alerts']} alerts ({report['alerts_per_100k']:g} per 100k activities)"
        + (
            f", {recall['caught']} of {recall['instances']} labelled attack instances caught "
            f"({_pct(recall['recall'])})."
            if recall is not None
            else "."
        ),
        "",
    ]
    rows = list(report["rules"])
    if labels is not None and recall is not None:
        total = recall["instances"]
        lines.append(
            "| rule | severity | alerts per 100k benign activities | kinds caught "
            "| recall contribution |"
        )
        lines.append("|---|---|---|---|---|")
        rows += [{**r, "benign_alerts_per_100k": 0.0} for r in report["silent_rules"]]
        for row in rows:
            kinds = ", ".join(f"{k} ×{n}" for k, n in row["kinds_caught"].items()) or "—"
            contribution = "—"
            if row["caught"]:
                contribution = f"{row['caught']} of {total} ({_pct(percent(row['caught'], total))})"
                if row["caught_only"]:
                    contribution += f", {row['caught_only']} alone"
            lines.append(
                f"| `{_cell(row['id'])}` | {row['severity']} | "
                f"{row['benign_alerts_per_100k']:.2f} | {_cell(kinds)} | {contribution} |"
            )
    else:
        lines.append("| rule | severity | alerts | alerts per 100k activities |")
        lines.append("|---|---|---|---|")
        rows += [{**r, "alerts": 0, "alerts_per_100k": 0.0} for r in report["silent_rules"]]
        for row in rows:
            lines.append(
                f"| `{_cell(row['id'])}` | {row['severity']} | {row['alerts']} | "
                f"{row['alerts_per_100k']:.2f} |"
            )
    return "\n".join(lines) + "\n"
