"""Sliding threshold windows, held in memory and counted as they slide.

A threshold asks, at every match, whether some window of `width` seconds that holds the
match holds `count` activities (or `count` distinct values). Rescanning a key's entries
at every match costs O(k) on a busy key. Activities nearly always arrive in time order,
and then the only window that can hold more than the others is the one ending at the
newest activity: it is kept up to date by appending on the right, evicting on the left and
counting distinct values in a dict, O(1) per match. A late activity takes the exact path:
a scan of the key's entries for any window that holds it.

An entry is `[epoch, distinct value or None, sample name or None]`, the form the state
store keeps between processes.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Any

Entry = list[Any]


class Window:
    """One threshold key's entries within `width` of the newest, in time order."""

    __slots__ = ("counts", "entries", "held", "width")

    def __init__(self, entries: list[Entry], width: float) -> None:
        self.width = width
        self.entries: deque[Entry] = deque()
        self.counts: dict[Any, int] = {}  # distinct value -> entries holding it
        self.held = 0  # entries naming a held sample activity
        if entries:
            self._refill(entries)

    @property
    def newest(self) -> float:
        return self.entries[-1][0]

    def add(
        self, entry: Entry, count: int, distinct: bool, samples: dict[str, Any]
    ) -> list[Entry] | None:
        """Add `entry` (evicting what fell out of the window, and their held samples from
        `samples`); the entries of a window that holds it and reaches `count`, else None."""
        entries = self.entries
        now = entry[0]
        if entries and entries[-1][0] > now:
            return self._add_late(entry, count, distinct, samples)
        # In time order: append, then evict from the left (inlined: the per-match path).
        entries.append(entry)
        counts = self.counts
        value = entry[1]
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
        if entry[2] is not None:
            self.held += 1
        horizon = now - self.width
        while entries[0][0] <= horizon:
            self._leave(entries.popleft(), samples)
        size = len(counts) if distinct else len(entries)
        return list(entries) if size >= count else None

    def release(self, samples: dict[str, Any]) -> None:
        """Forget the held samples of every entry (the window is being dropped)."""
        for entry in self.entries:
            if entry[2] is not None:
                samples.pop(entry[2], None)

    def _enter(self, entry: Entry) -> None:
        value = entry[1]
        if value is not None:
            self.counts[value] = self.counts.get(value, 0) + 1
        if entry[2] is not None:
            self.held += 1

    def _leave(self, entry: Entry, samples: dict[str, Any]) -> None:
        value = entry[1]
        if value is not None:
            left = self.counts[value] - 1
            if left:
                self.counts[value] = left
            else:
                del self.counts[value]
        if entry[2] is not None:
            self.held -= 1
            samples.pop(entry[2], None)

    def _refill(self, entries: list[Entry]) -> None:
        self.entries = deque(entries)
        self.counts = {}
        self.held = 0
        for entry in entries:
            self._enter(entry)

    def _add_late(
        self, entry: Entry, count: int, distinct: bool, samples: dict[str, Any]
    ) -> list[Entry] | None:
        """The exact path for an activity older than the newest: insert it in order, drop
        what is `width` older than the newest, and look for any window that holds it."""
        items = list(self.entries)
        times = [e[0] for e in items]
        now = entry[0]
        position = bisect.bisect_right(times, now)
        items.insert(position, entry)
        times.insert(position, now)
        cut = bisect.bisect_right(times, times[-1] - self.width)
        for dropped in items[:cut]:
            if dropped[2] is not None:
                samples.pop(dropped[2], None)
        del items[:cut], times[:cut]
        self._refill(items)
        first = bisect.bisect_right(times, now - self.width)
        last = bisect.bisect_right(times, now)
        for start in range(first, last):
            end = bisect.bisect_left(times, times[start] + self.width)
            inside = items[start:end]
            size = len({e[1] for e in inside if e[1] is not None}) if distinct else len(inside)
            if size >= count:
                return inside
        return None
