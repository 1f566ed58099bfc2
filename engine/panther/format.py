"""Panther's rule format behind the loader's seam (`engine.detection.formats.RuleFormat`).

Import-light: the loader asks every file whether it is Panther's before anything heavy is
imported, so native-only rule sets pay nothing for Panther support.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.panther import PantherOptions, is_panther_document, looks_like_panther_file

if TYPE_CHECKING:
    import jmespath

    from engine.detection.functions import NamedLists
    from engine.detection.rule import Rule
    from engine.errors import RuleProblem


class PantherFormat:
    """Panther-format files (`AnalysisType: ...`), compiled as one set: global helpers are
    resolved across it. `options` says where extra helpers are and whether the
    test-expectation extension is on."""

    name = "panther"
    id_key = "RuleID"
    whole_set = True

    def __init__(self, options: PantherOptions | None = None) -> None:
        self.options = options or PantherOptions()

    def claims_file(self, path: Path) -> bool:
        return looks_like_panther_file(path)

    def claims_document(self, document: Any) -> bool:
        return is_panther_document(document)

    def compile(
        self,
        documents: Iterable[tuple[Path, Any]],
        lists: NamedLists,
        options: jmespath.Options,
    ) -> tuple[list[Rule], list[RuleProblem]]:
        from engine.panther.loader import compile_documents

        return compile_documents(documents, self.options)
