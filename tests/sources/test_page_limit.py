"""A page over `source.max_page_bytes` is refused before it fills memory, asked for again
with half the `limit`, and recorded; nothing it held is lost. Against the mock API on
loopback serving oversized pages (`page_padding`)."""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import random
from datetime import UTC, datetime, timedelta

import pytest

from engine.runs.build import PAGE_REFUSED_KEY
from engine.runs.live import build_runner
from engine.sources.compliance_api import ComplianceClient, PageTooLargeError
from engine.state.sqlite import SqliteStore
from engine.tools.mock_api import ScriptedResponse

from .conftest import KEY, FakeClock, db_alerts, db_meta, end_of, feed, make_config, spaced

T = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
PAD = 2_000  # bytes after each activity: a page of n activities is about n * 2.3 kB


def client_for(mock, clock, **kwargs):
    kwargs.setdefault("max_requests_per_minute", 600)
    return ComplianceClient(
        mock.url, KEY, clock=clock, sleep=clock.sleep, rng=random.Random(0), **kwargs
    )


def test_an_oversized_page_is_refused_with_its_size_and_the_limit_then_read_smaller(
    start_mock, caplog
):
    clock = FakeClock(T)
    items = spaced(40, T - timedelta(hours=1), timedelta(minutes=1))
    mock = start_mock(items, clock=clock, page_padding=PAD)
    refused: list[PageTooLargeError] = []
    client = client_for(mock, clock, max_page_bytes=50_000, on_refusal=refused.append)
    with caplog.at_level(logging.WARNING):
        page = client.list_activities(limit=40)
    # Each refusal halves the `limit` until a page fits.
    limits = [int(r.param("limit")) for r in mock.requests]
    assert limits[0] == 40 and limits == sorted(limits, reverse=True)
    assert all(b == a // 2 for a, b in itertools.pairwise(limits))
    assert len(refused) == len(limits) - 1 >= 1
    first = refused[0]
    assert first.size > 50_000 and first.max_bytes == 50_000 and first.page_limit == 40
    text = str(first)
    assert f"{first.size:,} bytes" in text and "over source.max_page_bytes (50,000 bytes)" in text
    assert first.request_id and first.label == "page_too_large" and not first.fatal
    assert "asking again with limit=20" in caplog.text
    # The smaller page is the newest end of the same query; the cap stays for later calls.
    assert page.has_more and len(page.data) == limits[-1]
    assert [a["id"] for a in page.data] == [a["id"] for a in reversed(items)][: limits[-1]]
    assert client.page_size_cap == limits[-1] and client.pages_refused == len(refused)
    client.list_activities(limit=1000)
    assert int(mock.requests[-1].param("limit")) == limits[-1]


def test_a_cursor_walk_under_the_limit_reads_every_activity_once(start_mock):
    clock = FakeClock(T)
    items = spaced(100, T - timedelta(hours=2), timedelta(minutes=1))
    mock = start_mock(items, clock=clock, page_padding=PAD)
    client = client_for(mock, clock, max_page_bytes=64_000)
    seen: list[str] = []
    page = client.list_activities(limit=100)
    seen += [a["id"] for a in page.data]
    while page.has_more:
        page = client.list_activities(after_id=page.last_id, limit=100)
        seen += [a["id"] for a in page.data]
    assert sorted(seen) == sorted(a["id"] for a in items) and len(seen) == len(set(seen))
    assert client.pages_refused >= 1 and client.page_size_cap < 100


def test_one_activity_over_the_limit_fails_the_request_with_the_clear_error(start_mock):
    clock = FakeClock(T)
    mock = start_mock(
        spaced(3, T - timedelta(hours=1), timedelta(minutes=1)), clock=clock, page_padding=5_000
    )
    client = client_for(mock, clock, max_page_bytes=4_096)
    with pytest.raises(PageTooLargeError) as caught:
        client.list_activities(limit=4)
    assert [int(r.param("limit")) for r in mock.requests] == [4, 2, 1]
    assert caught.value.page_limit == 1 and not caught.value.retryable
    assert "over source.max_page_bytes (4,096 bytes)" in str(caught.value)


def test_a_compressed_body_is_limited_on_its_decoded_bytes(start_mock):
    clock = FakeClock(T)
    mock = start_mock(spaced(3, T - timedelta(hours=1), timedelta(minutes=1)), clock=clock)
    page = {"data": [{"id": "activity_x", "pad": " " * 3_000_000}], "has_more": False}
    body = gzip.compress(json.dumps(page).encode())
    assert len(body) < 100_000
    mock.script(ScriptedResponse(200, body=body, headers={"content-encoding": "gzip"}))
    client = client_for(mock, clock, max_page_bytes=1_000_000)
    with pytest.raises(PageTooLargeError) as caught:
        client.list_activities(limit=1)
    assert "more than 1,000,000 bytes (read so far)" in str(caught.value)
    # The connection was dropped, not drained: the next request works.
    assert client.list_activities(limit=3).data


def test_detect_run_reads_everything_through_oversized_pages_and_records_them(
    start_mock, ruleset, tmp_path
):
    items = feed(3_000, seed=5)
    clock = FakeClock(end_of(items) + timedelta(minutes=5))
    mock = start_mock(items, clock=clock, page_padding=1_000)
    # page_size 1000: about 1.7 MB a page, over the 1 MiB limit; 500 fits.
    config = make_config(
        tmp_path, mock.url, lookback="2d", page_size=1000, max_page_bytes=1024 * 1024
    )
    store = SqliteStore(config.state.path)
    runner = build_runner(config, ruleset, store, clock=clock, sleep=clock.sleep)
    assert runner.run(once=True) == 0
    store.close()
    status = db_meta(config.state.path, "source")
    assert status["activities"] == len(items)
    refused = db_meta(config.state.path, PAGE_REFUSED_KEY)
    assert refused["count"] >= 1
    last = refused["last"]
    assert last["error_type"] == "page_too_large" and last["max_page_bytes"] == 1024 * 1024
    assert last["size"] > 1024 * 1024 and "over source.max_page_bytes (1.0 MiB" in last["message"]
    assert last["request_id"].startswith("req_mock")
    # The same alerts as without padding: no activity lost or read twice.
    plain_path = tmp_path / "plain"
    plain_path.mkdir()
    plain = start_mock(items, clock=clock)
    config2 = make_config(plain_path, plain.url, lookback="2d", page_size=1000)
    store2 = SqliteStore(config2.state.path)
    runner2 = build_runner(config2, ruleset, store2, clock=clock, sleep=clock.sleep)
    assert runner2.run(once=True) == 0
    store2.close()
    before = {k: v["event_count"] for k, v in db_alerts(config2.state.path).items()}
    after = {k: v["event_count"] for k, v in db_alerts(config.state.path).items()}
    assert before and after == before
