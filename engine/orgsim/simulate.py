"""Runs the simulated organizations day by day and writes the feed and its labels.

A day is built whole (everyone's sessions, the admin work, the machines, the attacks
whose turn it is), sorted, then written; the feed stops at exactly the requested number
of activities. The same arguments always give the same bytes: one seeded stream for the
world and its routine, another for the attacks, no clock, no hashing of sets into output.
"""

from __future__ import annotations

import gzip
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.jsonl import write_lines
from engine.orgsim.adminwork import AdminWork
from engine.orgsim.attacks import Attacks
from engine.orgsim.labels import label_records
from engine.orgsim.machines import Machines
from engine.orgsim.rhythm import Rhythm
from engine.orgsim.routine import People
from engine.orgsim.wire import DAY, US, Activity, Clock, Ids, Sink
from engine.orgsim.world import World

DEFAULT_START = datetime(2026, 5, 4, tzinfo=UTC)  # a Monday


class Simulation:
    """Iterate it for the activities; then `labels()` gives the attack labels."""

    def __init__(
        self,
        count: int,
        seed: int = 0,
        orgs: int = 3,
        people: int = 200,
        attacks: int = 0,
        start: datetime | None = None,
    ) -> None:
        start = start or DEFAULT_START
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self.count = count
        self.start_us = int(start.timestamp()) * US + start.microsecond
        rng = random.Random(f"orgsim-{seed}")
        self.rng = rng
        self.ids = Ids(rng)
        self.sink = Sink(self.ids)
        self.world = World(rng, self.ids, orgs=orgs, people=people)
        self.rhythm = Rhythm(rng)
        self.people = People(self.world, rng, self.sink, self.rhythm)
        self.admin = AdminWork(self.world, rng, self.sink, self.rhythm, self.people)
        self.machines = Machines(self.world, rng, self.sink)
        self.attacks = (
            Attacks(self.world, self.sink, self.machines, seed, attacks, count, self.start_us)
            if attacks > 0
            else None
        )
        self.written_attack_ids: set[str] = set()
        self.days = 0

    def __iter__(self) -> Iterator[Activity]:
        clock_format = Clock().format
        count, start_us = self.count, self.start_us
        attack_ids: set[str] = set()
        emitted = 0
        day_start = start_us - start_us % DAY
        sink = self.sink
        while emitted < count:
            epoch_day = day_start // DAY
            sink.open_day(day_start, day_start + DAY)
            sessions = self.people.run_day(epoch_day, day_start)
            self.admin.run_day(epoch_day, day_start, sessions)
            self.machines.run_day(epoch_day, day_start)
            if self.attacks is not None:
                before = len(self.attacks.instances)
                sink.day.sort()
                self.attacks.run_day(epoch_day, day_start, emitted, sink.day, sessions)
                for inst in self.attacks.instances[before:]:
                    attack_ids.update(a["id"] for _, a in inst.activities)
            self.days += 1
            for t, _seq, activity in sink.close_day():
                if t < start_us:
                    continue
                activity["created_at"] = clock_format(t)
                if attack_ids and activity["id"] in attack_ids:
                    self.written_attack_ids.add(activity["id"])
                yield activity
                emitted += 1
                if emitted == count:
                    break
            day_start += DAY

    def labels(self) -> list[dict[str, Any]]:
        if self.attacks is None:
            return []
        return label_records(self.attacks.instances, self.written_attack_ids)


def write_jsonl(path: str | Path, activities: Iterator[Activity]) -> int:
    """Write one JSON object a line to `path` (`-`: stdout; gzip when it ends in .gz)."""
    if str(path) == "-":
        return write_lines(sys.stdout, activities)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".gz":
        # No name and mtime=0 in the header: the same arguments give the same bytes.
        with (
            target.open("wb") as raw,
            gzip.GzipFile("", "wb", 3, raw, mtime=0) as gz,
        ):
            handle = _TextSink(gz)
            return write_lines(handle, activities)
    with target.open("w", encoding="utf-8") as handle:
        return write_lines(handle, activities)


class _TextSink:
    """Just enough of a text file over a binary gzip stream."""

    def __init__(self, binary: gzip.GzipFile) -> None:
        self._binary = binary

    def write(self, text: str) -> None:
        self._binary.write(text.encode("utf-8"))
