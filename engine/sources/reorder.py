"""A bounded reorder buffer: roughly ordered input comes out in `created_at` order.

Exports are often ordered only roughly (pages merged, clocks of several writers), and
windows must be evaluated in event order. Holding the last N activities and always
releasing the oldest fixes any disorder shorter than N activities, in bounded memory.
An activity older than one already released still comes out (it is late, not lost), and
is counted in the `ReadReport` given (`backwards`): a replay reports it and suggests
`--sort`, since windows it belonged to may already have closed.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TypeVar

from engine.activity import ActivityRecord
from engine.sources.files import ReadReport

T = TypeVar("T")
MAX_SLOT_DEPTH = 64


def reorder(
    records: Iterable[ActivityRecord | T],
    capacity: int = 10_000,
    report: ReadReport | None = None,
) -> Iterator[ActivityRecord | T]:
    """Activities in time order within `capacity`; other records pass straight through.

    Mostly ordered input costs an append and a popleft per activity: the buffer is a
    sorted deque of records and a late activity is slotted in from the right, after any
    of equal time (so ties keep their input order). Input so disordered that slotting in
    gets deep (a newest-first file) switches to a heap for good. An activity older than
    the last one released is counted in `report.backwards`.
    """
    rest = iter(records)
    released = -math.inf  # the time of the last activity released
    window: deque[ActivityRecord] = deque()
    append = window.append
    popleft = window.popleft
    newest = -math.inf  # the time of the last activity appended at the right end
    room = max(capacity, 0)  # free places left; once none, each activity in releases one
    for record in rest:
        if type(record) is not ActivityRecord:
            yield record
            continue
        epoch = record.epoch
        if epoch >= newest:
            append(record)
            newest = epoch
        else:
            if epoch < released and report is not None:
                report.backwards += 1
            position = len(window) - 1
            while position >= 0 and window[position].epoch > epoch:
                position -= 1
                if len(window) - position > MAX_SLOT_DEPTH:
                    yield from _heap_order(window, record, rest, capacity, released, report)
                    return
            window.insert(position + 1, record)
        if room:
            room -= 1
        else:
            out = popleft()
            if out.epoch > released:  # a late one released leaves it where it was
                released = out.epoch
            yield out
    while window:
        yield popleft()


def _heap_order(
    held: deque[ActivityRecord],
    late: ActivityRecord,
    rest: Iterator[ActivityRecord | T],
    capacity: int,
    released: float = -math.inf,
    report: ReadReport | None = None,
) -> Iterator[ActivityRecord | T]:
    """The rest of `reorder` once slotting in got too deep: a heap of (time, arrival,
    record), where arrival breaks ties in input order as the deque's position did."""
    if report is not None and late.epoch < released:
        report.backwards -= 1  # counted by `reorder` already; counted again below
    heap = [(record.epoch, arrival, record) for arrival, record in enumerate(held)]
    held.clear()  # `held` was sorted, so `heap` already is a heap
    arrival = len(heap)
    for record in itertools.chain((late,), rest):
        if type(record) is not ActivityRecord:
            yield record
            continue
        item = (record.epoch, arrival, record)
        arrival += 1
        if item[0] < released and report is not None:
            report.backwards += 1
        if len(heap) < capacity:
            heapq.heappush(heap, item)
        else:
            out = heapq.heappushpop(heap, item)
            if out[0] > released:
                released = out[0]
            yield out[2]
    while heap:
        yield heapq.heappop(heap)[2]


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
