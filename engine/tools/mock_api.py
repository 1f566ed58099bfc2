"""A local Compliance API: a real HTTP server on loopback with the real API's semantics.

`detect mock-api`, `detect run --demo` and the poller's tests talk to it over TCP exactly
as they would talk to api.anthropic.com, so what they prove holds for the wire: headers,
query encoding, status codes, error bodies, keep-alive, timeouts.

What it implements (see docs/ingestion.md and ../shared/reference/compliance-api.md):
newest first with ties broken by id; `after_id` pages to older activities, `before_id` to
newer ones (the page adjacent to the cursor, still newest first); `has_more`, `first_id`,
`last_id`; `created_at.gte/.gt/.lte/.lt`; `organization_ids[]` (org id or UUID),
`activity_types[]`, `exclude_activity_types[]`, `actor_ids[]`; `limit` 1..5000; the
documented 400s (bad cursor, both cursors, bad timestamp, bad limit), 401 for a wrong key,
403 for a key without the scope; 600 requests a minute with the `anthropic-ratelimit-*`
headers; a `request-id` on every response.

Fault injection, seeded so a test run repeats exactly: 429 with `retry-after`, 5xx,
slow responses, pages that repeat activities already delivered, and activities that become
visible only some time after their `created_at` (late indexing). Tests can also script the
next responses one by one and add activities while the server runs. `page_padding` makes
every page oversized on demand: that many bytes of JSON whitespace after each activity, so
a page's size grows with its `limit` (and a smaller `limit` gives a smaller page) while the
activities themselves stay as they are.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import json
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine.activity import format_timestamp, parse_timestamp
from engine.errors import InputError
from engine.sources.compliance_api import ACTIVITIES_PATH, API_REQUESTS_PER_MINUTE, MAX_PAGE_SIZE

log = logging.getLogger(__name__)

DEFAULT_KEY = "mock-key"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_ARRAY_PARAMS = (
    "organization_ids[]",
    "activity_types[]",
    "exclude_activity_types[]",
    "actor_ids[]",
)
_SCALAR_PARAMS = (
    "limit",
    "after_id",
    "before_id",
    "created_at.gte",
    "created_at.gt",
    "created_at.lte",
    "created_at.lt",
)
_TOP = "\U0010ffff"  # sorts after every id: (t, _TOP) is past every activity at time t


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICRO


@dataclass
class Faults:
    """Random misbehaviour, drawn from one seeded generator in request order."""

    rate_limit: float = 0.0  # share of requests answered 429
    retry_after: float = 1.0  # the `retry-after` those 429s carry (seconds)
    server_errors: float = 0.0  # share answered 500, 502, 503 or 529
    slow: float = 0.0  # share of responses held back by `delay` seconds
    delay: float = 0.0
    duplicates: float = 0.0  # share of pages that repeat activities already delivered
    late: float = 0.0  # share of activities that become visible `late_by` after created_at
    late_by: float = 300.0
    seed: int = 0


@dataclass
class ScriptedResponse:
    """One response a test wants next, whatever the request."""

    status: int
    error_type: str | None = None
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class RecordedRequest:
    """What the server saw and answered (the key itself is never recorded)."""

    number: int
    at: float
    path: str
    params: dict[str, list[str]]
    status: int
    request_id: str
    key_ok: bool
    returned: int

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None


@dataclass
class _Item:
    key: tuple[int, str]
    raw: dict[str, Any]
    visible_at: float
    orgs: frozenset[str]
    type: Any
    user_id: Any


class _BadRequest(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def _unit(seed: int, text: str) -> float:
    """A deterministic number in [0, 1) for (seed, text)."""
    digest = hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class MockComplianceAPI:
    """The server and its data. Thread-safe: requests run on server threads while a test
    adds activities or scripts responses.

    `clock` gives "now" for visibility, rate limits and the `Date` header, so a test can
    share one fake clock between the server and the poller.
    """

    def __init__(
        self,
        activities: Iterable[dict[str, Any]] = (),
        *,
        api_key: str = DEFAULT_KEY,
        forbidden_keys: Iterable[str] = (),
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        requests_per_minute: int = API_REQUESTS_PER_MINUTE,
        index_delay: float = 0.0,
        page_padding: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.forbidden_keys = set(forbidden_keys)
        self.faults = faults or Faults()
        self.clock = clock
        self.requests_per_minute = requests_per_minute
        self.index_delay = index_delay
        # Bytes of whitespace after each activity of a page; may be changed while serving.
        self.page_padding = page_padding
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self.on_request: Callable[[RecordedRequest], None] | None = None
        self.skipped = 0
        self._keys: list[tuple[int, str]] = []
        self._items: list[_Item] = []
        self._by_id: dict[str, _Item] = {}
        self._lock = threading.Lock()
        self._script: deque[ScriptedResponse] = deque()
        self._recent: deque[float] = deque()
        self._dice = random.Random(self.faults.seed)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.extend(activities)

    # -- data ------------------------------------------------------------------------

    def _item(self, activity: Any, visible_at: float | None) -> _Item | None:
        ident = activity.get("id") if isinstance(activity, dict) else None
        try:
            moment = parse_timestamp(activity["created_at"])
        except (KeyError, TypeError, ValueError):
            moment = None
        if not isinstance(ident, str) or not ident or moment is None:
            return None
        if visible_at is None:
            visible_at = moment.timestamp() + self.index_delay
            if self.faults.late and _unit(self.faults.seed, ident) < self.faults.late:
                visible_at = moment.timestamp() + self.faults.late_by
        orgs = frozenset(
            v
            for v in (activity.get("organization_id"), activity.get("organization_uuid"))
            if isinstance(v, str)
        )
        actor = activity.get("actor")
        user_id = actor.get("user_id") if isinstance(actor, dict) else None
        return _Item(
            (_micros(moment), ident), activity, visible_at, orgs, activity.get("type"), user_id
        )

    def add(self, activity: dict[str, Any], visible_at: float | None = None) -> bool:
        """Index one activity while serving; `visible_at` (epoch seconds) sets when it
        appears (a late-indexed activity). False, counted in `skipped`, for an activity
        without a usable id or time, or one already held."""
        return self.extend([activity], visible_at) == 1

    def extend(self, activities: Iterable[dict[str, Any]], visible_at: float | None = None) -> int:
        """Index many activities, sorting once; returns how many were added."""
        fresh = []
        for activity in activities:
            item = self._item(activity, visible_at)
            if item is None:
                self.skipped += 1
            else:
                fresh.append(item)
        added = 0
        with self._lock:
            for item in fresh:
                if item.key[1] in self._by_id:
                    self.skipped += 1
                    continue
                self._by_id[item.key[1]] = item
                self._items.append(item)
                added += 1
            self._items.sort(key=lambda i: i.key)
            self._keys = [i.key for i in self._items]
        return added

    def __len__(self) -> int:
        return len(self._items)

    def script(self, *responses: ScriptedResponse) -> None:
        """Answer the next requests with these, in order, before anything else."""
        with self._lock:
            self._script.extend(responses)

    # -- server lifecycle ------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the mock API is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> MockComplianceAPI:
        server = _Server((self.host, self.port), _Handler)
        server.mock = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Run in the calling thread until interrupted (`detect mock-api`)."""
        if self._server is None:
            server = _Server((self.host, self.port), _Handler)
            server.mock = self
            self._server = server
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._server.server_close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> MockComplianceAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling ------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes, float]:
        """Answer one request: (status, headers, body, seconds to hold the answer)."""
        parts = urlsplit(target)
        params = parse_qs(parts.query, keep_blank_values=True)
        key = headers.get("x-api-key")
        with self._lock:
            now = self.clock()
            number = len(self.requests) + 1
            request_id = f"req_mock{number:018d}"
            out_headers = {"request-id": request_id}
            delay = 0.0
            returned = 0
            key_ok = key == self.api_key
            try:
                status, body, extra, delay, returned = self._answer(
                    method, parts.path, params, headers, key, now
                )
            except _BadRequest as exc:
                status, extra = exc.status, {}
                body = _error_body(exc.error_type, exc.message)
            out_headers.update(extra)
            out_headers.update(self._rate_headers(now))
            self.requests.append(
                RecordedRequest(
                    number, now, parts.path, params, status, request_id, key_ok, returned
                )
            )
        return status, out_headers, body, delay

    def _answer(
        self,
        method: str,
        path: str,
        params: dict[str, list[str]],
        headers: dict[str, str],
        key: str | None,
        now: float,
    ) -> tuple[int, bytes, dict[str, str], float, int]:
        if self._script:
            scripted = self._script.popleft()
            body = scripted.body
            if body is None:
                body = _error_body(
                    scripted.error_type or _default_type(scripted.status), scripted.message
                )
            return scripted.status, body, dict(scripted.headers), scripted.delay, 0
        if path != ACTIVITIES_PATH:
            raise _BadRequest(404, "not_found_error", f"Not found: {path}")
        if method != "GET":
            raise _BadRequest(405, "invalid_request_error", f"Method {method} not allowed")
        if key is None or (key != self.api_key and key not in self.forbidden_keys):
            raise _BadRequest(401, "authentication_error", "invalid x-api-key")
        if key in self.forbidden_keys:
            raise _BadRequest(
                403,
                "permission_error",
                "This API key does not have the read:compliance_activities scope",
            )
        if not headers.get("anthropic-version"):
            raise _BadRequest(400, "invalid_request_error", "anthropic-version: header is required")
        # The real limit, on this server's clock.
        while self._recent and now - self._recent[0] >= 60:
            self._recent.popleft()
        if len(self._recent) >= self.requests_per_minute:
            wait = math.ceil(self._recent[0] + 60 - now)
            return (
                429,
                _error_body("rate_limit_error", "Number of requests has exceeded your rate limit"),
                {"retry-after": str(max(1, wait))},
                0.0,
                0,
            )
        self._recent.append(now)
        faults = self.faults
        dice = self._dice
        if faults.rate_limit and dice.random() < faults.rate_limit:
            return (
                429,
                _error_body("rate_limit_error", "Number of requests has exceeded your rate limit"),
                {"retry-after": f"{faults.retry_after:g}"},
                0.0,
                0,
            )
        if faults.server_errors and dice.random() < faults.server_errors:
            status = dice.choice((500, 502, 503, 529))
            error_type = {500: "api_error", 529: "overloaded_error"}.get(status, "api_error")
            return status, _error_body(error_type, "Injected failure"), {}, 0.0, 0
        delay = faults.delay if faults.slow and dice.random() < faults.slow else 0.0
        page = self._query(params, now)
        if faults.duplicates and page["data"] and dice.random() < faults.duplicates:
            self._duplicate(page, params)
        if self.page_padding > 0:
            body = _padded(page, self.page_padding)
        else:
            body = json.dumps(page, separators=(",", ":")).encode()
        return 200, body, {}, delay, len(page["data"])

    def _rate_headers(self, now: float) -> dict[str, str]:
        remaining = max(0, self.requests_per_minute - len(self._recent))
        reset = (self._recent[0] + 60) if self._recent else now
        return {
            "anthropic-ratelimit-requests-limit": str(self.requests_per_minute),
            "anthropic-ratelimit-requests-remaining": str(remaining),
            "anthropic-ratelimit-requests-reset": format_timestamp(
                datetime.fromtimestamp(reset, tz=UTC)
            ),
        }

    def _query(self, params: dict[str, list[str]], now: float) -> dict[str, Any]:
        for name, values in params.items():
            if name not in _ARRAY_PARAMS and name not in _SCALAR_PARAMS:
                raise _BadRequest(400, "invalid_request_error", f"Unknown parameter: {name}")
            if name in _SCALAR_PARAMS and len(values) > 1:
                raise _BadRequest(400, "invalid_request_error", f"{name}: given more than once")
        scalar = {name: values[0] for name, values in params.items() if name in _SCALAR_PARAMS}
        limit_text = scalar.get("limit", "100")
        try:
            limit = int(limit_text)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise _BadRequest(
                400, "invalid_request_error", f"limit: must be between 1 and {MAX_PAGE_SIZE}"
            )
        after_id, before_id = scalar.get("after_id"), scalar.get("before_id")
        if after_id and before_id:
            raise _BadRequest(
                400, "invalid_request_error", "Only one of after_id and before_id may be given"
            )
        types = set(params.get("activity_types[]", ()))
        excluded = set(params.get("exclude_activity_types[]", ()))
        if types and excluded:
            raise _BadRequest(
                400,
                "invalid_request_error",
                "activity_types and exclude_activity_types cannot be combined",
            )
        orgs = set(params.get("organization_ids[]", ()))
        actors = set(params.get("actor_ids[]", ()))
        for actor in actors:
            if not actor.startswith("user_"):
                raise _BadRequest(
                    400, "invalid_request_error", f"actor_ids: {actor!r} is not a user_ id"
                )
        lo, hi = 0, len(self._keys)
        for name in ("created_at.gte", "created_at.gt", "created_at.lte", "created_at.lt"):
            text = scalar.get(name)
            if text is None:
                continue
            try:
                bound = _micros(parse_timestamp(text))
            except ValueError:
                raise _BadRequest(
                    400, "invalid_request_error", f"{name}: invalid RFC 3339 date-time {text!r}"
                ) from None
            if name == "created_at.gte":
                lo = max(lo, bisect.bisect_left(self._keys, (bound,)))
            elif name == "created_at.gt":
                lo = max(lo, bisect.bisect_right(self._keys, (bound, _TOP)))
            elif name == "created_at.lte":
                hi = min(hi, bisect.bisect_right(self._keys, (bound, _TOP)))
            else:
                hi = min(hi, bisect.bisect_left(self._keys, (bound,)))

        def matches(item: _Item) -> bool:
            if item.visible_at > now:
                return False
            if orgs and not (item.orgs & orgs):
                return False
            if types and item.type not in types:
                return False
            if excluded and item.type in excluded:
                return False
            return not (actors and item.user_id not in actors)

        found: list[_Item] = []
        if after_id or before_id:
            cursor = after_id or before_id
            item = self._by_id.get(cursor or "")
            if item is None or item.visible_at > now:
                which = "after_id" if after_id else "before_id"
                raise _BadRequest(
                    400,
                    "invalid_request_error",
                    f'Invalid {which}. No activity found for {which} "{cursor}"',
                )
            position = bisect.bisect_left(self._keys, item.key)
            if after_id:
                hi = min(hi, position)
            else:
                lo = max(lo, position + 1)
        if before_id:
            # The page adjacent to the cursor on its newer side, returned newest first.
            index = lo
            while index < hi and len(found) <= limit:
                if matches(self._items[index]):
                    found.append(self._items[index])
                index += 1
            has_more = len(found) > limit
            found = found[:limit]
            found.reverse()
        else:
            index = hi - 1
            while index >= lo and len(found) <= limit:
                if matches(self._items[index]):
                    found.append(self._items[index])
                index -= 1
            has_more = len(found) > limit
            found = found[:limit]
        data = [item.raw for item in found]
        return {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def _duplicate(self, page: dict[str, Any], params: dict[str, list[str]]) -> None:
        """At-least-once delivery: repeat an activity inside the page and, when paging to
        newer activities, re-deliver the cursor's own activity at the page's old end."""
        data = page["data"]
        position = self._dice.randrange(len(data))
        data.insert(position + 1, data[position])
        before_id = params.get("before_id", [None])[0]
        if before_id and before_id in self._by_id:
            data.append(self._by_id[before_id].raw)
            page["last_id"] = before_id


def _default_type(status: int) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
        529: "overloaded_error",
    }.get(status, "api_error")


def _padded(page: dict[str, Any], padding: int) -> bytes:
    """The page as JSON with `padding` spaces after every activity: the same document,
    as large as a hostile or broken server might make it."""
    gap = b" " * padding
    items = b",".join(json.dumps(a, separators=(",", ":")).encode() + gap for a in page["data"])
    rest = {k: v for k, v in page.items() if k != "data"}
    tail = json.dumps(rest, separators=(",", ":")).encode()[1:]
    return b'{"data":[' + items + b"]," + tail


def _error_body(error_type: str, message: str) -> bytes:
    return json.dumps(
        {"type": "error", "error": {"type": error_type, "message": message}},
        separators=(",", ":"),
    ).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    mock: MockComplianceAPI

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, timed out) is normal here."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("mock-api: client %s went away", client_address)
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API
    # Headers and body leave in two writes; with Nagle on, the client's delayed ACK
    # would hold every response back by 40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def _respond(self, method: str) -> None:
        mock = self.server.mock
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out_headers, body, delay = mock.handle(method, self.path, headers)
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            for name, value in out_headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        if mock.on_request is not None:
            mock.on_request(mock.requests[-1])

    def do_GET(self) -> None:
        self._respond("GET")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self._respond("POST")

    def date_time_string(self, timestamp: float | None = None) -> str:
        clock = self.server.mock.clock
        return formatdate(clock() if timestamp is None else timestamp, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("mock-api %s %s", self.address_string(), format % args)


# -- loading feeds ----------------------------------------------------------------------


def load_feed(path: str | Path) -> list[dict[str, Any]]:
    """Activities from a JSONL file, a JSON array, or a saved API page (`{"data": […]}`),
    optionally gzipped. Lines that are not JSON objects are skipped (and counted by the
    caller through `MockComplianceAPI.skipped` when they lack an id or time)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        value = json.loads(text)
        return [v for v in value if isinstance(v, dict)]
    if stripped.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            data = value.get("data")
            return [v for v in data if isinstance(v, dict)] if isinstance(data, list) else [value]
    items: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            items.append(value)
    return items


def shift_feed(activities: list[dict[str, Any]], start: datetime) -> list[dict[str, Any]]:
    """Copies of `activities` moved in time so the oldest is at `start` (a recorded feed
    replayed as if it were happening now)."""
    times = []
    for activity in activities:
        try:
            times.append(parse_timestamp(activity["created_at"]))
        except (KeyError, TypeError, ValueError):
            times.append(None)
    known = [t for t in times if t is not None]
    if not known:
        return list(activities)
    delta = start - min(known)
    shifted = []
    for activity, moment in zip(activities, times, strict=True):
        copy = dict(activity)
        if moment is not None:
            copy["created_at"] = format_timestamp(moment + delta)
        shifted.append(copy)
    return shifted
