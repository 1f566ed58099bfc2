"""The exceptions users of the engine can catch, one family under `DetectError`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DetectError(Exception):
    """Base of every error the engine raises on purpose."""


@dataclass(frozen=True)
class RuleProblem:
    """One thing wrong with one rule file, located as precisely as we can."""

    path: Path
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        key = f" [{self.key}]" if self.key else ""
        return f"{where}:{key} {self.message}"


class RuleLoadError(DetectError):
    """Rule files that cannot be loaded; `problems` lists every one found, not just the
    first, so a user fixes a rules directory in one pass."""

    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConfigError(DetectError):
    """A configuration file or command-line value that cannot be used."""


class InputError(DetectError):
    """An input that cannot be read at all (as opposed to one bad activity in it)."""


class StateInUseError(DetectError):
    """A state database another detect process is writing."""


class StateVersionError(DetectError):
    """A state database written by a newer `detect`: this one does not know its schema
    and does not touch it."""


class StateCorruptError(DetectError):
    """A state database that is not a readable SQLite file (empty, truncated, overwritten,
    damaged pages): the message names the file and the way out (`detect state check`,
    `detect state rebuild`)."""


class StateWriteError(DetectError):
    """A state database that could not be written for a reason outside the engine (the
    disk is full, the file is read-only): nothing after the last commit was written."""


class LeaseLost(DetectError):
    """A commit to a partition of a shared (Redis) state store whose lease this worker no
    longer holds: it stalled past the lease's TTL or another worker took the partition
    over. Nothing of the commit was applied; the new holder re-reads from the
    checkpoint, so whatever this worker would have written is written once, by it."""

    def __init__(self, partition: str, lease_key: str) -> None:
        self.partition = partition
        self.lease_key = lease_key
        super().__init__(
            f"lease of partition {partition!r} lost ({lease_key} no longer holds this "
            "worker's token): nothing of the commit was applied"
        )
