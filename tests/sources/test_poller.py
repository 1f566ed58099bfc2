"""The poller against the mock API over loopback, with a real SQLite file and a fake clock
shared by both: catch-up, lookback, overlap, late activity, dedup, failures, recovery."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from engine.activity import format_timestamp, parse_timestamp
from engine.sources.compliance_api import ComplianceClient, Page, RateLimitError
from engine.sources.files import Rejected
from engine.sources.poller import SEEN_NAMESPACE, Checkpoint, Poller
from engine.state.sqlite import SqliteStore
from engine.tools.mock_api import Faults, ScriptedResponse

from .conftest import KEY, FakeClock, activity, db_meta, spaced

T0 = datetime(2026, 5, 4, 6, 0, tzinfo=UTC)


def make_poller(mock, clock, store, **kwargs):
    client = ComplianceClient(
        mock.url,
        KEY,
        clock=clock,
        sleep=clock.sleep,
        max_requests_per_minute=600,
        max_retries=kwargs.pop("max_retries", 5),
    )
    kwargs.setdefault("page_size", 100)
    kwargs.setdefault("lookback", timedelta(hours=24))
    kwargs.setdefault("overlap", timedelta(minutes=10))
    return Poller(client, store, clock=clock, **kwargs)


def drain(poller, store, batches=None):
    """What `detect run` does with a pass, minus the rules: stage and commit each batch."""
    records = []
    for count, batch in enumerate(poller.poll(), start=1):
        records.extend(batch.records)
        poller.stage(batch)
        store.commit()
        if batches is not None and count >= batches:
            break
    return records


def ids(records):
    return [r.raw["id"] for r in records if not isinstance(r, Rejected)]


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(tmp_path / "state.db")
    yield store
    store.close()


def test_catch_up_across_many_pages_honours_lookback_and_the_last_minute(
    start_mock, store, tmp_path
):
    items = spaced(3000, T0, timedelta(seconds=2.4))  # two hours of activity
    clock = FakeClock(T0 + timedelta(hours=2))
    mock = start_mock(items, clock=clock)
    poller = make_poller(mock, clock, store, lookback=timedelta(minutes=90))
    got = drain(poller, store)

    since = clock.datetime - timedelta(minutes=90)
    upper = clock.datetime - timedelta(seconds=60)
    expected = [a["id"] for a in items if since <= parse_timestamp(a["created_at"]) < upper]
    assert ids(got) == expected  # every one, once, oldest first
    times = [r.created_at for r in got]
    assert times == sorted(times)
    # One anchor query, then one request per page of 100 plus the empty last one.
    pages = [r for r in mock.requests if r.param("before_id")]
    assert len(pages) == len(expected) // 100 + 1
    assert mock.requests[0].param("limit") == "1"
    for request in mock.requests:
        bound = request.param("created_at.lt")
        assert bound and parse_timestamp(bound) <= clock.datetime - timedelta(seconds=60)
    checkpoint = db_meta(tmp_path / "state.db", "checkpoint")
    assert checkpoint["cursor"] == expected[-1]
    assert checkpoint["caught_up_to"] == format_timestamp(upper.replace(microsecond=0))


def test_first_run_with_nothing_older_walks_to_the_oldest_page(start_mock, store):
    items = spaced(12_000, T0, timedelta(seconds=0.5))
    clock = FakeClock(T0 + timedelta(hours=3))
    mock = start_mock(items, clock=clock)
    poller = make_poller(mock, clock, store, page_size=1000)
    got = drain(poller, store)
    assert ids(got) == [a["id"] for a in items]
    walk = [r for r in mock.requests if r.param("created_at.gte")]
    assert [r.param("limit") for r in walk] == ["5000"] * 3


def test_a_new_poller_resumes_from_the_stored_checkpoint(start_mock, tmp_path):
    items = spaced(1000, T0, timedelta(seconds=3))
    clock = FakeClock(T0 + timedelta(hours=2))
    mock = start_mock(items, clock=clock)
    first_store = SqliteStore(tmp_path / "state.db")
    first = drain(
        make_poller(mock, clock, first_store, lookback=timedelta(minutes=40)),
        first_store,
        batches=3,
    )
    first_store.close()
    store = SqliteStore(tmp_path / "state.db")
    second = drain(make_poller(mock, clock, store, lookback=timedelta(minutes=40)), store)
    store.close()
    got = ids(first) + ids(second)
    since = clock.datetime - timedelta(minutes=40)
    assert got == [a["id"] for a in items if parse_timestamp(a["created_at"]) >= since]


def stream(start_mock, clock, seconds=5, hours=3):
    """Activity every `seconds` for `hours`, visible only once the clock reaches it."""
    items = spaced(int(hours * 3600 / seconds), T0, timedelta(seconds=seconds))
    return items, start_mock(items, clock=clock)


def test_steady_polling_rereads_the_overlap_and_drops_what_it_saw(start_mock, store):
    clock = FakeClock(T0 + timedelta(hours=1))
    items, mock = stream(start_mock, clock)
    poller = make_poller(mock, clock, store, lookback=timedelta(minutes=30))
    got, duplicates = [], 0
    for _ in range(30):
        for batch in poller.poll():
            got.extend(batch.records)
            duplicates += batch.duplicates
            poller.stage(batch)
            store.commit()
        clock.advance(60)
    since = T0 + timedelta(minutes=30)
    upper = clock.datetime - timedelta(seconds=120)
    expected = [a["id"] for a in items if since <= parse_timestamp(a["created_at"]) < upper]
    assert ids(got) == expected
    assert len(set(ids(got))) == len(got)
    # Each pass after the first re-read about ten minutes (120 activities) it had seen.
    assert duplicates >= 29 * 100
    anchors = [r for r in mock.requests if r.param("limit") == "1"]
    assert len(anchors) == 30


def test_memory_for_seen_ids_is_bounded_by_the_overlap(start_mock, store):
    clock = FakeClock(T0 + timedelta(hours=1))
    _, mock = stream(start_mock, clock, seconds=2)
    poller = make_poller(mock, clock, store, lookback=timedelta(minutes=30))
    sizes = []
    for _ in range(40):
        drain(poller, store)
        sizes.append(len(poller.seen))
        clock.advance(60)
    # Overlap (10 min) + one poll interval + the safety minute, at one activity per 2 s.
    assert max(sizes) <= (10 * 60 + 60 + 60) / 2 + 5
    assert sizes[-1] == sizes[-2]  # steady, not growing
    assert len(list(store.items(SEEN_NAMESPACE))) == len(poller.seen)


def test_late_activity_inside_the_overlap_is_picked_up(start_mock, store):
    clock = FakeClock(T0 + timedelta(hours=1))
    _, mock = stream(start_mock, clock, seconds=30)
    poller = make_poller(mock, clock, store, lookback=timedelta(minutes=30))
    drain(poller, store)
    upper = clock.datetime - timedelta(seconds=60)
    # Indexed late: created 4 minutes before the window we already read, visible only now.
    late = activity("activity_late_inside", upper - timedelta(minutes=4), "org_sso_toggled")
    # And one later than the overlap allows: 25 minutes late, with a 10-minute overlap.
    lost = activity("activity_late_beyond", upper - timedelta(minutes=25), "org_sso_toggled")
    clock.advance(60)
    mock.add(late, visible_at=clock())
    mock.add(lost, visible_at=clock())
    got = ids(drain(poller, store))
    assert "activity_late_inside" in got
    assert "activity_late_beyond" not in got  # the documented limit: overlap + 1 minute
    clock.advance(60)
    assert "activity_late_inside" not in ids(drain(poller, store))  # and only once


def test_duplicated_items_from_the_api_are_dropped(start_mock, store):
    clock = FakeClock(T0 + timedelta(hours=2))
    items = spaced(1500, T0, timedelta(seconds=3))
    mock = start_mock(items, clock=clock, faults=Faults(duplicates=1.0, seed=2))
    poller = make_poller(mock, clock, store, lookback=timedelta(minutes=70))
    records = []
    dropped = 0
    for batch in poller.poll():
        records.extend(batch.records)
        dropped += batch.duplicates
        poller.stage(batch)
        store.commit()
    since = clock.datetime - timedelta(minutes=70)
    assert ids(records) == [a["id"] for a in items if parse_timestamp(a["created_at"]) >= since]
    assert dropped >= 2 * 5  # five pages: a repeat inside each, and the cursor re-sent


def test_a_429_never_moves_the_cursor(start_mock, store, tmp_path):
    items = spaced(1000, T0, timedelta(seconds=3))
    clock = FakeClock(T0 + timedelta(hours=2))
    mock = start_mock(items, clock=clock)
    poller = make_poller(mock, clock, store, lookback=timedelta(hours=3), max_retries=0)
    got = drain(poller, store, batches=3)
    saved = db_meta(tmp_path / "state.db", "checkpoint")
    mock.script(ScriptedResponse(429, headers={"retry-after": "5"}))
    with pytest.raises(RateLimitError):
        drain(poller, store)
    assert db_meta(tmp_path / "state.db", "checkpoint") == saved
    assert poller.checkpoint == Checkpoint.from_json(saved)
    # With retries the wait is the one asked for, and the retry asks for the same page.
    poller.client.max_retries = 3
    mock.script(ScriptedResponse(429, headers={"retry-after": "5"}))
    got += drain(poller, store)
    assert 5.0 in clock.sleeps
    limited = [i for i, r in enumerate(mock.requests) if r.status == 429]
    for index in limited:
        assert mock.requests[index + 1].params == mock.requests[index].params
    assert ids(got) == [a["id"] for a in items]


def test_a_cursor_the_api_no_longer_knows_is_recovered_from_its_time(start_mock, store, caplog):
    items = spaced(600, T0, timedelta(seconds=6))
    clock = FakeClock(T0 + timedelta(hours=3))
    mock = start_mock(items, clock=clock)
    cursor_time = parse_timestamp(items[299]["created_at"])
    store.set_meta(
        "checkpoint",
        Checkpoint(
            settled_before=cursor_time + timedelta(seconds=1),
            cursor="activity_forgotten",
            cursor_time=cursor_time,
            scope=f"{mock.url} orgs=*",
        ).to_json(),
    )
    store.put(SEEN_NAMESPACE, items[299]["id"], cursor_time.timestamp())
    store.commit()
    poller = make_poller(mock, clock, store)
    with caplog.at_level(logging.WARNING):
        got = drain(poller, store)
    assert "no longer accepted" in caplog.text
    assert ids(got) == [a["id"] for a in items[300:]]


def test_a_changed_organization_filter_continues_without_duplicates(start_mock, store, caplog):
    clock = FakeClock(T0 + timedelta(hours=1))
    _, mock = stream(start_mock, clock, seconds=10)
    first = make_poller(mock, clock, store, lookback=timedelta(minutes=30))
    got = ids(drain(first, store))
    clock.advance(120)
    second = make_poller(mock, clock, store, organization_ids=["org_01Aa"])
    with caplog.at_level(logging.WARNING):
        got += ids(drain(second, store))
    assert "the source changed" in caplog.text
    assert len(got) == len(set(got))
    assert [r.params.get("organization_ids[]") for r in mock.requests[-2:]] == [["org_01Aa"]] * 2


def test_a_server_clock_behind_ours_is_honoured(start_mock, store):
    clock = FakeClock(T0 + timedelta(hours=1))
    server = FakeClock(T0 + timedelta(hours=1) - timedelta(minutes=5))
    items = spaced(500, T0, timedelta(seconds=10))
    mock = start_mock(items, clock=server)
    poller = make_poller(mock, clock, store, lookback=timedelta(minutes=30))
    drain(poller, store)
    clock.advance(60)
    server.advance(60)
    mark = len(mock.requests)
    drain(poller, store)
    for request in mock.requests[mark:]:
        assert parse_timestamp(request.param("created_at.lt")) <= server.datetime - timedelta(
            seconds=60
        )


def test_records_past_the_upper_bound_are_never_evaluated(start_mock, store):
    clock = FakeClock(T0 + timedelta(hours=1))
    mock = start_mock([], clock=clock)
    poller = make_poller(mock, clock, store)
    poller.checkpoint = Checkpoint(settled_before=T0)
    upper = T0 + timedelta(minutes=30)
    inside = activity("activity_in", upper - timedelta(seconds=1))
    beyond = activity("activity_out", upper)
    batch = poller._batch(
        Page([beyond, inside], True, "activity_out", "activity_in", "req"), upper, T0, upper
    )
    assert ids(batch.records) == ["activity_in"]
    assert batch.complete  # the API ignored created_at.lt: the pass ends there
    assert batch.checkpoint.cursor == "activity_in"


def test_a_record_that_fails_the_model_is_rejected_once(start_mock, store):
    clock = FakeClock(T0 + timedelta(hours=1))
    broken = activity("activity_broken", T0 + timedelta(minutes=50))
    del broken["actor"]
    items = [*spaced(20, T0 + timedelta(minutes=45), timedelta(seconds=20)), broken]
    mock = start_mock(items, clock=clock)
    poller = make_poller(mock, clock, store, lookback=timedelta(hours=2))
    first = drain(poller, store)
    rejected = [r for r in first if isinstance(r, Rejected)]
    assert len(rejected) == 1 and "actor" in rejected[0].reason
    assert rejected[0].source.startswith("compliance-api req_")
    clock.advance(60)
    assert not [r for r in drain(poller, store) if isinstance(r, Rejected)]
