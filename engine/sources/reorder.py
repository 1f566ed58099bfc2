"""A bounded reorder buffer: roughly ordered input comes out in `created_at` order.

Exports are often ordered only roughly (pages merged, clocks of several writers), and
windows must be evaluated in event order. Holding the last N activities and always
releasing the oldest fixes any disorder shorter than N activities, in bounded memory.
An activity older than one already released still comes out (it is late, not lost).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TypeVar

from engine.activity import ActivityRecord

T = TypeVar("T")
MAX_SLOT_DEPTH = 64


def reorder(
    records: Iterable[ActivityRecord | T], capacity: int = 10_000
) -> Iterator[ActivityRecord | T]:
    """Activities in time order within `capacity`; other records pass straight through.

    Mostly ordered input costs an append and a popleft per activity: the buffer is a
    sorted deque and a late activity is slotted in from the right. Input so disordered
    that slotting in gets deep (a newest-first file) switches to a heap for good.
    """
    window: deque[tuple[float, int, ActivityRecord]] = deque()
    heap: list[tuple[float, int, ActivityRecord]] | None = None
    for sequence, record in enumerate(records):
        if type(record) is not ActivityRecord:
            yield record
            continue
        item = (record.epoch, sequence, record)
        if heap is not None:
            if len(heap) < capacity:
                heapq.heappush(heap, item)
            else:
                yield heapq.heappushpop(heap, item)[2]
            continue
        if not window or window[-1][0] <= item[0]:
            window.append(item)
        else:
            position = len(window) - 1
            while position >= 0 and window[position][0] > item[0]:
                position -= 1
                if len(window) - position > MAX_SLOT_DEPTH:
                    heap = list(window)  # sorted, hence already a heap
                    window.clear()
                    break
            if heap is not None:
                heapq.heappush(heap, item)
                if len(heap) > capacity:
                    yield heapq.heappop(heap)[2]
                continue
            window.insert(position + 1, item)
        if len(window) > capacity:
            yield window.popleft()[2]
    if heap is not None:
        while heap:
            yield heapq.heappop(heap)[2]
    while window:
        yield window.popleft()[2]


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
