"""`detect convert`: Panther-format rules written as native rule files.

- A simple detection becomes a native YAML rule: each top-level condition that a native
  `match` operator expresses exactly goes to `match`, the rest to a JMESPath `when` using
  the engine's functions (simple.py gives every condition both forms); `AlertTitle`
  becomes `title`, `GroupBy` the dedup key, `AlertContext` the `context` paths.
- A Python rule keeps its module unchanged (copied as `<name>_panther.py`), beside a native
  YAML and a three-line adapter module (see native.py); the global helpers it can import
  are copied to `global_helpers/` at the top of the output.
- Tests become native tests where they can: a test with `Mocks`, or whose `Log` is not a
  valid activity, has no native form and is listed in a comment instead.

What has no native form is never dropped silently: a rule using `DynamicSeverities` (or,
for Python rules, the YAML-declared outputs) is not converted and the reason is printed;
smaller differences (Panther's anchored threshold becomes the native sliding one, renamed
alert-context keys, per-event description/reference) are written as comments in the file
and printed as notes.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.activity import parse_activity
from engine.detection.loader import discover
from engine.errors import RuleProblem
from engine.panther import PantherOptions, looks_like_panther_file
from engine.panther.event import plain
from engine.panther.loader import compile_documents
from engine.panther.rule import PantherRule
from engine.panther.simple import (
    SimpleDetectionError,
    key_spec_path,
    title_template,
    top_level,
)

_NATIVE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_MITRE = re.compile(r"^TA\d{4}(:T\d{4}(\.\d{3})?)?$")
_SHORTHAND = {"equals", "in"}


class ConversionRefused(ValueError):
    """A rule with no faithful native form."""


@dataclass
class ConvertReport:
    lines: list[str] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)
    converted: int = 0
    refused: int = 0


@dataclass
class Converted:
    """One rule's native form: the YAML document, files to copy, and notes."""

    document: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    skipped_tests: list[str] = field(default_factory=list)
    extra_files: dict[str, str] = field(default_factory=dict)  # name -> text
    copies: dict[str, Path] = field(default_factory=dict)  # name -> source


def _native_id(rule: PantherRule, notes: list[str]) -> str:
    if _NATIVE_ID.match(rule.id):
        return rule.id
    safe = re.sub(r"[^A-Za-z0-9._:-]+", ".", rule.id).strip(".") or "panther.rule"
    notes.append(
        f"RuleID {rule.id!r} is not a valid native id; it is {safe!r} here (alert ids and"
        " correlation state are keyed by the id)"
    )
    return safe


def _add_match(match: dict[str, Any], path: str, op: str, arg: Any) -> bool:
    """Put one operator into `match`; False when the path already has that operator."""
    current = match.get(path)
    if current is None:
        if op == "equals" and not isinstance(arg, list | dict):
            match[path] = arg
        elif op == "in":
            match[path] = list(arg)
        else:
            match[path] = {op: arg}
        return True
    if not isinstance(current, dict):
        current = {"in": current} if isinstance(current, list) else {"equals": current}
    if op in current:
        return False
    current[op] = arg
    match[path] = current
    return True


def _conditions(rule: PantherRule) -> tuple[dict[str, Any], str | None]:
    doc = rule.document
    match: dict[str, Any] = {}
    whens: list[str] = []
    for key in ("InlineFilters", "Detection"):
        if key not in doc:
            continue
        for node in top_level([key], doc[key]):
            if node.native is not None and _add_match(match, *node.native):
                continue
            whens.append(node.jmes)
    when = " && ".join(w if len(whens) == 1 else f"({w})" for w in whens) if whens else None
    return match, when


def _tests(rule: PantherRule, converted: Converted) -> list[dict[str, Any]]:
    tests = []
    for spec in rule.tests:
        name = str(spec.get("Name"))
        if spec.get("Mocks"):
            converted.skipped_tests.append(f"{name} (uses Mocks)")
            continue
        log = plain(spec.get("Log"))
        try:
            parse_activity(log)
        except Exception:  # noqa: BLE001 - any reason makes it a non-activity
            converted.skipped_tests.append(f"{name} (its Log is not a valid activity)")
            continue
        test: dict[str, Any] = {"name": name, "event": log, "expect": bool(spec["ExpectedResult"])}
        if "ExpectedDestinations" in spec:
            converted.notes.append(f"test {name!r}: ExpectedDestinations has no native check")
        for panther_key, native_key in (
            ("ExpectedTitle", "title"),
            ("ExpectedDedup", "dedup"),
        ):
            if panther_key in spec:
                test[native_key] = spec[panther_key]
        if "ExpectedSeverity" in spec:
            test["severity"] = str(spec["ExpectedSeverity"]).lower()
        if "ExpectedAlertContext" in spec:
            converted.notes.append(f"test {name!r}: ExpectedAlertContext keys are not paths")
        tests.append(test)
    return tests


def _common(rule: PantherRule, converted: Converted) -> dict[str, Any]:
    doc = rule.document
    notes = converted.notes
    native: dict[str, Any] = {
        "id": _native_id(rule, notes),
        "name": rule.name,
        "severity": rule.severity,
    }
    if not doc.get("CreateAlert", True):
        native["enabled"] = False
        notes.append("CreateAlert: false (a signal) has no native form; the rule is disabled")
    elif not rule.enabled:
        native["enabled"] = False
    for key in ("description", "runbook", "reference"):
        value = getattr(rule, key)
        if value:
            native[key] = value
    if rule.tags:
        native["tags"] = list(rule.tags)
    mitre = [m for m in rule.mitre if _MITRE.match(m)]
    if len(mitre) != len(rule.mitre):
        dropped = [m for m in rule.mitre if not _MITRE.match(m)]
        notes.append(f"MITRE entries not in TAxxxx[:Txxxx[.xxx]] form dropped: {dropped}")
    if mitre:
        native["mitre"] = mitre
    if rule.log_types != ["Anthropic.Activity"]:
        native["log_types"] = list(rule.log_types)
    return native


def _window(rule: PantherRule) -> str:
    return f"{int(rule.dedup_window.total_seconds() // 60)}m"


def _finish(rule: PantherRule, native: dict[str, Any], converted: Converted) -> None:
    dedup = native.setdefault("dedup", {})
    dedup["window"] = _window(rule)
    if rule.threshold is not None:
        native["threshold"] = {"count": rule.threshold.count, "window": _window(rule)}
        converted.notes.append(
            "Threshold: Panther counts matches in the dedup window opened by the first match;"
            " the native threshold slides over the same window, so it can fire earlier"
        )
    if rule.destinations is not None:
        native["destinations"] = list(rule.destinations)
    tests = _tests(rule, converted)
    if tests:
        native["tests"] = tests


def convert_simple(rule: PantherRule) -> Converted:
    doc = rule.document
    if "DynamicSeverities" in doc:
        raise ConversionRefused(
            "DynamicSeverities has no native form (a native rule's severity is fixed unless"
            " Python sets it); convert it by hand or keep the Panther file"
        )
    converted = Converted({})
    native = _common(rule, converted)
    match, when = _conditions(rule)
    if match:
        native["match"] = match
    if when:
        native["when"] = when
    if "AlertTitle" in doc:
        native["title"] = title_template(doc["AlertTitle"])
    dedup: dict[str, Any] = {}
    if "GroupBy" in doc:
        holes = [
            "{" + key_spec_path(["GroupBy", i], spec).path + "}"
            for i, spec in enumerate(doc["GroupBy"])
        ]
        dedup["key"] = ":".join(holes)
    elif "AlertTitle" not in doc:
        dedup["key"] = rule.default_dedup
    native["dedup"] = dedup
    if "AlertContext" in doc:
        paths = []
        for index, item in enumerate(doc["AlertContext"]):
            paths.append(key_spec_path(["AlertContext", index, "KeyValue"], item["KeyValue"]).path)
        native["context"] = paths
        converted.notes.append(
            "AlertContext: native context is keyed by path, so "
            + ", ".join(
                f"{item['KeyName']} -> {path}"
                for item, path in zip(doc["AlertContext"], paths, strict=True)
            )
        )
    _finish(rule, native, converted)
    converted.document = native
    return converted


_ADAPTER = '''"""Native hooks for the Panther rule {rule_id} (written by `detect convert`).

The rule's logic is {module}, unchanged: edit that file, not this one.
"""

from engine.panther.native import native_hooks

_hooks = native_hooks(
    __file__,
    {module!r},
    rule_id={rule_id!r},
    name={name!r},
    severity={severity!r},
)
rule = _hooks.rule
title = _hooks.title
dedup = _hooks.dedup
severity = _hooks.severity
context = _hooks.context
runbook = _hooks.runbook
'''


def convert_python(rule: PantherRule, stem: str) -> Converted:
    doc = rule.document
    declared = [
        k for k in ("AlertTitle", "GroupBy", "AlertContext", "DynamicSeverities") if k in doc
    ]
    if declared:
        raise ConversionRefused(
            f"{', '.join(declared)} on a Python rule has no native form; move it into the"
            " module's functions first"
        )
    converted = Converted({})
    native = _common(rule, converted)
    match, when = _conditions(rule)
    if rule.types is not None and "type" not in match:
        # The types the module's rule() pins (pinning.py): the same index, natively.
        kinds = sorted(rule.types)
        match["type"] = kinds[0] if len(kinds) == 1 else kinds
    if match:
        native["match"] = match
    if when:
        native["when"] = when
    native["python"] = f"{stem}.py"
    module = f"{stem}_panther.py"
    adapter = _ADAPTER.format(
        rule_id=rule.rule_id, module=module, name=rule.name, severity=rule.severity
    )
    if "destinations" in rule.defined:
        adapter += "destinations = _hooks.destinations\n"
    converted.extra_files[f"{stem}.py"] = adapter
    converted.copies[module] = Path(rule.module.__file__)  # type: ignore[union-attr]
    for name in ("description", "reference"):
        if name in rule.defined:
            converted.notes.append(
                f"{name}() has no native hook: alerts carry the YAML {name.capitalize()}"
            )
    _finish(rule, native, converted)
    converted.document = native
    return converted


def _header(rule: PantherRule, converted: Converted) -> str:
    lines = [
        f"# Converted from the Panther rule {rule.rule_id} ({rule.path.name}) by detect convert."
    ]
    for note in converted.notes:
        lines.append(f"# Note: {note}")
    if converted.skipped_tests:
        lines.append("# Tests with no native form (kept in the Panther file):")
        lines += [f"#   - {t}" for t in converted.skipped_tests]
    return "\n".join(lines) + "\n"


class _Dumper(yaml.SafeDumper):
    """Multi-line text as literal blocks, as people write runbooks."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def _dump(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def _sources(paths: Iterable[Path]) -> list[tuple[Path, Path]]:
    """(root, file) for every Panther file under `paths`."""
    found = []
    for given in paths:
        root = given if given.is_dir() else given.parent
        files, _ = discover([given])
        found += [(root.resolve(), f) for f in files if looks_like_panther_file(f)]
    return found


def convert_paths(
    paths: list[Path], out: Path, options: PantherOptions, force: bool = False
) -> ConvertReport:
    report = ConvertReport()
    sources = _sources(paths)
    rules, problems = compile_documents([(f, None) for _, f in sources], options)
    report.problems.extend(problems)
    roots = {f.resolve(): root for root, f in sources}
    helper_files: dict[str, Path] = {}
    for rule in rules:
        if not isinstance(rule, PantherRule) or rule.document.get("AnalysisType") != "rule":
            continue
        source = rule.path.resolve()
        relative = source.relative_to(roots.get(source, source.parent))
        target = out / relative.with_suffix(".yml")
        stem = target.stem
        try:
            if rule.module is None:
                converted = convert_simple(rule)
            else:
                converted = convert_python(rule, stem)
                helper_files.update(rule.helper_files)
        except (ConversionRefused, SimpleDetectionError) as exc:
            report.refused += 1
            report.lines.append(f"not converted: {rule.rule_id} ({rule.path}): {exc}")
            continue
        written = {target: _header(rule, converted) + _dump(converted.document)}
        for name, text in converted.extra_files.items():
            written[target.parent / name] = text
        clashes = [
            p for p in [*written, *(target.parent / n for n in converted.copies)] if p.exists()
        ]
        if clashes and not force:
            report.refused += 1
            report.lines.append(
                f"not converted: {rule.rule_id}: {clashes[0]} exists (use --force to overwrite)"
            )
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        for path, text in written.items():
            path.write_text(text, encoding="utf-8")
        for name, origin in converted.copies.items():
            shutil.copyfile(origin, target.parent / name)
        report.converted += 1
        report.lines.append(f"converted: {rule.rule_id} -> {target}")
        report.lines += [f"  note: {note}" for note in converted.notes]
        if converted.skipped_tests:
            report.lines.append(
                f"  note: {len(converted.skipped_tests)} test(s) kept only in the Panther file"
            )
    if helper_files:
        folder = out / "global_helpers"
        folder.mkdir(parents=True, exist_ok=True)
        for name, origin in sorted(helper_files.items()):
            if origin.is_dir():
                shutil.copytree(origin, folder / name, dirs_exist_ok=True)
            else:
                shutil.copyfile(origin, folder / f"{name}.py")
        report.lines.append(f"copied {len(helper_files)} global helper(s) to {folder}")
    return report
