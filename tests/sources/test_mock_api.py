"""The mock Compliance API answers over real HTTP with the real API's semantics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from engine.tools.mock_api import Faults, ScriptedResponse, load_feed, shift_feed

from .conftest import KEY, FakeClock, activity, spaced

T = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


def get(mock, params=None, headers=None):
    response = requests.get(
        mock.url + "/v1/compliance/activities",
        params=params or {},
        headers=HEADERS if headers is None else headers,
        timeout=5,
    )
    return response.status_code, response.json(), response.headers


def ids(body):
    return [a["id"] for a in body["data"]]


@pytest.fixture
def served(start_mock):
    # Ten activities a minute apart, two sharing a time (ties are broken by id).
    items = spaced(10, T, timedelta(minutes=1))
    items.append(activity("activity_a000004b", T + timedelta(minutes=4)))
    return start_mock(items, clock=FakeClock(T + timedelta(hours=1)))


def test_newest_first_with_ties_broken_by_id_and_paging_both_ways(served):
    status, body, headers = get(served, {"limit": 4})
    assert status == 200
    assert ids(body) == [
        "activity_a000009",
        "activity_a000008",
        "activity_a000007",
        "activity_a000006",
    ]
    assert body["has_more"] is True
    assert (body["first_id"], body["last_id"]) == ("activity_a000009", "activity_a000006")
    assert headers["request-id"].startswith("req_")
    # after_id: the next page in result order, i.e. older.
    _, older, _ = get(served, {"limit": 4, "after_id": body["last_id"]})
    assert ids(older) == [
        "activity_a000005",
        "activity_a000004b",
        "activity_a000004",
        "activity_a000003",
    ]
    _, oldest, _ = get(served, {"limit": 4, "after_id": older["last_id"]})
    assert ids(oldest) == ["activity_a000002", "activity_a000001", "activity_a000000"]
    assert oldest["has_more"] is False
    # before_id: the newer page adjacent to the cursor, still newest first.
    _, newer, _ = get(served, {"limit": 2, "before_id": "activity_a000001"})
    assert ids(newer) == ["activity_a000003", "activity_a000002"]
    assert newer["has_more"] is True
    _, newest, _ = get(served, {"limit": 5, "before_id": "activity_a000006"})
    assert ids(newest) == ["activity_a000009", "activity_a000008", "activity_a000007"]
    assert newest["has_more"] is False


def test_time_filters_org_filter_and_types(served, start_mock):
    _, body, _ = get(
        served,
        {"created_at.gte": "2026-05-04T08:02:00Z", "created_at.lt": "2026-05-04T08:05:00Z"},
    )
    assert ids(body) == [
        "activity_a000004b",
        "activity_a000004",
        "activity_a000003",
        "activity_a000002",
    ]
    _, body, _ = get(
        served,
        {"created_at.gt": "2026-05-04T08:02:00Z", "created_at.lte": "2026-05-04T08:03:00.000000Z"},
    )
    assert ids(body) == ["activity_a000003"]
    other = activity("activity_other", T, organization_id="org_02", organization_uuid="u-2")
    orgless = activity("activity_signin", T, organization_id=None, organization_uuid=None)
    mock = start_mock(
        [*spaced(2, T, timedelta(seconds=1)), other, orgless],
        clock=FakeClock(T + timedelta(minutes=1)),
    )
    _, body, _ = get(mock, {"organization_ids[]": ["org_02"]})
    assert ids(body) == ["activity_other"]
    _, body, _ = get(mock, {"organization_ids[]": ["u-2", "org_01Aa"]})
    assert set(ids(body)) == {"activity_other", "activity_a000000", "activity_a000001"}
    _, body, _ = get(mock, {"activity_types[]": ["nope"]})
    assert body["data"] == [] and body["first_id"] is None and body["last_id"] is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 5001}, "limit"),
        ({"after_id": "activity_a000001", "before_id": "activity_a000002"}, "Only one"),
        (
            {"after_id": "activity_nope"},
            'Invalid after_id. No activity found for after_id "activity_nope"',
        ),
        ({"before_id": "activity_nope"}, "Invalid before_id"),
        ({"created_at.lt": "2026-05-04 08:00"}, "created_at.lt"),
        ({"created_at.gte": "2026-05-04T08:00:00"}, "created_at.gte"),
        ({"activity_types[]": "a", "exclude_activity_types[]": "b"}, "cannot be combined"),
        ({"cursor": "x"}, "Unknown parameter"),
    ],
)
def test_documented_400s(served, params, message):
    status, body, headers = get(served, params)
    assert status == 400
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert message in body["error"]["message"]
    assert headers["request-id"]


def test_auth_version_and_path(start_mock):
    mock = start_mock([], forbidden_keys=["sk-no-scope"], clock=FakeClock(T))
    status, body, _ = get(mock, headers={"x-api-key": "wrong", "anthropic-version": "2023-06-01"})
    assert (status, body["error"]["type"]) == (401, "authentication_error")
    status, body, _ = get(mock, headers={"anthropic-version": "2023-06-01"})
    assert status == 401
    status, body, _ = get(
        mock, headers={"x-api-key": "sk-no-scope", "anthropic-version": "2023-06-01"}
    )
    assert (status, body["error"]["type"]) == (403, "permission_error")
    status, body, _ = get(mock, headers={"x-api-key": KEY})
    assert status == 400 and "anthropic-version" in body["error"]["message"]
    response = requests.get(mock.url + "/v1/compliance/nothing", headers=HEADERS, timeout=5)
    assert response.status_code == 404
    assert all(not r.key_ok for r in mock.requests[:3])


def test_rate_limit_is_600_a_minute_with_headers(start_mock):
    clock = FakeClock(T)
    mock = start_mock(
        spaced(3, T - timedelta(hours=1), timedelta(seconds=1)), clock=clock, requests_per_minute=5
    )
    for expected_remaining in (4, 3, 2, 1, 0):
        status, _, headers = get(mock, {"limit": 1})
        assert status == 200
        assert headers["anthropic-ratelimit-requests-limit"] == "5"
        assert headers["anthropic-ratelimit-requests-remaining"] == str(expected_remaining)
    status, body, headers = get(mock, {"limit": 1})
    assert (status, body["error"]["type"]) == (429, "rate_limit_error")
    assert headers["retry-after"] == "60"
    clock.advance(60)
    assert get(mock, {"limit": 1})[0] == 200
    # The Date header follows the server's clock (the poller measures skew with it).
    assert get(mock)[2]["date"] == "Mon, 04 May 2026 08:01:00 GMT"


def test_late_activities_appear_when_their_time_comes(start_mock):
    clock = FakeClock(T)
    items = spaced(100, T - timedelta(seconds=1000), timedelta(seconds=10))
    mock = start_mock(items, clock=clock, faults=Faults(late=0.2, late_by=600, seed=1))
    _, body, _ = get(mock, {"limit": 5000})
    visible_now = len(body["data"])
    assert 60 < visible_now < 100  # the late ones among the last ten minutes are hidden
    clock.advance(600)
    _, body, _ = get(mock, {"limit": 5000})
    assert len(body["data"]) == 100
    # And a test can publish an activity at any moment.
    mock.add(activity("activity_zlate", T - timedelta(minutes=30)), visible_at=clock() + 60)
    assert "activity_zlate" not in ids(get(mock, {"limit": 5000})[1])
    clock.advance(60)
    assert "activity_zlate" in ids(get(mock, {"limit": 5000})[1])


def test_faults_are_seeded_and_scripts_come_first(start_mock):
    items = spaced(50, T - timedelta(hours=1), timedelta(seconds=10))

    def statuses(seed):
        mock = start_mock(
            items, clock=FakeClock(T), faults=Faults(rate_limit=0.2, server_errors=0.2, seed=seed)
        )
        return [get(mock, {"limit": 5})[0] for _ in range(30)]

    first = statuses(4)
    assert first == statuses(4)
    assert {429, 200} <= set(first) and set(first) & {500, 502, 503, 529}
    mock = start_mock(items, clock=FakeClock(T))
    mock.script(
        ScriptedResponse(503, headers={"x-should-retry": "true"}),
        ScriptedResponse(200, body=b"not json"),
    )
    response = requests.get(mock.url + "/v1/compliance/activities", headers=HEADERS, timeout=5)
    assert response.status_code == 503 and response.headers["x-should-retry"] == "true"
    response = requests.get(mock.url + "/v1/compliance/activities", headers=HEADERS, timeout=5)
    assert response.content == b"not json"
    assert get(mock)[0] == 200


def test_duplicate_fault_redelivers_what_was_already_sent(start_mock):
    items = spaced(20, T - timedelta(hours=1), timedelta(seconds=10))
    mock = start_mock(items, clock=FakeClock(T), faults=Faults(duplicates=1.0))
    _, body, _ = get(mock, {"limit": 5, "before_id": "activity_a000004"})
    got = ids(body)
    assert len(got) == 7 and len(set(got)) == 6
    assert got[-1] == "activity_a000004"  # the cursor's own activity, delivered again
    assert body["first_id"] == "activity_a000009"


def test_load_and_shift_feed(tmp_path):
    path = tmp_path / "feed.jsonl"
    rows = spaced(3, T, timedelta(minutes=1))
    path.write_text("\n".join(__import__("json").dumps(r) for r in rows) + "\nnot json\n")
    loaded = load_feed(path)
    assert [r["id"] for r in loaded] == [r["id"] for r in rows]
    moved = shift_feed(loaded, T + timedelta(days=2))
    assert moved[0]["created_at"] == "2026-05-06T08:00:00.000000Z"
    assert moved[2]["created_at"] == "2026-05-06T08:02:00.000000Z"
    assert loaded[0]["created_at"] != moved[0]["created_at"]  # copies, not the originals
