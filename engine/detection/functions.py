"""Named lists and the extra JMESPath functions rules may call.

The functions are bound to one set of named lists, so `in_list(x, 'admins')` inside a
`when` reads the same `lists/admins.yml` as the `in_list` operator of `match`.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jmespath
import re2
from jmespath import functions

from engine.errors import RuleProblem
from engine.state.store import MemoryStore, StateStore
from engine.yaml_lines import YamlError, line_at, load_yaml

LEARNED = "learned_list"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=65536)
def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address, or None for anything that is not one (cached: feeds repeat IPs)."""
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def parse_network(text: str) -> Network:
    """A CIDR (a bare address is a one-address network); raises `ValueError`."""
    return ipaddress.ip_network(text.strip(), strict=False)


def in_networks(value: Any, networks: Iterable[Network]) -> bool:
    if not isinstance(value, str):
        return False
    address = parse_ip(value)
    if address is None:
        return False
    return any(address.version == net.version and address in net for net in networks)


class NamedList:
    """One `lists/NAME.yml`: strings compared without case, CIDR entries matched as ranges."""

    def __init__(self, name: str, entries: list[str]) -> None:
        self.name = name
        self.strings = frozenset(e.strip().lower() for e in entries)
        # Values learned from the feed by rules with `learn:` (see NamedLists.attach).
        self.learned: set[str] = set()
        nets = []
        for entry in entries:
            if "/" in entry or parse_ip(entry) is not None:
                with contextlib.suppress(ValueError):
                    nets.append(parse_network(entry))
        self.networks = tuple(nets)

    def __contains__(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        text = value.strip().lower()
        if text in self.strings or text in self.learned:
            return True
        return bool(self.networks) and in_networks(value, self.networks)


class NamedLists:
    """Every named list the loaded rules directories define."""

    def __init__(self, lists: dict[str, NamedList] | None = None) -> None:
        self.lists: dict[str, NamedList] = dict(lists or {})
        self._store: StateStore = MemoryStore()

    def attach(self, store: StateStore, learned: dict[str, set[str]] | None = None) -> None:
        """Learn into `store` from now on, with its learned entries: read from it (and a
        previous store's forgotten), or, given `learned`, those sets as they are, what
        `attached()` returned while `store` was last attached. A worker's organizations
        take turns on one rule set (engine/runs/workers.py): only an organization's lease
        holder writes its entries, and every change goes through `learn`, which updates
        the sets and the store alike, so reading them all again before each turn (a scan
        and a read of every value) would only find the same."""
        self._store = store
        if learned is None:
            learned = {name: set() for name in self.lists}
            for key, _ in store.items(LEARNED):
                name, _, value = key.partition("\x1f")
                if name in learned:
                    learned[name].add(value)
        for name, named in self.lists.items():
            named.learned = learned.setdefault(name, set())

    def attached(self) -> dict[str, set[str]]:
        """The learned sets of the store attached now (the sets themselves, not copies)."""
        return {name: named.learned for name, named in self.lists.items()}

    def keep_in_memory(self) -> None:
        """Go on learning, but store nothing: for a process that evaluates for another,
        which stores what is learned (engine/runs/forked.py)."""
        self._store = MemoryStore()

    def learn(self, name: str, value: Any, add: bool) -> None:
        """Add a value to (or remove it from) the learned part of a list, durably."""
        values = value if isinstance(value, list | tuple) else [value]
        named = self.get(name)
        for item in values:
            if not isinstance(item, str) or not item.strip():
                continue
            text = item.strip().lower()
            if add:
                named.learned.add(text)
                self._store.put(LEARNED, f"{name}\x1f{text}", True)
            else:
                named.learned.discard(text)
                self._store.delete(LEARNED, f"{name}\x1f{text}")

    def get(self, name: str) -> NamedList:
        try:
            return self.lists[name]
        except KeyError:
            known = ", ".join(sorted(self.lists)) or "none"
            raise KeyError(f"no named list {name!r} (known: {known})") from None

    @classmethod
    def load(cls, directories: Iterable[Path]) -> tuple[NamedLists, list[RuleProblem]]:
        """Read `lists/*.yml|yaml` of each rules directory; problems are returned, not
        raised, so one bad list does not hide the rules' own errors."""
        found: dict[str, NamedList] = {}
        origin: dict[str, Path] = {}
        problems: list[RuleProblem] = []
        for directory in directories:
            folder = directory / "lists"
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix not in (".yml", ".yaml"):
                    continue
                name = path.stem
                try:
                    data = load_yaml(path)
                except YamlError as exc:
                    problems.append(RuleProblem(path, exc.line, "", exc.message))
                    continue
                if data is None:
                    data = []
                if not isinstance(data, list) or not all(isinstance(e, str) for e in data):
                    problems.append(
                        RuleProblem(path, 1, "", "a named list must be a YAML list of strings")
                    )
                    continue
                if name in found:
                    problems.append(
                        RuleProblem(path, 1, "", f"list {name!r} is also defined in {origin[name]}")
                    )
                    continue
                for index, entry in enumerate(data):
                    if "/" in entry:
                        try:
                            parse_network(entry)
                        except ValueError:
                            problems.append(
                                RuleProblem(
                                    path,
                                    line_at(data, [index]),
                                    "",
                                    f"{entry!r} looks like a CIDR but is not one",
                                )
                            )
                found[name] = NamedList(name, data)
                origin[name] = path
        return cls(found), problems


def email_domain(value: Any) -> str | None:
    """The lower-cased part after the last `@`, or None for anything that is not an email."""
    if not isinstance(value, str):
        return None
    local, at, domain = value.strip().rpartition("@")
    if not at or not local or not domain or "." not in domain:
        return None
    return domain.lower()


@lru_cache(maxsize=8192)
def ip_prefix(value: Any) -> str | None:
    """An address as a baseline should know it: an IPv4 address as itself, an IPv6 address
    as its /64 network. A device on IPv6 takes a new address in its /64 every day or so
    (privacy extensions), and the /64 is the home, office or phone network it stands for.
    Text that is not an address comes back as it is; anything else as None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    if address.ipv4_mapped is not None:  # ::ffff:192.0.2.7 is 192.0.2.7
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


class RegexError(ValueError):
    """A pattern the regex engine refuses: what is wrong, and why the engine is RE2."""


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error is raised with its reason; nothing on stderr


@lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> Any:
    """A compiled pattern with `search`, on RE2: time linear in the text, whatever the
    pattern (Python's `re` backtracks: `^(a+)+$` on 29 characters took 18 s, doubling
    with each one). RE2 has no backreferences (`\\1`) and no lookarounds (`(?=`, `(?!`,
    `(?<=`, `(?<!`), the constructs that need backtracking; raises `RegexError`."""
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(
            f"regex {pattern!r} is refused: {reason} (patterns run on RE2, in time linear"
            " in the text; it has no backreferences and no lookarounds)"
        ) from None
    except TypeError as exc:  # not text
        raise RegexError(f"regex {pattern!r} is not a string pattern: {exc}") from None


def make_options(lists: NamedLists) -> jmespath.Options:
    """JMESPath options whose function table includes the engine's extras."""

    class EngineFunctions(functions.Functions):
        @functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
        def _func_cidr_match(self, ip: str | None, cidr: str) -> bool:
            try:
                network = parse_network(cidr)
            except ValueError as exc:
                raise ValueError(f"cidr_match: {cidr!r} is not a CIDR") from exc
            return in_networks(ip, (network,))

        @functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
        def _func_regex_match(self, value: str | None, pattern: str) -> bool:
            return isinstance(value, str) and compile_regex(pattern).search(value) is not None

        @functions.signature({"types": []}, {"types": ["string"]})
        def _func_in_list(self, value: Any, name: str) -> bool:
            return value in lists.get(name)

        @functions.signature({"types": ["string", "null"]})
        def _func_lower(self, value: str | None) -> str | None:
            return value.lower() if isinstance(value, str) else None

        @functions.signature({"types": []})
        def _func_email_domain(self, value: Any) -> str | None:
            return email_domain(value)

        @functions.signature({"types": []})
        def _func_ip_prefix(self, value: Any) -> str | None:
            return ip_prefix(value)

    return jmespath.Options(custom_functions=EngineFunctions())
