"""The HTTP client against the mock API over loopback: headers, retries, waits, errors,
the request budget, and the key's secrecy."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta

import pytest

from engine.errors import ConfigError
from engine.sources.compliance_api import (
    APITimeoutError,
    AuthenticationError,
    ComplianceAPIError,
    ComplianceClient,
    InternalServerError,
    InvalidCursorError,
    InvalidResponseError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    PollingStopped,
    RateLimitError,
    RequestBudget,
)
from engine.tools.mock_api import ScriptedResponse

from .conftest import KEY, FakeClock, spaced

T = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return FakeClock(T)


@pytest.fixture
def mock(start_mock, clock):
    return start_mock(spaced(30, T - timedelta(hours=1), timedelta(minutes=1)), clock=clock)


def client_for(mock, clock, key=KEY, **kwargs):
    kwargs.setdefault("max_requests_per_minute", 600)
    return ComplianceClient(
        mock.url, key, clock=clock, sleep=clock.sleep, rng=random.Random(0), **kwargs
    )


def test_sends_the_key_the_version_and_bracketed_arrays(mock, clock):
    client = client_for(mock, clock)
    page = client.list_activities(
        organization_ids=["org_01Aa", "6f1c2b9e-4d3a-4e8b-9a51-2c7d8e0f1a23"],
        created_at_lt=T - timedelta(minutes=1),
        limit=5,
    )
    assert len(page.data) == 5 and page.has_more
    assert page.request_id == mock.requests[-1].request_id
    seen = mock.requests[-1]
    assert seen.key_ok
    assert seen.params["organization_ids[]"] == [
        "org_01Aa",
        "6f1c2b9e-4d3a-4e8b-9a51-2c7d8e0f1a23",
    ]
    assert seen.param("created_at.lt") == "2026-05-04T07:59:00Z"
    assert clock.sleeps == []


def test_429_waits_retry_after_and_the_retry_is_the_same_request(mock, clock):
    mock.script(
        ScriptedResponse(429, headers={"retry-after": "7"}),
        ScriptedResponse(429, headers={"retry-after": "3"}),
    )
    client = client_for(mock, clock)
    client.list_activities(before_id="activity_a000004", limit=3)
    assert clock.sleeps == [7.0, 3.0]
    assert [r.status for r in mock.requests] == [429, 429, 200]
    assert {r.param("before_id") for r in mock.requests} == {"activity_a000004"}


def test_429_without_retry_after_backs_off_from_one_second_doubling(mock, clock):
    mock.script(*[ScriptedResponse(429) for _ in range(4)])
    client_for(mock, clock).list_activities(limit=1)
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]


def test_429_past_the_retries_raises_with_retry_after(mock, clock):
    mock.script(*[ScriptedResponse(429, headers={"retry-after": "2"}) for _ in range(3)])
    with pytest.raises(RateLimitError) as caught:
        client_for(mock, clock, max_retries=2).list_activities(limit=1)
    assert caught.value.retry_after == 2.0
    assert caught.value.error_type == "rate_limit_error"
    assert clock.sleeps == [2.0, 2.0]


def test_500_with_x_should_retry_false_is_not_retried(mock, clock):
    mock.script(ScriptedResponse(500, headers={"x-should-retry": "false"}))
    with pytest.raises(InternalServerError) as caught:
        client_for(mock, clock).list_activities(limit=1)
    assert len(mock.requests) == 1 and clock.sleeps == []
    assert caught.value.status == 500 and not caught.value.retryable
    assert caught.value.request_id == mock.requests[0].request_id


def test_500_is_retried_by_default(mock, clock):
    mock.script(ScriptedResponse(500))
    client_for(mock, clock).list_activities(limit=1)
    assert [r.status for r in mock.requests] == [500, 200]
    assert 0.75 <= clock.sleeps[0] <= 1.0


@pytest.mark.parametrize("status", [502, 503, 504, 529])
def test_gateway_and_overload_errors_back_off_exponentially_with_jitter(mock, clock, status):
    mock.script(*[ScriptedResponse(status) for _ in range(4)])
    client_for(mock, clock, max_retries=5).list_activities(limit=1)
    assert [r.status for r in mock.requests] == [status] * 4 + [200]
    for attempt, slept in enumerate(clock.sleeps):
        assert 0.75 * 2**attempt <= slept <= 2**attempt
    assert len(set(clock.sleeps)) == 4


def test_retries_are_bounded_and_the_last_error_is_raised(mock, clock):
    mock.script(*[ScriptedResponse(529) for _ in range(10)])
    with pytest.raises(OverloadedError) as caught:
        client_for(mock, clock, max_retries=3).list_activities(limit=1)
    assert len(mock.requests) == 4
    assert caught.value.error_type == "overloaded_error" and caught.value.retryable


def test_backoff_is_capped_at_a_minute(mock, clock):
    mock.script(*[ScriptedResponse(503) for _ in range(9)])
    client_for(mock, clock, max_retries=9).list_activities(limit=1)
    assert max(clock.sleeps) <= 60.0
    assert clock.sleeps[-1] >= 45.0


def test_a_timeout_is_retried(mock, clock):
    mock.script(ScriptedResponse(200, body=b'{"data":[]}', delay=0.5))
    client = client_for(mock, clock, timeout=0.1)
    page = client.list_activities(limit=1)
    assert len(page.data) == 1  # the second attempt, answered at once
    assert len(clock.sleeps) == 1
    mock.script(*[ScriptedResponse(200, body=b"{}", delay=0.5) for _ in range(2)])
    with pytest.raises(APITimeoutError, match=r"did not answer within 0\.1s") as caught:
        client_for(mock, clock, timeout=0.1, max_retries=1).list_activities(limit=1)
    assert caught.value.label == "timeout"


def test_a_body_that_is_not_json_is_retried_and_a_wrong_shape_is_named(mock, clock):
    mock.script(ScriptedResponse(200, body=b"<html>proxy error</html>"))
    assert len(client_for(mock, clock).list_activities(limit=2).data) == 2
    mock.script(ScriptedResponse(200, body=b'{"items": []}'))
    with pytest.raises(InvalidResponseError) as caught:
        client_for(mock, clock).list_activities(limit=2)
    assert caught.value.label == "invalid_response" and not caught.value.fatal


def test_401_stops_at_once_with_a_clear_message_and_the_request_id(mock, clock):
    with pytest.raises(AuthenticationError) as caught:
        client_for(mock, clock, key="sk-ant-wrong-key-000").list_activities(limit=1)
    error = caught.value
    assert len(mock.requests) == 1 and clock.sleeps == []
    assert error.fatal and not error.retryable
    assert error.error_type == "authentication_error" and error.status == 401
    assert error.request_id == mock.requests[0].request_id
    text = str(error)
    assert "authentication_error (HTTP 401)" in text
    assert "invalid or has been revoked" in text
    assert f"request-id {error.request_id}" in text
    assert "invalid x-api-key" in text  # the API's own message is kept


def test_403_names_the_missing_scope(start_mock, clock):
    mock = start_mock([], forbidden_keys=[KEY], api_key="another", clock=clock)
    with pytest.raises(PermissionDeniedError) as caught:
        client_for(mock, clock).list_activities(limit=1)
    assert caught.value.fatal
    assert "permission_error (HTTP 403)" in str(caught.value)
    assert "read:compliance_activities" in str(caught.value)
    assert caught.value.request_id


def test_a_cursor_that_matches_nothing_is_its_own_error(mock, clock):
    with pytest.raises(InvalidCursorError) as caught:
        client_for(mock, clock).list_activities(after_id="activity_gone", limit=1)
    assert not caught.value.fatal
    assert 'No activity found for after_id "activity_gone"' in str(caught.value)


def test_redirects_are_not_followed(mock, clock):
    mock.script(ScriptedResponse(307, headers={"location": "https://elsewhere.example/"}))
    with pytest.raises(NotFoundError, match="redirects are not followed"):
        client_for(mock, clock).list_activities(limit=1)
    assert len(mock.requests) == 1


def test_plain_http_is_refused_beyond_loopback():
    with pytest.raises(ConfigError, match="unencrypted"):
        ComplianceClient("http://api.example.com", KEY)
    with pytest.raises(ConfigError, match="empty"):
        ComplianceClient("https://api.example.com", " ")
    ComplianceClient("http://127.0.0.1:9", KEY).close()


def test_the_request_budget_is_never_exceeded(mock, clock):
    client = client_for(mock, clock, max_requests_per_minute=10)
    for _ in range(35):
        client.list_activities(limit=1)
    times = [r.at for r in mock.requests]
    assert len(times) == 35
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t < start + 60) <= 10
    # ...and it waits only as long as it must: 35 requests at 10 a minute take 3 minutes.
    assert times[-1] - times[0] == pytest.approx(180, abs=1)


def test_retries_count_against_the_budget(mock, clock):
    mock.script(*[ScriptedResponse(503) for _ in range(6)])
    client = client_for(mock, clock, max_requests_per_minute=3, max_retries=8)
    client.list_activities(limit=1)
    times = [r.at for r in mock.requests]
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t < start + 60) <= 3


def test_the_apis_rate_limit_headers_pause_before_a_429(start_mock, clock):
    mock = start_mock(
        spaced(5, T - timedelta(hours=1), timedelta(minutes=1)), clock=clock, requests_per_minute=4
    )
    client = client_for(mock, clock, max_requests_per_minute=600)
    for _ in range(10):
        client.list_activities(limit=1)
    assert [r.status for r in mock.requests] == [200] * 10
    assert clock.sleeps  # it waited for the reset the headers announced


def test_budget_sliding_window_unit():
    clock = FakeClock(T)
    budget = RequestBudget(2, clock, clock.sleep)
    assert [budget.acquire() for _ in range(2)] == [0.0, 0.0]
    assert budget.acquire() == 60.0  # at T+60: both T requests left the window
    clock.advance(30)
    assert budget.acquire() == 0.0  # T+90: one request (T+60) in the window
    assert budget.acquire() == 30.0  # full until T+60 leaves it at T+120
    with pytest.raises(ConfigError):
        RequestBudget(0)


def test_the_key_never_appears_in_logs_errors_or_reprs(start_mock, clock, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    wrong = KEY.replace("TESTKEY", "WRONGKEY")
    mock = start_mock(spaced(3, T - timedelta(hours=1), timedelta(minutes=1)), clock=clock)
    mock.script(
        ScriptedResponse(429),
        ScriptedResponse(503),
        ScriptedResponse(500, message=f"echoing {KEY} back"),
        ScriptedResponse(500, headers={"x-should-retry": "false"}, message=f"bad {KEY}"),
    )
    client = client_for(mock, clock)
    errors: list[Exception] = []
    try:
        client.list_activities(limit=1)
    except ComplianceAPIError as exc:
        errors.append(exc)
    for key in (wrong,):
        try:
            client_for(mock, clock, key=key).list_activities(limit=1)
        except ComplianceAPIError as exc:
            errors.append(exc)
    with pytest.raises(ConfigError, match="contains the API key") as refused:
        ComplianceClient(f"http://127.0.0.1:9/{KEY}", KEY)
    errors.append(refused.value)
    dead = ComplianceClient("http://127.0.0.1:9", KEY, max_retries=1, sleep=lambda s: None)
    try:
        dead.list_activities(limit=1)
    except ComplianceAPIError as exc:
        errors.append(exc)
    assert len(errors) == 4
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(client), repr(dead)]
    texts += [str(e.to_dict()) for e in errors if isinstance(e, ComplianceAPIError)]
    texts += [r.getMessage() for r in caplog.records]
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    assert any("retrying" in t for t in texts)
    for text in texts:
        assert KEY not in text and wrong not in text
        assert "TESTKEY" not in text and "WRONGKEY" not in text


def test_a_stop_request_ends_a_backoff_without_another_request(mock, clock):
    stop = []

    def sleep(seconds):
        clock.sleep(seconds)
        stop.append(True)  # SIGTERM arrives during the backoff

    mock.script(ScriptedResponse(503))
    client = ComplianceClient(
        mock.url, KEY, clock=clock, sleep=sleep, should_stop=lambda: bool(stop)
    )
    with pytest.raises(PollingStopped):
        client.list_activities(limit=1)
    assert len(mock.requests) == 1
