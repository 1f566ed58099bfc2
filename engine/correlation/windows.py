"""Sliding threshold windows, held in memory and counted as they slide.

A threshold asks, at every match, whether some window of `width` seconds that holds the
match holds `count` activities (or `count` distinct values). Rescanning a key's entries
at every match costs O(k) on a busy key. Activities nearly always arrive in time order,
and then the only window that can hold more than the others is the one ending at the
newest activity: it is kept up to date by appending on the right, evicting on the left and
counting distinct values in a dict, O(1) per match. A late activity takes the exact path:
a scan of the key's entries for any window that holds it.

An entry is `[epoch, distinct value or None, sample name or None]`, the form the state
store keeps between processes. Entries sit in a plain list read from a moving head (a
deque costs half a kilobyte per key, and a busy organization has tens of thousands).
"""

from __future__ import annotations

import bisect
from typing import Any

Entry = list[Any]


class Window:
    """One threshold key's entries within `width` of the newest, in time order."""

    __slots__ = ("count", "counts", "distinct", "entries", "head", "held", "width")

    def __init__(self, entries: list[Entry], width: float, count: int, distinct: bool) -> None:
        self.width = width
        self.count = count  # entries (or, with `distinct`, values) that fire the threshold
        self.distinct = distinct
        self.entries: list[Entry] = []  # the window is entries[head:]
        self.head = 0
        self.counts: dict[Any, int] = {}  # distinct value -> entries holding it
        self.held = 0  # entries naming a held sample activity
        if entries:
            self._refill(list(entries))  # its own list: the caller's may be the store's

    @property
    def newest(self) -> float:
        return self.entries[-1][0]

    def live(self) -> list[Entry]:
        """The entries in the window, oldest first (a copy)."""
        return self.entries[self.head :]

    def progress(self) -> float:
        """How far the window is towards its count (1.0: there)."""
        size = len(self.counts) if self.distinct else len(self.entries) - self.head
        return size / self.count

    def add(self, entry: Entry, samples: dict[str, Any]) -> list[Entry] | None:
        """Add `entry` (evicting what fell out of the window, and their held samples from
        `samples`); the entries of a window that holds it and reaches `count`, else None."""
        entries = self.entries
        now = entry[0]
        if entries and entries[-1][0] > now:
            return self._add_late(entry, samples)
        # In time order: append, then evict from the head (inlined: the per-match path).
        entries.append(entry)
        counts = self.counts
        value = entry[1]
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
        if entry[2] is not None:
            self.held += 1
        horizon = now - self.width
        head = self.head
        while entries[head][0] <= horizon:
            self._leave(entries[head], samples)
            head += 1
        if head > 16 and head * 2 > len(entries):
            del entries[:head]  # amortized: each entry is moved at most once per halving
            head = 0
        self.head = head
        size = len(counts) if self.distinct else len(entries) - head
        return entries[head:] if size >= self.count else None

    def release(self, samples: dict[str, Any]) -> None:
        """Forget the held samples of every entry (the window is being dropped)."""
        for entry in self.live():
            if entry[2] is not None:
                samples.pop(entry[2], None)

    def forget_samples(self, samples: dict[str, Any]) -> None:
        """Drop the window's held samples (memory is short): its entries stop naming
        them, and its next entries may hold new ones."""
        entries = self.entries
        for index in range(self.head, len(entries)):
            entry = entries[index]
            if entry[2] is not None:
                samples.pop(entry[2], None)
                entries[index] = [entry[0], entry[1], None]  # entry lists may be shared
        self.held = 0

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
        self.entries = entries
        self.head = 0
        self.counts = {}
        self.held = 0
        for entry in entries:
            self._enter(entry)

    def _add_late(self, entry: Entry, samples: dict[str, Any]) -> list[Entry] | None:
        """The exact path for an activity older than the newest: insert it in order, drop
        what is `width` older than the newest, and look for any window that holds it."""
        items = self.live()
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
            values = {e[1] for e in inside if e[1] is not None} if self.distinct else inside
            if len(values) >= self.count:
                return inside
        return None
