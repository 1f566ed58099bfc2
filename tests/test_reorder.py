"""The reorder buffer: any disorder shorter than its capacity comes out in time order."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from engine.activity import parse_activity
from engine.sources.files import Rejected
from engine.sources.reorder import MAX_SLOT_DEPTH, reorder, sort_all

START = datetime(2026, 5, 7, 10, 0, tzinfo=UTC)


def _activity(index: int, second: int):
    moment = (START + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return parse_activity(
        {"id": f"a{index}", "created_at": moment, "type": "t", "actor": {"type": "user_actor"}}
    )


def _keys(records):
    return [(r.epoch, r.id) for r in records]


@pytest.mark.parametrize("displacement", [1, 5, MAX_SLOT_DEPTH - 1, MAX_SLOT_DEPTH * 3])
def test_bounded_disorder_comes_out_sorted(displacement):
    rng = random.Random(displacement)
    seconds = list(range(2000))
    # Shuffle inside blocks: no activity moves further than `displacement` places.
    for start in range(0, len(seconds), displacement + 1):
        block = seconds[start : start + displacement + 1]
        rng.shuffle(block)
        seconds[start : start + displacement + 1] = block
    records = [_activity(i, s) for i, s in enumerate(seconds)]
    out = list(reorder(records, capacity=displacement + 2))
    assert [r.epoch for r in out] == sorted(r.epoch for r in records)
    assert len(out) == len(records)


def test_a_newest_first_input_within_capacity_is_fully_sorted():
    records = [_activity(i, 5000 - i) for i in range(5000)]
    out = list(reorder(records, capacity=5000))
    assert _keys(out) == sorted(_keys(records))


def test_equal_times_keep_input_order():
    records = [_activity(i, i // 10) for i in range(100)]
    records = records[50:] + records[:50]
    out = list(reorder(records, capacity=100))
    assert [r.id for r in out] == [f"a{i}" for i in range(100)]


def test_disorder_beyond_capacity_is_late_but_not_lost():
    records = [_activity(i, i) for i in range(1, 50)] + [_activity(0, 0)]
    out = list(reorder(records, capacity=10))
    ids = [r.id for r in out]
    assert len(ids) == 50
    # a1..a39 were released before it arrived; it still comes out, ahead of the held ones.
    assert ids.index("a0") == ids.index("a39") + 1
    assert ids[-10:] == [f"a{i}" for i in range(40, 50)]


def test_rejected_records_pass_straight_through():
    rejected = Rejected("f", 3, "bad", "{}")
    out = list(reorder([_activity(0, 1), rejected, _activity(1, 0)], capacity=10))
    assert out[0] is rejected
    assert [r.id for r in out[1:]] == ["a1", "a0"]
    assert [r.id for r in sort_all([_activity(0, 1), _activity(1, 0)])] == ["a1", "a0"]


def _reference(records, capacity):
    """What `reorder` promises, written plainly: hold up to `capacity` activities and,
    when one more arrives, release the earliest (input order among equal times)."""
    held = []
    for arrival, record in enumerate(records):
        if isinstance(record, Rejected):
            yield record
            continue
        held.append((record.epoch, arrival, record))
        if len(held) > capacity:
            held.sort(key=lambda item: item[:2])
            yield held.pop(0)[2]
    for item in sorted(held, key=lambda item: item[:2]):
        yield item[2]


@pytest.mark.parametrize("seed", range(40))
def test_matches_the_plain_definition_on_random_input(seed):
    rng = random.Random(seed)
    count = rng.randrange(0, 400)
    shape = seed % 4
    records = []
    for i in range(count):
        if rng.random() < 0.05:
            records.append(Rejected("f", i, "bad", "{}"))
            continue
        if shape == 0:  # few distinct times: many ties
            second = rng.randrange(20)
        elif shape == 1:  # jittered
            second = i + rng.randrange(-15, 15)
        elif shape == 2:  # newest first: deep slotting, the heap
            second = count - i + rng.randrange(3)
        else:  # in order with a few very late ones
            second = i if rng.random() < 0.9 else rng.randrange(count)
        records.append(_activity(i, second))
    capacity = rng.choice([0, 1, 3, 10, MAX_SLOT_DEPTH + 1, 200, 1000])
    got = list(reorder(records, capacity=capacity))
    assert [id(r) for r in got] == [id(r) for r in _reference(records, capacity)]


def test_rejected_records_pass_straight_through_after_the_switch_to_a_heap():
    records = [_activity(i, 1000 - i) for i in range(3 * MAX_SLOT_DEPTH)]
    rejected = Rejected("f", 7, "bad", "{}")
    source = iter([*records, rejected, _activity(999, 0)])
    out = reorder(source, capacity=1000)
    assert next(out) is rejected  # released as soon as read, before any held activity
    assert [r.id for r in out] == ["a999", *(f"a{i}" for i in reversed(range(len(records))))]
