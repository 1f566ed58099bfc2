"""Turning Panther-format YAML documents into `PantherRule`s (or problems).

Called through `engine.panther.format.PantherFormat` with every document that names an
`AnalysisType`, after the whole rules directory has been read, so global helper specs are
known before any rule module imports them. Problems carry the file, the line and the key,
like the native loader's.

What each analysis type becomes:
- `rule`: a PantherRule (Python module or simple detection); active when enabled, not a
  signal (`CreateAlert: false`) and `LogTypes` names `Anthropic.Activity`; otherwise loaded,
  tested and reported as skipped, with the reason.
- `global`: a helper module for the rules (see helpers.py).
- `scheduled_rule`, `policy`, `correlation_rule`: skipped with the reason: they run on
  Panther's scheduled queries, cloud resources or other rules' matches, not on a stream.
- `datamodel`, `pack`, `saved_query`, `scheduled_query`, `lookup_table`,
  `scheduled_prompt`: not detections; ignored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import jmespath

from engine.detection.rule import Rule, Threshold
from engine.detection.templates import compile_template
from engine.errors import RuleProblem
from engine.panther import PantherOptions
from engine.panther.helpers import HelperError, HelperResolver, describe_import_error
from engine.panther.pinning import pinned_types
from engine.panther.rule import PantherRule, defined_functions
from engine.panther.schema import check_global, check_rule
from engine.panther.simple import (
    Node,
    SimpleDetectionError,
    compile_list,
    key_spec_path,
    title_template,
)
from engine.yaml_lines import YamlError, line_at, load_yaml

LOG_TYPE = "Anthropic.Activity"
SKIPPED_TYPES = {
    "scheduled_rule": "scheduled rules run on Panther's scheduled queries, not on the"
    " activity stream",
    "policy": "policies check cloud resources, not activity",
    "correlation_rule": "correlation rules are not supported; use a native `sequence` rule",
}
IGNORED_TYPES = (
    "datamodel",
    "pack",
    "saved_query",
    "scheduled_query",
    "lookup_table",
    "scheduled_prompt",
)
_ID_KEYS = ("RuleID", "PolicyID", "QueryName", "DataModelID", "PackID", "LookupName")
_OPTIONS = jmespath.Options()


def _mitre(reports: Mapping[str, Any] | None) -> list[str]:
    if not reports:
        return []
    for name, values in reports.items():
        if str(name).replace(" ", "").upper() in ("MITREATT&CK", "MITRE"):
            return [str(v) for v in values]
    return []


def _dedup_window(minutes: int | None) -> timedelta:
    """Panther ignores 0 (the default 60 applies) and raises anything under 5 to 5."""
    if not minutes:
        return timedelta(minutes=60)
    return timedelta(minutes=max(minutes, 5))


def rule_module_name(rule_id: str, path: Path) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]", "_", rule_id)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    return f"detect_panther_rules.{safe}_{digest}"


class _Compiler:
    """Compiles one rule document; collects problems with their lines."""

    def __init__(self, path: Path, doc: Mapping[str, Any], resolver: HelperResolver, strict: bool):
        self.path = path
        self.doc = doc
        self.resolver = resolver
        self.strict = strict
        self.problems: list[RuleProblem] = []

    def problem(self, where: list[Any], message: str) -> None:
        key = ".".join(str(p) for p in where)
        self.problems.append(RuleProblem(self.path, line_at(self.doc, where), key, message))

    def expressions(self, key: str) -> Node | None:
        try:
            return compile_list([key], self.doc[key])
        except SimpleDetectionError as exc:
            self.problem(exc.where, str(exc))
            return None

    def import_module(self, rule: PantherRule):
        doc = self.doc
        module_path = self.path.parent / doc["Filename"]
        if not module_path.is_file():
            self.problem(
                ["Filename"], f"the module {doc['Filename']} does not exist beside the rule"
            )
            return None
        try:
            helpers = self.resolver.helper_set(self.path)
        except HelperError as exc:
            self.problem(["Filename"], str(exc))
            return None
        rule.helper_files = dict(helpers.files)
        try:
            module = helpers.execute(module_path, rule_module_name(doc["RuleID"], module_path))
        except Exception as exc:  # noqa: BLE001 - reported against the rule file
            self.problem(["Filename"], describe_import_error(exc, module_path, helpers))
            return None
        if not callable(getattr(module, "rule", None)):
            self.problem(["Filename"], f"{module_path.name} does not define a function rule(event)")
            return None
        if callable(getattr(module, "unique", None)) and doc.get("Threshold", 1) > 1:
            self.problem(
                ["Filename"],
                f"{module_path.name} defines unique() (a unique-value threshold), which detect"
                " does not support yet; the threshold would count events instead",
            )
            return None
        return module

    def outputs_from_yaml(self, rule: PantherRule) -> None:
        """AlertTitle, GroupBy, AlertContext and DynamicSeverities (simple detections; on
        a Python rule they stand in for the function of the same role when it is absent)."""
        doc = self.doc
        if "AlertTitle" in doc:
            try:
                rule.simple_title = compile_template(title_template(doc["AlertTitle"]), _OPTIONS)
            except ValueError as exc:
                self.problem(["AlertTitle"], f"cannot read the title template: {exc}")
        if "GroupBy" in doc:
            rule.simple_dedup = self.group_by(doc["GroupBy"])
        if "AlertContext" in doc:
            rule.simple_context = self.alert_context(doc["AlertContext"])
        if "DynamicSeverities" in doc:
            rule.simple_severity = self.dynamic_severities(doc["DynamicSeverities"])

    def group_by(self, items: Any):
        if not isinstance(items, list) or not items:
            self.problem(["GroupBy"], "GroupBy is a non-empty list of keys (KeyPath: ...)")
            return None
        holes = []
        for index, item in enumerate(items):
            try:
                holes.append("{" + key_spec_path(["GroupBy", index], item).path + "}")
            except SimpleDetectionError as exc:
                self.problem(exc.where, str(exc))
                return None
        return compile_template(":".join(holes), _OPTIONS)

    def alert_context(self, items: Any):
        if not isinstance(items, list):
            self.problem(["AlertContext"], "AlertContext is a list of {KeyName, KeyValue}")
            return None
        getters = []
        for index, item in enumerate(items):
            where = ["AlertContext", index]
            if not isinstance(item, dict) or set(item) != {"KeyName", "KeyValue"}:
                self.problem(where, "each AlertContext entry has KeyName and KeyValue")
                return None
            try:
                spec = key_spec_path([*where, "KeyValue"], item["KeyValue"])
            except SimpleDetectionError as exc:
                self.problem(exc.where, str(exc))
                return None
            getters.append((str(item["KeyName"]), spec.get))
        return lambda data: {name: get(data) for name, get in getters}

    def dynamic_severities(self, items: Any):
        if not isinstance(items, list):
            self.problem(["DynamicSeverities"], "DynamicSeverities is a list")
            return None
        choices = []
        for index, item in enumerate(items):
            where = ["DynamicSeverities", index]
            if not isinstance(item, dict) or set(item) != {"ChangeTo", "Conditions"}:
                self.problem(where, "each entry has ChangeTo and Conditions")
                return None
            level = str(item["ChangeTo"]).upper()
            if level not in ("INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"):
                self.problem([*where, "ChangeTo"], f"not a severity: {item['ChangeTo']!r}")
                return None
            try:
                node = compile_list([*where, "Conditions"], item["Conditions"])
            except SimpleDetectionError as exc:
                self.problem(exc.where, str(exc))
                return None
            choices.append((node.test, level.lower()))

        def severity(data: Any) -> str | None:
            for test, level in choices:
                if test(data):
                    return level
            return None

        return severity

    def compile(self) -> PantherRule | None:
        doc = self.doc
        rule_id = doc["RuleID"]
        log_types = list(doc.get("LogTypes", []))
        rule = PantherRule(
            id=rule_id,
            name=doc.get("DisplayName") or rule_id,
            severity=doc["Severity"].lower(),
            path=self.path,
            description=doc.get("Description", ""),
            runbook=doc.get("Runbook", ""),
            reference=doc.get("Reference", ""),
            tags=list(doc.get("Tags", [])),
            mitre=_mitre(doc.get("Reports")),
            log_types=log_types,
            enabled=doc["Enabled"] and doc.get("CreateAlert", True),
            dedup_window=_dedup_window(doc.get("DedupPeriodMinutes")),
            destinations=list(doc["OutputIds"]) if doc.get("OutputIds") else None,
            tests=doc.get("Tests") or [],
            document=doc,
            rule_id=rule_id,
            strict=self.strict,
        )
        if doc.get("Threshold", 1) > 1:
            rule.threshold = Threshold(doc["Threshold"], rule.dedup_window, anchored=True)
        if "InlineFilters" in doc:
            node = self.expressions("InlineFilters")
            if node is not None:
                rule.checks.append(node.test)
                rule.types = node.types
        if "Detection" in doc:
            node = self.expressions("Detection")
            if node is not None:
                rule.matcher = node.test
                if node.types is not None:
                    rule.types = node.types if rule.types is None else rule.types & node.types
        else:
            rule.module = self.import_module(rule)
            rule.defined = defined_functions(rule.module)
        self.outputs_from_yaml(rule)
        if not doc["Enabled"]:
            rule.skip_reason = "Enabled: false"
        elif not doc.get("CreateAlert", True):
            rule.skip_reason = "CreateAlert: false (a signal; detect only raises alerts)"
        elif LOG_TYPE not in log_types:
            rule.skip_reason = f"LogTypes {', '.join(log_types)}: detect evaluates {LOG_TYPE} only"
        elif rule.module is not None:
            # A rule() that returns False at once outside some activity types is indexed
            # by them (proven on its code, see pinning.py); only rules that run live.
            pinned = pinned_types(rule.module, Path(rule.module.__file__ or ""))
            if pinned is not None:
                rule.types = pinned if rule.types is None else rule.types & pinned
        return None if self.problems else rule


def _skipped_stub(path: Path, doc: Mapping[str, Any], reason: str) -> PantherRule | None:
    analysis_id = next((doc[k] for k in _ID_KEYS if isinstance(doc.get(k), str)), None)
    if analysis_id is None:
        return None
    return PantherRule(
        id=analysis_id,
        name=doc.get("DisplayName") or analysis_id,
        severity=str(doc.get("Severity", "Info")).lower(),
        path=path,
        log_types=list(doc.get("LogTypes", [])),
        enabled=False,
        document=doc,
        rule_id=analysis_id,
        skip_reason=f"AnalysisType {doc['AnalysisType']}: {reason}",
    )


def compile_documents(
    documents: Iterable[tuple[Path, Any]], options: PantherOptions | None = None
) -> tuple[list[Rule], list[RuleProblem]]:
    """The rules of Panther-format documents, and every problem found in them.

    Each item is `(path, document)`; a document of None is read here (with the faster
    loader: the native loader hands over Panther files unread)."""
    options = options or PantherOptions()
    strict = options.strict_enabled
    problems: list[RuleProblem] = []
    parsed: list[tuple[Path, Any]] = []
    for path, doc in documents:
        if doc is None:
            try:
                doc = load_yaml(path)
            except YamlError as exc:
                problems.append(RuleProblem(path, exc.line, "", f"invalid YAML: {exc.message}"))
                continue
        parsed.append((path, doc))

    specs: dict[Path, Mapping[str, Any]] = {}
    for path, doc in parsed:
        if isinstance(doc, dict) and doc.get("AnalysisType") == "global":
            found = check_global(path, doc)
            problems.extend(found)
            if not found:
                specs[path] = doc
    resolver = HelperResolver(options.helpers, specs)
    for folder in resolver.missing_folders():
        problems.append(RuleProblem(folder, 0, "--helpers", "no such helpers folder"))

    rules: list[Rule] = []
    for path, doc in parsed:
        if not isinstance(doc, dict):
            problems.append(RuleProblem(path, 1, "", "a Panther file is a YAML mapping"))
            continue
        kind = doc.get("AnalysisType")
        if kind == "global" or kind in IGNORED_TYPES:
            continue
        if kind in SKIPPED_TYPES:
            stub = _skipped_stub(path, doc, SKIPPED_TYPES[kind])
            if stub is not None:
                rules.append(stub)
            continue
        if kind != "rule":
            where = line_at(doc, ["AnalysisType"])
            problems.append(
                RuleProblem(path, where, "AnalysisType", f"unknown AnalysisType {kind!r}")
            )
            continue
        if "BaseDetection" in doc:
            problems.append(
                RuleProblem(
                    path,
                    line_at(doc, ["BaseDetection"]),
                    "BaseDetection",
                    "derived detections (BaseDetection) are not supported: copy the base"
                    " rule and change it",
                )
            )
            continue
        found = check_rule(path, doc, strict)
        if found:
            problems.extend(found)
            continue
        compiler = _Compiler(path, doc, resolver, strict)
        rule = compiler.compile()
        problems.extend(compiler.problems)
        if rule is not None:
            rules.append(rule)
    return rules, problems
