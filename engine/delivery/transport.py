"""One HTTP POST, its outcome classified, and secrets kept out of every message and log.

Webhook URLs are credentials (anyone holding a Slack incoming-webhook URL can post to the
channel), so nothing here ever formats a URL, an exception's text (requests puts the URL
in it) or a header value into a reason. Reasons are built from the exception's type and
the receiver's answer, then passed through a `Redactor` as a second line of defence.
urllib3 logs request paths at DEBUG; a logging filter redacts those too.
"""

from __future__ import annotations

import email.utils
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal
from urllib.parse import urlsplit

import requests

from engine import __version__
from engine.delivery.text import clean_text

# What every destination's request names itself as.
USER_AGENT = f"detect/{__version__}"

REDACTED = "[redacted]"
MAX_RESPONSE_BYTES = 64 * 1024
# How long an answer is awaited once the request has been sent, whatever shorter
# `timeout` a destination sets (the timeout still bounds the connection). A request whose
# body went out and whose answer is merely slow was, most likely, accepted: giving up on
# it early and sending it again is what turns a slow receiver into duplicates (issue 18:
# 2 s timeouts against 4-5 s answers made 38 alerts into 55 Slack messages). Only a
# receiver that has not answered after this long is retried (docs/delivery.md, "When a
# duplicate is possible"). Read when each request is sent, so tests can shorten it.
ANSWER_TIMEOUT = 30.0
# Shorter strings are too likely to be ordinary words to be worth hunting for.
_MIN_SECRET_LENGTH = 6


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: `sent`, `retry` (transient) or `dead` (permanent)."""

    kind: Literal["sent", "retry", "dead"]
    reason: str = ""
    status: int | None = None
    retry_after: float | None = None


class Redactor:
    """Replaces every registered secret in a text. Thread-safe; secrets only accumulate."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= _MIN_SECRET_LENGTH:
            with self._lock:
                self._secrets.add(secret)

    def add_url(self, url: str) -> None:
        """A URL's secret parts: the whole URL, its path and query, and any password."""
        self.add(url)
        try:
            parts = urlsplit(url)
        except ValueError:
            return
        if parts.path and parts.path != "/":
            self.add(parts.path + (f"?{parts.query}" if parts.query else ""))
            self.add(parts.path)
        self.add(parts.query)
        self.add(parts.password)

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        from engine.secrets import redact  # the configured secrets' one redaction

        return redact(text)


# One redactor for the process: the log filter below must know every configured secret.
REDACTOR = Redactor()


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to fix
            return True
        cleaned = REDACTOR.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_HTTP_LOGGERS = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.util.retry",
    "urllib3.response",
    "requests",
    "engine.delivery",
)
_filter = _RedactingFilter()
for _name in _HTTP_LOGGERS:
    _logger = logging.getLogger(_name)
    if _filter not in _logger.filters:
        _logger.addFilter(_filter)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if seconds != seconds or seconds < 0:  # NaN or past: retry as soon as allowed
        return 0.0
    return seconds


def _cause_chain(error: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    stack = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(a for a in current.args if isinstance(a, BaseException))
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                stack.append(linked)


def answer_timeout(timeout: float) -> float:
    """Seconds an answer is awaited after a request was sent, for a destination whose
    `timeout` is `timeout`: the longer of the two."""
    return max(timeout, ANSWER_TIMEOUT)


def attempt_seconds(timeout: float) -> float:
    """The longest one attempt can take before its answer is given up on: connecting,
    then waiting for the answer (the dispatcher's lease on a delivery outlives it)."""
    return timeout + answer_timeout(timeout)


def describe_failure(
    error: requests.RequestException, timeout: float, answer: float | None = None
) -> str:
    """A reason for a failed request that never quotes the exception's text."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return f"connection timed out after {timeout:g}s"
    if isinstance(error, requests.exceptions.ReadTimeout):
        waited = timeout if answer is None else answer
        return (
            f"no response within {waited:g}s of sending"
            " (the receiver may have accepted it: retried under the same message id)"
        )
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS handshake failed (certificate or protocol error)"
    chain = list(_cause_chain(error))
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return "connection reset by the receiver"
    if any(type(e).__name__ in ("NameResolutionError", "gaierror") for e in chain):
        return "DNS lookup failed"
    if isinstance(error, requests.exceptions.ConnectionError):
        return "connection failed"
    return f"request failed ({type(error).__name__})"


def classify(status: int, body: str, retry_after: float | None) -> Outcome:
    """The rule both Slack and webhooks follow: 2xx sent; 408, 429 and 5xx transient;
    3xx (never followed: a signed body must not wander to another host) and other 4xx
    permanent for this message, with the receiver's reason."""
    answer = clean_text(body) if body else ""
    reason = f"HTTP {status}" + (f": {answer}" if answer else "")
    if 200 <= status < 300:
        return Outcome("sent", status=status)
    if 300 <= status < 400:
        return Outcome("dead", f"HTTP {status}: redirects are not followed; update the URL", status)
    if status in (408, 429) or status >= 500:
        return Outcome("retry", reason, status, retry_after)
    if 400 <= status < 500:
        return Outcome("dead", reason, status)
    return Outcome("retry", reason, status, retry_after)


class HttpPoster:
    """POSTs to one URL with one keep-alive session; never raises for network trouble."""

    def __init__(self, url: str, timeout: float, redactor: Redactor = REDACTOR) -> None:
        self._url = url
        self.timeout = timeout
        self.redactor = redactor
        redactor.add_url(url)
        self._session = requests.Session()

    def post(self, body: bytes, headers: Mapping[str, str], now: float) -> Outcome:
        """`timeout` bounds connecting; once connected, the answer is awaited for
        `answer_timeout(timeout)` (see ANSWER_TIMEOUT)."""
        answer = answer_timeout(self.timeout)
        try:
            response = self._session.post(
                self._url,
                data=body,
                headers=dict(headers),
                timeout=(self.timeout, answer),
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as error:
            return Outcome("retry", describe_failure(error, self.timeout, answer))
        try:
            raw = response.raw.read(MAX_RESPONSE_BYTES, decode_content=True) or b""
        except Exception:  # noqa: BLE001 - the status is what matters; the body is a hint
            raw = b""
        finally:
            response.close()
        text = raw.decode("utf-8", errors="replace")
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        outcome = classify(response.status_code, text, retry_after)
        if outcome.reason:
            outcome = Outcome(
                outcome.kind, self.redactor.redact(outcome.reason), outcome.status, retry_after
            )
        return outcome

    def close(self) -> None:
        self._session.close()


def signed_endpoint(config: Any) -> tuple[list[str], dict[str, str], HttpPoster]:
    """What a signed webhook destination (fixed or templated body) sends with: its signing
    secrets (the current one first, the previous one while receivers move over), its
    custom headers, each registered with the redactor before anything can fail, and the
    poster for its URL."""
    secrets = [s.get_secret_value() for s in (config.secret, config.previous_secret) if s]
    headers = {k: v.get_secret_value() for k, v in config.headers.items()}
    for secret in [*secrets, *headers.values()]:
        REDACTOR.add(secret)
    return (
        secrets,
        headers,
        HttpPoster(config.url.get_secret_value(), config.timeout.total_seconds()),
    )
