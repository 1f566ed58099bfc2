"""When people work: the daily and weekly rhythm, in each person's own time zone.

The curve is the familiar knowledge-work one: a ramp from 7:00, the busiest hours 9:00 to
11:30 and 13:30 to 16:00, a lunch dip, a long thin evening tail (people finishing things
after dinner) and almost nothing from 1:00 to 5:00. Weekends carry about 7% of a
weekday's volume, spread over the late morning and afternoon.

A simulated day is a UTC day, but people live in their own zone: for each (offset,
UTC weekday) the curve is laid over the 96 quarter hours of the UTC day with the local
weekday of each quarter, so a Sydney Monday morning lands on a UTC Sunday evening. The
table also gives the day's volume relative to a full local weekday.
"""

from __future__ import annotations

import random

from engine.orgsim.wire import DAY, MINUTE

# Relative activity per local hour.
# fmt: off
WEEKDAY = (
    0.3, 0.15, 0.1, 0.08, 0.1, 0.25, 0.8, 2.5, 6.0, 9.0, 10.0, 9.5,
    6.5, 8.5, 9.5, 9.0, 7.5, 5.0, 2.8, 2.0, 2.0, 1.8, 1.2, 0.6,
)
WEEKEND = (
    0.05, 0.03, 0.02, 0.02, 0.02, 0.03, 0.05, 0.1, 0.2, 0.35, 0.5, 0.55,
    0.5, 0.5, 0.5, 0.45, 0.4, 0.35, 0.3, 0.3, 0.3, 0.25, 0.15, 0.08,
)
# fmt: on
_WEEKDAY_TOTAL = sum(WEEKDAY)
_TABLE_BITS = 10
_QUARTER = 15 * MINUTE


def weekday(epoch_day: int) -> int:
    """Monday 0 … Sunday 6 of a day counted from 1970-01-01 (a Thursday)."""
    return (epoch_day + 3) % 7


def local_weekday(t_us: int, tz_minutes: int) -> int:
    return weekday((t_us + tz_minutes * MINUTE) // DAY)


class Rhythm:
    """Samples activity times over a UTC day for a given time zone offset."""

    def __init__(self, rng: random.Random) -> None:
        self._bits = rng.getrandbits
        self._random = rng.random
        self._cache: dict[tuple[int, int], tuple[tuple[int, ...], float]] = {}

    def _table(self, tz_minutes: int, utc_weekday: int) -> tuple[tuple[int, ...], float]:
        key = (tz_minutes, utc_weekday)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        weights = []
        for quarter in range(96):
            local_minutes = quarter * 15 + tz_minutes
            day_shift, minute_of_day = divmod(local_minutes, 24 * 60)
            wd = (utc_weekday + day_shift) % 7
            curve = WEEKEND if wd >= 5 else WEEKDAY
            weights.append(curve[minute_of_day // 60] / 4)
        total = sum(weights)
        size = 1 << _TABLE_BITS
        table: list[int] = []
        acc = 0.0
        for quarter, w in enumerate(weights):
            acc += w
            while len(table) < round(acc / total * size):
                table.append(quarter)
        while len(table) < size:
            table.append(95)
        result = (tuple(table), total / _WEEKDAY_TOTAL)
        self._cache[key] = result
        return result

    def volume(self, tz_minutes: int, epoch_day: int) -> float:
        """The day's expected activity relative to a full local weekday (0.07 … 1)."""
        return self._table(tz_minutes, weekday(epoch_day))[1]

    def sample(self, tz_minutes: int, epoch_day: int) -> int:
        """A time in microseconds since the start of the UTC day, shaped by the curve."""
        table = self._table(tz_minutes, weekday(epoch_day))[0]
        return table[self._bits(_TABLE_BITS)] * _QUARTER + int(self._random() * _QUARTER)

    def is_work_hour(self, t_us: int, tz_minutes: int) -> bool:
        """Whether `t_us` falls in local office hours (8:00–18:00 on a weekday)."""
        local = t_us + tz_minutes * MINUTE
        if weekday(local // DAY) >= 5:
            return False
        return 8 * 60 <= (local % DAY) // MINUTE < 18 * 60
