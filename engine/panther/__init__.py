"""Panther-format rules (panther-analysis), loaded, tested and evaluated unchanged.

A Panther rules directory (`AnalysisType: rule` YAML files with a Python module or a
`Detection:` block, `global_helpers/`, `Tests:` with mocks) becomes ordinary
`engine.detection.rule.Rule` objects, so the evaluator, correlator, dedup and replay treat
them exactly like native rules. See docs/panther.md.

This module stays import-light: the rule loader asks it whether a file is Panther's before
anything heavy is imported, so native-only rule sets pay nothing for Panther support.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The environment variable that turns the test-expectation extension on for every run
# (pytest included): ExpectedTitle, ExpectedDedup, ExpectedSeverity, ExpectedAlertContext.
STRICT_ENV = "DETECT_PANTHER_STRICT"

_ANALYSIS_TYPE = re.compile(rb"^AnalysisType\s*:", re.MULTILINE)


@dataclass(frozen=True)
class PantherOptions:
    """How Panther-format files are loaded.

    `helpers`: extra `global_helpers`-style folders, beside the ones found automatically
    (the nearest `global_helpers/` above each rule file). `strict`: accept and check the
    test-expectation extension keys; None reads the `DETECT_PANTHER_STRICT` variable.
    """

    helpers: tuple[Path, ...] = field(default=())
    strict: bool | None = None

    @property
    def strict_enabled(self) -> bool:
        if self.strict is not None:
            return self.strict
        return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")

    @classmethod
    def of(cls, helpers: Iterable[str | Path] | None = None, strict: bool | None = None):
        return cls(tuple(Path(h) for h in helpers or ()), strict)


def is_panther_document(document: Any) -> bool:
    """A parsed YAML document in Panther's format (it names its `AnalysisType`)."""
    return isinstance(document, dict) and "AnalysisType" in document


def looks_like_panther_file(path: Path) -> bool:
    """Cheap check on the raw bytes, so Panther files skip the native YAML loader and get
    the faster one; a flow-style document that hides the key is caught after parsing."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(65536)
    except OSError:
        return False
    return _ANALYSIS_TYPE.search(head) is not None
