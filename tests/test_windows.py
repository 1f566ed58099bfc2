"""The incremental threshold window against the definition it implements, on random
streams: mostly in time order, some late, with and without distinct values."""

from __future__ import annotations

import random

import pytest

from engine.correlation.windows import Window


def definition(
    kept: list[list], entry: list, width: float, count: int, distinct: bool
) -> tuple[list[list], list[list] | None]:
    """Keep `entry` among the entries within `width` of the newest; the first window
    [s, s + width), s in (now - width, now], that holds `entry` and reaches `count`."""
    kept = sorted([*kept, entry], key=lambda e: e[0])
    newest = kept[-1][0]
    kept = [e for e in kept if e[0] > newest - width]
    now = entry[0]
    for start in kept:
        if not now - width < start[0] <= now:
            continue
        inside = [e for e in kept if start[0] <= e[0] < start[0] + width]
        size = len({e[1] for e in inside if e[1] is not None}) if distinct else len(inside)
        if size >= count:
            return kept, inside
    return kept, None


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("distinct", [False, True])
def test_every_answer_matches_the_definition(seed, distinct):
    rng = random.Random(seed)
    width, count = 60.0, rng.choice([2, 3, 5])
    window = Window([], width, count, distinct)
    samples: dict[str, bytes] = {}
    kept: list[list] = []
    now = 0.0
    for n in range(400):
        now += rng.choice([0.0, 1.0, 5.0, 20.0, 90.0])
        moment = now - rng.choice([30.0, 70.0]) if rng.random() < 0.1 else now
        value = rng.choice(["a", "b", "c", "d", None]) if distinct else None
        name = f"s{n}" if window.held < 3 else None
        if name is not None:
            samples[name] = b"{}"
        entry = [moment, value, name]
        kept, expected = definition(kept, entry, width, count, distinct)
        got = window.add(entry, samples)
        assert got == expected, f"step {n}"
        assert window.live() == kept
        assert window.held == sum(1 for e in kept if e[2] is not None)
        assert set(samples) == {e[2] for e in kept if e[2] is not None}


def test_a_window_rebuilt_from_its_stored_entries_answers_alike():
    entries = [[float(t), f"v{t % 4}", None] for t in range(0, 50, 5)]
    rebuilt = Window([list(e) for e in entries], 60.0, 5, True)
    grown = Window([], 60.0, 5, True)
    for entry in entries:
        grown.add(list(entry), {})
    assert rebuilt.counts == grown.counts
    assert rebuilt.add([51.0, "v9", None], {}) == grown.add([51.0, "v9", None], {})


def test_release_forgets_the_windows_samples():
    samples = {"a": b"1", "b": b"2", "other": b"3"}
    window = Window([[1.0, None, "a"], [2.0, None, "b"], [3.0, None, None]], 60.0, 3, False)
    window.release(samples)
    assert samples == {"other": b"3"}


def test_in_order_adds_do_not_rescan(monkeypatch):
    """The per-match path never takes the scan for activities in time order."""
    window = Window([], 10.0, 1000, False)
    monkeypatch.setattr(Window, "_add_late", lambda *a: pytest.fail("scanned"))
    times = sorted(random.Random(3).uniform(0, 1000) for _ in range(500))
    for t in times:
        window.add([t, None, None], {})
    assert len(window.live()) == sum(1 for t in times if t > times[-1] - 10.0)
