"""The seam between the rule loader and the rule formats it reads.

A format says which files are its own (cheaply, by their bytes, before they are parsed;
or by the parsed document) and compiles its documents into engine `Rule`s. The loader
(`engine.detection.loader`) knows this protocol and nothing of any format; the native
format (`engine.detection.native`) and Panther's (`engine.panther.format`) implement it,
and `engine.rule_formats` registers the formats the engine ships.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import jmespath

from engine.detection.functions import NamedLists
from engine.detection.rule import Rule
from engine.errors import RuleProblem


class RuleFormat(Protocol):
    """A rule file format.

    `name`: unique among the formats. `id_key`: the document key that holds a rule's id
    (where a duplicate id is reported). `whole_set`: True when the format compiles all its
    files at once (Panther resolves global helpers across a set); False when it compiles
    each file as the loader reads it, so problems stay in file order.
    """

    name: str
    id_key: str
    whole_set: bool

    def claims_file(self, path: Path) -> bool:
        """The file is this format's, judged before it is parsed (it is then handed over
        unread: the format reads it itself)."""
        ...

    def claims_document(self, document: Any) -> bool:
        """The parsed YAML document is this format's."""
        ...

    def compile(
        self,
        documents: Iterable[tuple[Path, Any]],
        lists: NamedLists,
        options: jmespath.Options,
    ) -> tuple[list[Rule], list[RuleProblem]]:
        """Rules from `(path, document)` pairs (document None: not read yet), and every
        problem found in them."""
        ...
