"""Panther's YAML schema for rules and global helpers, with line-accurate errors.

The authority is `panther_analysis_tool/schemas.py` (RULE_SCHEMA, GLOBAL_SCHEMA, MOCK_SCHEMA):
the same required keys, types and "unknown keys are an error". detect is stricter on one
point only: a boolean is not accepted where an integer is required (Python's `schema`
library lets `Threshold: true` through as 1).

The test-expectation extension (`ExpectedTitle`, `ExpectedDedup`, `ExpectedSeverity`,
`ExpectedAlertContext`) is accepted only in strict mode; otherwise those keys are unknown,
exactly as they are to panther_analysis_tool, and the error says how to turn them on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from engine.errors import RuleProblem
from engine.yaml_lines import line_at

SEVERITIES = ("Info", "Low", "Medium", "High", "Critical")
_NAME_ID = re.compile(r'^[^<>&"%]+$')
EXTENSION_KEYS = ("ExpectedTitle", "ExpectedDedup", "ExpectedSeverity", "ExpectedAlertContext")

Check = Callable[[Any], str | None]


def _dotted(path: list[Any]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, not {_type_name(value)}"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, not {_type_name(value)}"


def _integer(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    return f"must be an integer, not {_type_name(value)}"


def _strings(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"must be a list of strings, not {_type_name(value)}"
    for item in value:
        if not isinstance(item, str):
            return f"must be a list of strings; {item!r} is {_type_name(item)}"
    return None


def _name_id(value: Any) -> str | None:
    if not isinstance(value, str):
        return _string(value)
    if not _NAME_ID.match(value):
        return 'must be non-empty and must not contain < > & " or %'
    return None


def _severity(value: Any) -> str | None:
    if value in SEVERITIES:
        return None
    return f"must be one of {', '.join(SEVERITIES)} (capitalised), not {value!r}"


def _reports(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"must be a mapping of report name to a list, not {_type_name(value)}"
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, list):
            return f"must map names to lists; {key!r} maps to {_type_name(item)}"
    return None


def _anything(value: Any) -> str | None:
    return None


RULE_KEYS: dict[str, Check] = {
    "AnalysisType": lambda v: (
        None if v in ("rule", "scheduled_rule") else "must be rule or scheduled_rule"
    ),
    "Enabled": _boolean,
    "Filename": _string,
    "Detection": _anything,
    "RuleID": _name_id,
    "LogTypes": _strings,
    "ScheduledQueries": _strings,
    "Severity": _severity,
    "Description": _string,
    "DedupPeriodMinutes": _integer,
    "InlineFilters": _anything,
    "DisplayName": _name_id,
    "OnlyUseBaseRiskScore": _boolean,
    "OutputIds": _strings,
    "CreatedBy": _string,
    "Reference": _string,
    "Runbook": _string,
    "Status": _string,
    "SummaryAttributes": _strings,
    "Threshold": _integer,
    "Tags": _strings,
    "Reports": _reports,
    "Tests": _anything,  # checked item by item below
    "DynamicSeverities": _anything,
    "AlertTitle": _string,
    "AlertContext": _anything,
    "GroupBy": _anything,
    "CreateAlert": _boolean,
    "BaseVersion": _integer,
}
RULE_REQUIRED = ("AnalysisType", "Enabled", "RuleID", "Severity")

TEST_KEYS: dict[str, Check] = {
    "Name": _string,
    "LogType": _string,
    "ExpectedResult": _boolean,
    "ExpectedDestinations": _strings,
    "Log": _anything,
    "Mocks": _anything,
}
TEST_REQUIRED = ("Name", "ExpectedResult", "Log")


def _expected_severity(value: Any) -> str | None:
    if isinstance(value, str) and value.capitalize() in SEVERITIES:
        return None
    return f"must be one of {', '.join(SEVERITIES)}, not {value!r}"


def _mapping(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"must be a mapping, not {_type_name(value)}"


EXTENSION_CHECKS: dict[str, Check] = {
    "ExpectedTitle": _string,
    "ExpectedDedup": _string,
    "ExpectedSeverity": _expected_severity,
    "ExpectedAlertContext": _mapping,
}

GLOBAL_KEYS: dict[str, Check] = {
    "AnalysisType": lambda v: None if v == "global" else "must be global",
    "Filename": _string,
    "GlobalID": _name_id,
    "Description": _string,
    "Tags": _strings,
    "BaseVersion": _integer,
}
GLOBAL_REQUIRED = ("AnalysisType", "Filename", "GlobalID")


class _Checker:
    def __init__(self, path: Path, document: Any) -> None:
        self.path = path
        self.document = document
        self.problems: list[RuleProblem] = []

    def problem(self, where: list[Any], message: str) -> None:
        self.problems.append(
            RuleProblem(self.path, line_at(self.document, where), _dotted(where), message)
        )

    def mapping(
        self,
        where: list[Any],
        value: Any,
        keys: Mapping[str, Check],
        required: tuple[str, ...],
        extra: Mapping[str, str] | None = None,
    ) -> bool:
        if not isinstance(value, dict):
            self.problem(where, f"must be a mapping, not {_type_name(value)}")
            return False
        for key, item in value.items():
            check = keys.get(key)
            if check is None:
                hint = (extra or {}).get(key)
                if hint is None:
                    allowed = ", ".join(sorted(keys))
                    hint = f"unknown key {key!r} (allowed here: {allowed})"
                self.problem([*where, key], hint)
                continue
            message = check(item)
            if message is not None:
                self.problem([*where, key], message)
        for key in required:
            if key not in value:
                self.problem(where, f"missing required key {key!r}")
        return True


def check_rule(path: Path, document: Mapping[str, Any], strict: bool) -> list[RuleProblem]:
    """Problems of an `AnalysisType: rule` document against Panther's RULE_SCHEMA."""
    checker = _Checker(path, document)
    checker.mapping([], document, RULE_KEYS, RULE_REQUIRED)
    for first, second in (("Filename", "Detection"), ("LogTypes", "ScheduledQueries")):
        present = [k for k in (first, second) if k in document]
        if not present:
            checker.problem([], f"needs one of {first!r} and {second!r}")
        elif len(present) == 2:
            checker.problem([second], f"give {first!r} or {second!r}, not both")
    tests = document.get("Tests")
    if tests is None:
        return checker.problems
    if not isinstance(tests, list):
        checker.problem(["Tests"], f"must be a list of tests, not {_type_name(tests)}")
        return checker.problems
    test_keys = dict(TEST_KEYS)
    hints: dict[str, str] = {}
    if strict:
        test_keys.update(EXTENSION_CHECKS)
    else:
        for key in EXTENSION_KEYS:
            hints[key] = (
                f"{key} is a detect extension that panther_analysis_tool rejects; turn it on"
                " with `detect test --panther-strict` (or DETECT_PANTHER_STRICT=1)"
            )
    for index, test in enumerate(tests):
        where = ["Tests", index]
        if not checker.mapping(where, test, test_keys, TEST_REQUIRED, hints):
            continue
        mocks = test.get("Mocks")
        if mocks is None:
            continue
        if not isinstance(mocks, list):
            checker.problem([*where, "Mocks"], f"must be a list, not {_type_name(mocks)}")
            continue
        for number, mock in enumerate(mocks):
            mock_where = [*where, "Mocks", number]
            if not isinstance(mock, dict):
                checker.problem(mock_where, f"must be a mapping, not {_type_name(mock)}")
                continue
            checker.mapping(
                mock_where,
                mock,
                {
                    "objectName": _string,
                    "returnValue": lambda v: (
                        None
                        if isinstance(v, str | bool)
                        else (
                            "must be a string or a boolean (Panther's MOCK_SCHEMA); write other"
                            f" values as a string, not {_type_name(v)}"
                        )
                    ),
                },
                ("objectName", "returnValue"),
            )
        if strict and test.get("ExpectedResult") is False:
            for key in EXTENSION_KEYS:
                if key in test:
                    checker.problem([*where, key], f"{key} needs ExpectedResult: true")
    return checker.problems


def check_global(path: Path, document: Mapping[str, Any]) -> list[RuleProblem]:
    """Problems of an `AnalysisType: global` document against Panther's GLOBAL_SCHEMA."""
    checker = _Checker(path, document)
    checker.mapping([], document, GLOBAL_KEYS, GLOBAL_REQUIRED)
    filename = document.get("Filename")
    if isinstance(filename, str) and not (path.parent / filename).is_file():
        checker.problem(["Filename"], f"the module {filename} does not exist beside the spec")
    return checker.problems
