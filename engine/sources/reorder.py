"""A bounded reorder buffer: roughly ordered input comes out in `created_at` order.

Exports are often ordered only roughly (pages merged, clocks of several writers), and
windows must be evaluated in event order. Holding the last N activities and always
releasing the oldest fixes any disorder shorter than N activities, in bounded memory.
An activity older than one already released still comes out (it is late, not lost).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import TypeVar

from engine.activity import ActivityRecord

T = TypeVar("T")


def reorder(
    records: Iterable[ActivityRecord | T], capacity: int = 10_000
) -> Iterator[ActivityRecord | T]:
    """Activities in time order within `capacity`; other records pass straight through."""
    heap: list[tuple[float, int, ActivityRecord]] = []
    push, pushpop, pop = heapq.heappush, heapq.heappushpop, heapq.heappop
    for sequence, record in enumerate(records):
        if type(record) is not ActivityRecord:
            yield record
            continue
        if len(heap) < capacity:
            push(heap, (record.epoch, sequence, record))
        else:
            yield pushpop(heap, (record.epoch, sequence, record))[2]
    while heap:
        yield pop(heap)[2]


def sort_all(records: Iterable[ActivityRecord | T]) -> Iterator[ActivityRecord | T]:
    """Everything in time order (for newest-first exports); holds the whole input."""
    activities: list[ActivityRecord] = []
    for record in records:
        if isinstance(record, ActivityRecord):
            activities.append(record)
        else:
            yield record
    activities.sort(key=lambda a: a.created_at)
    yield from activities
