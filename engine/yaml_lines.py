"""YAML loading that remembers where every key was written.

Rule errors must name the file, the line and the key; PyYAML's plain loaders drop line
numbers, so this loader builds dicts that carry them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


class LineDict(dict):
    """A mapping from a YAML file, with `line` (its own) and `key_lines` (each key's)."""

    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A sequence from a YAML file, with `line` and `item_lines`."""

    line: int = 0
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records lines (1-based) and refuses duplicate keys."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
# Timestamps stay text: rule tests quote activities verbatim and JSON has no date type.
# Booleans are YAML 1.2's `true`/`false` only: a test named `off` or a country code `NO`
# must stay a string, as it would in JSON.
_DROPPED = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


# libyaml's scanner, when PyYAML was built with it, under the same constructors and
# resolvers: about ten times faster on rule files heavy with test events.
_CBase = getattr(yaml, "CSafeLoader", None)
if _CBase is not None:

    class _FastLineLoader(_CBase):  # type: ignore[misc, valid-type]
        yaml_implicit_resolvers = _LineLoader.yaml_implicit_resolvers

    _FastLineLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
    )
    _FastLineLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence
    )
    _LOADER: type = _FastLineLoader
else:  # pragma: no cover - PyYAML without libyaml
    _LOADER = _LineLoader


class YamlError(ValueError):
    """A file that is not valid YAML; carries the line of the problem."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


# Aliases may expand a document to at most this many nodes: a rule file that reuses an
# anchored test event a few times is far below it, and a "billion laughs" of 500 bytes
# (nine levels of nine aliases) would otherwise build and check 10^9 nodes.
MAX_EXPANDED_NODES = 100_000


def _expanded_size(root: yaml.Node) -> tuple[int, yaml.Node | None]:
    """How many nodes the document has once every alias is expanded (counted without
    expanding: each distinct node's size once, iteratively), and the first node reached
    twice (an alias), or None."""
    sizes: dict[int, int] = {}
    reused = None
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            children = _children(node)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in children), MAX_EXPANDED_NODES + 1)
            continue
        if key in sizes:
            reused = reused or node
            continue
        sizes[key] = 0  # in progress: a recursive alias counts nothing more
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
    return sizes[id(root)], reused


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _load(text: str, path: Path) -> Any:
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size, alias = _expanded_size(node)
        if size > MAX_EXPANDED_NODES and alias is not None:
            line = alias.start_mark.line + 1
            raise YamlError(
                path,
                line,
                f"anchors and aliases expand this document past {MAX_EXPANDED_NODES:,} nodes;"
                " refused (a rule file needs few aliases, and nested ones multiply)",
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_yaml(path: Path) -> Any:
    """Parse one YAML document, with line numbers; raises `YamlError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlError(path, 0, f"cannot read: {exc}") from exc
    try:
        return _load(text, path)  # a SafeLoader subclass
    except RecursionError:
        raise YamlError(path, 0, "nested too deeply to read") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise YamlError(path, line, f"{exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise YamlError(path, 0, str(exc)) from exc


def line_at(document: Any, path: list[Any] | tuple[Any, ...]) -> int:
    """The line of the deepest node on `path` (keys and list indexes) that exists."""
    line = getattr(document, "line", 0)
    node = document
    for step in path:
        if isinstance(node, LineDict) and step in node:
            line = node.line_of(step)
            node = node[step]
        elif isinstance(node, LineList) and isinstance(step, int) and step < len(node):
            line = node.item_lines[step]
            node = node[step]
        else:
            break
    return line
