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

from engine.activity import Activity

T = TypeVar("T")


def reorder(records: Iterable[Activity | T], capacity: int = 10_000) -> Iterator[Activity | T]:
    """Activities in time order within `capacity`; other records pass straight through."""
    heap: list[tuple[float, int, Activity]] = []
    for sequence, record in enumerate(records):
        if not isinstance(record, Activity):
            yield record
            continue
        heapq.heappush(heap, (record.created_at.timestamp(), sequence, record))
        if len(heap) > capacity:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


def sort_all(records: Iterable[Activity | T]) -> Iterator[Activity | T]:
    """Everything in time order (for newest-first exports); holds the whole input."""
    activities: list[Activity] = []
    for record in records:
        if isinstance(record, Activity):
            activities.append(record)
        else:
            yield record
    activities.sort(key=lambda a: a.created_at)
    yield from activities
