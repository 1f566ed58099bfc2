"""The Compliance API over HTTP: one page at a time, retried the way the API asks.

The endpoint is a single GET; what makes a poller trustworthy is everything around it:
which failures are worth retrying and how long to wait (`retry-after`, `x-should-retry`,
exponential backoff with jitter), how many requests a minute we allow ourselves (the
600/minute limit is shared by every key and every integration of the parent organization,
so one process must never spend it all), and never letting the key reach a log line, an
exception or the terminal. Errors form one hierarchy keyed on the API's own `error.type`,
each carrying the `request-id` that Anthropic support asks for.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import SecretStr

from engine.activity import format_timestamp, parse_timestamp
from engine.errors import ConfigError, DetectError
from engine.secrets import redact

log = logging.getLogger(__name__)

API_VERSION = "2023-06-01"
ACTIVITIES_PATH = "/v1/compliance/activities"
MAX_PAGE_SIZE = 5000
# The API allows 600 a minute per parent organization, shared with every other consumer.
API_REQUESTS_PER_MINUTE = 600
DEFAULT_REQUESTS_PER_MINUTE = 200
INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 60.0
# A `retry-after` longer than this is honoured only up to it: the run loop polls again
# later anyway, and a process asleep for an hour looks dead to whoever watches it.
MAX_RETRY_AFTER = 900.0
_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}
# The most of one response body held in memory (after content decoding). A page of 5000
# ordinary activities is about 4 MB; a body past this is refused unread past the limit,
# whatever the API, a proxy or a bug sends, and the page is asked for again, smaller.
DEFAULT_MAX_PAGE_BYTES = 64 * 1024 * 1024
_READ_CHUNK = 1 << 16

Clock = Callable[[], float]
Sleep = Callable[[float], None]


# -- errors ---------------------------------------------------------------------------


class ComplianceAPIError(DetectError):
    """Base of everything that can go wrong talking to the Compliance API.

    `retryable`: the same request may succeed if sent again (the client already did, up to
    its retry limit). `fatal`: polling cannot succeed until a person changes something (the
    key, its scope, the configuration), so the run loop stops instead of hammering the API.
    """

    retryable = False
    fatal = False
    fallback_label = "api_error"  # the label when the API sent no `error.type`

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
        api_message: str | None = None,
    ) -> None:
        # What an error says is recorded (log, status, state, alerts): secrets never are.
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.request_id = request_id
        self.api_message = redact(api_message) if api_message else api_message

    @property
    def label(self) -> str:
        """The API's `error.type` when it sent one, else a stable name for the failure."""
        if self.error_type:
            return self.error_type
        if self.status is not None and isinstance(self, APIStatusError):
            return f"http_{self.status}"
        return self.fallback_label

    def __str__(self) -> str:
        text = self.message
        if self.api_message and self.api_message not in text:
            text += f" (API: {self.api_message})"
        if self.request_id:
            text += f" [request-id {self.request_id}]"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "error_type": self.label,
            "status": self.status,
            "message": str(self),
            "request_id": self.request_id,
        }


class APIConnectionError(ComplianceAPIError):
    """No HTTP response at all: DNS, TCP, TLS, a proxy, or the connection dropped."""

    retryable = True
    fallback_label = "connection_error"


class APITimeoutError(APIConnectionError):
    """The API did not answer within `source.request_timeout`."""

    fallback_label = "timeout"


class InvalidResponseError(ComplianceAPIError):
    """A 2xx answer that is not the documented page shape (or not JSON at all)."""

    fallback_label = "invalid_response"


class PageTooLargeError(ComplianceAPIError):
    """A response body larger than `source.max_page_bytes`: refused as soon as its
    `Content-Length` (or the bytes read so far) passes the limit, so it never fills memory.
    `ComplianceClient.list_activities` asks again with half the `limit` down to 1; only a
    single activity past the limit reaches the caller."""

    fallback_label = "page_too_large"

    def __init__(
        self, message: str, *, size: int, max_bytes: int, page_limit: int | None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.size = size
        self.max_bytes = max_bytes
        self.page_limit = page_limit


class APIStatusError(ComplianceAPIError):
    """The API answered with an error status; `error_type` is its `error.type`."""


class BadRequestError(APIStatusError):
    """400 `invalid_request_error`: the request itself is wrong; retrying cannot help."""

    fatal = True


class InvalidCursorError(BadRequestError):
    """400 for an `after_id`/`before_id` that matches no activity; the poller recovers by
    finding its place again from the checkpoint's time."""

    fatal = False


class AuthenticationError(APIStatusError):
    """401 `authentication_error`: the key is invalid or revoked."""

    fatal = True


class PermissionDeniedError(APIStatusError):
    """403 `permission_error`: the key lacks `read:compliance_activities` (or an org)."""

    fatal = True


class NotFoundError(APIStatusError):
    """404: nothing at this address; usually a wrong `source.base_url`."""

    fatal = True


class RateLimitError(APIStatusError):
    """429 `rate_limit_error`: wait `retry_after` seconds (when the API said) and retry."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class InternalServerError(APIStatusError):
    """5xx: retried with backoff, unless the API sent `x-should-retry: false`."""

    retryable = True


class OverloadedError(InternalServerError):
    """529 `overloaded_error`: the API is shedding load; back off."""


_HINTS = {
    400: "the API rejected the request as invalid",
    401: "the API key is invalid or has been revoked: create a Compliance Access Key "
    "(or an Admin API key) and set source.api_key",
    403: "the API key lacks the read:compliance_activities scope, or may not read the "
    "organizations in source.organization_ids",
    404: "there is no Compliance API at this address: check source.base_url",
    429: "rate limited: the parent organization's 600 requests a minute (shared by every "
    "key and integration) are spent",
    500: "the Compliance API failed with an internal error",
    502: "the Compliance API is unreachable behind its gateway",
    503: "the Compliance API is unavailable",
    504: "the Compliance API timed out behind its gateway",
    529: "the Compliance API is overloaded",
}
_DEFAULT_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _error_class(status: int, message: str) -> type[APIStatusError]:
    if status == 400:
        lowered = message.lower()
        if "after_id" in lowered or "before_id" in lowered:
            return InvalidCursorError
        return BadRequestError
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 429:
        return RateLimitError
    if status == 529:
        return OverloadedError
    if status >= 500:
        return InternalServerError
    return APIStatusError


class PollingStopped(DetectError):
    """A stop was requested (SIGTERM, Ctrl-C) while the client waited to send or retry: no
    further request is made. Not an API failure, so it is never recorded as one."""


# -- rate budget ----------------------------------------------------------------------


class RequestBudget:
    """At most `per_minute` requests in any rolling 60 seconds, plus pauses the API asks for.

    A sliding log rather than a token bucket: a bucket allows its whole capacity as a burst
    on top of the steady rate, so the API could see twice the budget in one minute; the log
    never lets any 60-second window hold more than `per_minute` requests.
    """

    WINDOW = 60.0

    def __init__(
        self,
        per_minute: int,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        if per_minute < 1:
            raise ConfigError("source.max_requests_per_minute must be at least 1")
        self.per_minute = per_minute
        self.clock = clock
        self.sleep = sleep
        self.should_stop = should_stop
        self.sent: deque[float] = deque()
        self._not_before = 0.0

    def pause_until(self, moment: float) -> None:
        """No request before `moment` (the API reported the minute's requests spent)."""
        self._not_before = max(self._not_before, moment)

    def acquire(self) -> float:
        """Wait until one more request fits, record it, and return the seconds waited."""
        waited = 0.0
        while True:
            now = self.clock()
            while self.sent and now - self.sent[0] >= self.WINDOW:
                self.sent.popleft()
            delay = self._not_before - now
            if len(self.sent) >= self.per_minute:
                delay = max(delay, self.sent[0] + self.WINDOW - now)
            if delay <= 0:
                self.sent.append(now)
                return waited
            self.sleep(delay)
            waited += delay
            if self.should_stop():
                raise PollingStopped("stopped while waiting for the request budget")


# -- the client -----------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One response of `GET /v1/compliance/activities`, newest first, as the API sent it."""

    data: list[Any]
    has_more: bool
    first_id: str | None
    last_id: str | None
    request_id: str | None


@dataclass(frozen=True)
class RateLimitStatus:
    limit: int | None
    remaining: int | None
    reset: str | None


def check_base_url(base_url: str) -> str:
    """The base URL without a trailing slash; refuses to send a key over plain HTTP to
    anything but this machine (the mock API)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"source.base_url must be an https:// URL, not {base_url!r}")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        raise ConfigError(
            "source.base_url uses plain http:// to a remote host; the API key would cross "
            "the network unencrypted. Use https:// (http:// is allowed for 127.0.0.1 only)"
        )
    if parts.query or parts.fragment:
        raise ConfigError("source.base_url must not carry a query string or fragment")
    return base_url.rstrip("/")


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the API asked us to wait: `retry-after-ms`, `retry-after` in seconds, or
    `retry-after` as an HTTP date."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


class ComplianceClient:
    """Reads pages of the activity feed; every call retries what is worth retrying and
    raises a `ComplianceAPIError` subclass for the rest.

    `clock`, `sleep` and `rng` are injectable so tests assert the exact waits without
    waiting. The key lives only in this object's private attribute and in the request
    header; `repr`, errors and logs never carry it.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr,
        *,
        max_requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE,
        max_retries: int = 5,
        timeout: float = 60.0,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
        on_refusal: Callable[[PageTooLargeError], None] | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url)
        if max_page_bytes < 1024:
            raise ConfigError("source.max_page_bytes must be at least 1024")
        self.max_page_bytes = max_page_bytes
        # The largest `limit` asked for: halved each time a page is refused for its size,
        # for the rest of this client's life (a restart starts again from page_size).
        self.page_size_cap = MAX_PAGE_SIZE
        self.pages_refused = 0
        self.last_refusal: PageTooLargeError | None = None
        # Told of every refused page (the live source records it in the state's source
        # health, beside the run's status).
        self.on_refusal = on_refusal
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        if not key or not key.strip():
            raise ConfigError("source.api_key is empty")
        self._key = key.strip()
        if self._key in self.base_url:
            raise ConfigError(
                "source.base_url contains the API key; put the key in source.api_key only"
            )
        self.max_retries = max_retries
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        # Checked before every attempt: once a stop is requested no request starts, and a
        # backoff in progress ends with the stop (give `sleep` an interruptible wait).
        self.should_stop = should_stop
        self.budget = RequestBudget(max_requests_per_minute, clock, sleep, should_stop)
        self._session = session or requests.Session()
        self._session.headers.update(
            {
                "anthropic-version": API_VERSION,
                "accept": "application/json",
                "user-agent": "detect-compliance-poller/0.1",
            }
        )
        self.requests_sent = 0
        self.rate_limit: RateLimitStatus | None = None
        # Server clock minus ours, from the `Date` header (second resolution).
        self.server_time_offset: float | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ComplianceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public --------------------------------------------------------------------

    def list_activities(
        self,
        *,
        organization_ids: Iterable[str] = (),
        activity_types: Iterable[str] = (),
        created_at_gte: datetime | None = None,
        created_at_lt: datetime | None = None,
        after_id: str | None = None,
        before_id: str | None = None,
        limit: int = 100,
    ) -> Page:
        """One page, newest first. `after_id` pages to older activities, `before_id` to
        newer ones (only one of them per request, as the API requires)."""
        if after_id and before_id:
            raise ValueError("after_id and before_id cannot be combined")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be within 1..{MAX_PAGE_SIZE}")
        while True:
            asked = min(limit, self.page_size_cap)
            try:
                return self._list_page(
                    organization_ids=organization_ids,
                    activity_types=activity_types,
                    created_at_gte=created_at_gte,
                    created_at_lt=created_at_lt,
                    after_id=after_id,
                    before_id=before_id,
                    limit=asked,
                )
            except PageTooLargeError as exc:
                self.pages_refused += 1
                self.last_refusal = exc
                if self.on_refusal is not None:
                    self.on_refusal(exc)
                if asked <= 1:
                    raise
                # A smaller page of the same query is the start of the same page: the
                # caller reads on from its cursor (`has_more`), nothing is skipped.
                self.page_size_cap = max(1, asked // 2)
                log.warning(
                    "Compliance API: %s; asking again with limit=%d", exc, self.page_size_cap
                )

    def _list_page(
        self,
        *,
        organization_ids: Iterable[str],
        activity_types: Iterable[str],
        created_at_gte: datetime | None,
        created_at_lt: datetime | None,
        after_id: str | None,
        before_id: str | None,
        limit: int,
    ) -> Page:
        params: list[tuple[str, str]] = [("limit", str(limit))]
        params += [("organization_ids[]", org) for org in organization_ids]
        params += [("activity_types[]", kind) for kind in activity_types]
        if created_at_gte is not None:
            params.append(("created_at.gte", format_timestamp(created_at_gte, "auto")))
        if created_at_lt is not None:
            params.append(("created_at.lt", format_timestamp(created_at_lt, "auto")))
        if after_id:
            params.append(("after_id", after_id))
        if before_id:
            params.append(("before_id", before_id))
        body, request_id = self._get(ACTIVITIES_PATH, params)
        return _page(body, request_id)

    # -- internals -------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        if len(self._key) >= 4:
            for form in (self._key, repr(self._key)[1:-1]):
                text = text.replace(form, "[redacted]")
        return redact(text)

    def _get(self, path: str, params: list[tuple[str, str]]) -> tuple[Any, str | None]:
        url = self.base_url + path
        attempt = 0
        rate_limited = 0
        while True:
            if self.should_stop():
                raise PollingStopped("stopped before the next request")
            self.budget.acquire()
            self.requests_sent += 1
            try:
                response = self._session.get(
                    url,
                    params=params,
                    headers={"x-api-key": self._key},
                    timeout=self.timeout,
                    allow_redirects=False,  # a redirect would carry x-api-key elsewhere
                    stream=True,  # the body is read below, up to max_page_bytes
                )
                try:
                    self._observe(response)
                    content = self._read_body(response, params)
                finally:
                    response.close()
            except requests.Timeout:
                error: ComplianceAPIError = APITimeoutError(
                    f"the Compliance API did not answer within {self.timeout:g}s"
                )
            except requests.RequestException as exc:
                reason = self._redact(_reason(exc))
                error = APIConnectionError(
                    f"cannot reach the Compliance API at {self.base_url}: {reason}"
                )
            else:
                outcome = self._outcome(response, content)
                if not isinstance(outcome, ComplianceAPIError):
                    return outcome
                error = outcome
            if not error.retryable or attempt >= self.max_retries:
                raise error
            if isinstance(error, RateLimitError):
                delay = error.retry_after
                if delay is None:
                    delay = min(MAX_BACKOFF, INITIAL_BACKOFF * 2**rate_limited)
                rate_limited += 1
            else:
                delay = min(MAX_BACKOFF, INITIAL_BACKOFF * 2**attempt)
                delay *= 1 - 0.25 * self.rng.random()  # jitter: spread retrying clients
            delay = min(delay, MAX_RETRY_AFTER)
            attempt += 1
            log.warning(
                "Compliance API: %s; retrying in %.1fs (retry %d of %d)",
                error,
                delay,
                attempt,
                self.max_retries,
            )
            self.sleep(delay)

    def _read_body(self, response: requests.Response, params: list[tuple[str, str]]) -> bytearray:
        """The body, decoded, or `PageTooLargeError` once it passes `max_page_bytes`:
        refused on a `Content-Length` over the limit without reading, else as soon as the
        bytes read pass it (a chunked or compressed body declares no usable length)."""
        limit = self.max_page_bytes
        declared = _int(response.headers.get("content-length"))
        if declared is not None and declared > limit:
            raise self._too_large(response, params, declared, exact=True)
        body = bytearray()
        for chunk in response.iter_content(_READ_CHUNK):
            body += chunk
            if len(body) > limit:
                raise self._too_large(response, params, len(body), exact=False)
        return body  # json.loads reads a bytearray as it is: no second copy

    def _too_large(
        self,
        response: requests.Response,
        params: list[tuple[str, str]],
        size: int,
        *,
        exact: bool,
    ) -> PageTooLargeError:
        page_limit = next((_int(v) for k, v in params if k == "limit"), None)
        what = f"{_mib(size)}" if exact else f"more than {_mib(self.max_page_bytes)} (read so far)"
        asked = f" for limit={page_limit}" if page_limit is not None else ""
        return PageTooLargeError(
            f"the Compliance API's response{asked} is {what}, over source.max_page_bytes "
            f"({_mib(self.max_page_bytes)}): refused",
            size=size,
            max_bytes=self.max_page_bytes,
            page_limit=page_limit,
            status=response.status_code,
            request_id=response.headers.get("request-id"),
        )

    def _observe(self, response: requests.Response) -> None:
        """Remember the server's clock and rate-limit state from any response."""
        headers = response.headers
        date = headers.get("date")
        if date:
            try:
                server = email.utils.parsedate_to_datetime(date).timestamp()
                self.server_time_offset = server - self.clock()
            except (TypeError, ValueError):
                pass
        limit = headers.get("anthropic-ratelimit-requests-limit")
        remaining = headers.get("anthropic-ratelimit-requests-remaining")
        reset = headers.get("anthropic-ratelimit-requests-reset")
        if limit is None and remaining is None:
            return
        self.rate_limit = RateLimitStatus(_int(limit), _int(remaining), reset)
        if self.rate_limit.remaining == 0 and reset:
            try:
                moment = parse_timestamp(reset).timestamp() - (self.server_time_offset or 0.0)
            except ValueError:
                return
            self.budget.pause_until(moment)

    def _outcome(
        self, response: requests.Response, content: bytearray
    ) -> tuple[Any, str | None] | ComplianceAPIError:
        request_id = response.headers.get("request-id")
        status = response.status_code
        if 200 <= status < 300:
            try:
                return json.loads(content), request_id
            except ValueError:
                error = InvalidResponseError(
                    f"the Compliance API answered HTTP {status} with a body that is not JSON",
                    status=status,
                    request_id=request_id,
                )
                error.retryable = True  # most likely cut short on the way
                return error
        error_type: str | None = None
        api_message: str | None = None
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error_type = body["error"].get("type") or None
            api_message = body["error"].get("message") or None
        if api_message:
            api_message = self._redact(str(api_message))[:500]
        if 300 <= status < 400:
            return NotFoundError(
                f"HTTP {status}: the Compliance API redirected to "
                f"{self._redact(response.headers.get('location', '?'))[:200]}; redirects are "
                "not followed (the key would travel with them): check source.base_url",
                status=status,
                request_id=request_id,
            )
        error_type = error_type or _DEFAULT_TYPES.get(status)
        hint = _HINTS.get(status) or _HINTS.get(500 if status >= 500 else 400, "")
        cls = _error_class(status, api_message or "")
        label = error_type or f"HTTP {status}"
        message = f"{label} (HTTP {status}): {hint}"
        kwargs: dict[str, Any] = {
            "status": status,
            "error_type": error_type,
            "request_id": request_id,
            "api_message": api_message,
        }
        if cls is RateLimitError:
            error = RateLimitError(
                message, retry_after=_retry_after(response.headers, self.clock()), **kwargs
            )
        else:
            error = cls(message, **kwargs)
            if cls is APIStatusError:
                error.retryable = status in (408, 409)
                error.fatal = not error.retryable
        should_retry = response.headers.get("x-should-retry", "").strip().lower()
        if should_retry == "false":
            error.retryable = False
        elif should_retry == "true" and not error.fatal:
            error.retryable = True
        return error


def _reason(exc: requests.RequestException) -> str:
    """The root cause of a connection failure ("Connection refused", "Name or service not
    known", a TLS error) instead of urllib3's nested retry report."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if found:
        return found.group(1).strip()
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed: " + text[-200:]
    return f"{type(exc).__name__}: {text[:300]}"


def _mib(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB ({size:,} bytes)"
    return f"{size:,} bytes"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _page(body: Any, request_id: str | None) -> Page:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise InvalidResponseError(
            "the Compliance API answered without a `data` list: the response format may have "
            "changed",
            request_id=request_id,
        )
    has_more = body.get("has_more", False)
    first_id = body.get("first_id")
    last_id = body.get("last_id")
    if not isinstance(has_more, bool) or not all(
        v is None or isinstance(v, str) for v in (first_id, last_id)
    ):
        raise InvalidResponseError(
            "the Compliance API answered with has_more/first_id/last_id of unexpected types",
            request_id=request_id,
        )
    return Page(body["data"], has_more, first_id, last_id, request_id)
