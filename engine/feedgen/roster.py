"""The fixed part of a generated feed: the organizations and admins the bundled rule lists
name, the names, addresses and user agents a seeded crowd is drawn from, and the clock and
rates activity follows."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Activity = dict[str, Any]
# An activity and when (µs) it happens, scheduled for later.
_Scheduled = tuple[int, Activity]

#: Where a feed starts when `start` is not given: a fixed Monday morning, so that the
#: output never depends on the wall clock.
DEFAULT_START = datetime(2026, 5, 4, 7, 30, tzinfo=UTC)

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# Random bytes mapped onto base58 by one `bytes.translate`: an order of magnitude cheaper than
# `random.choices`, at the price of a slight bias no reader of an id can notice.
_B58_TABLE = bytes(ord(_B58[i % len(_B58)]) for i in range(256))
_US = 1_000_000
_ACTIVITIES_PER_ROUND = 50_000


# --------------------------------------------------------------------------------------
# The fixed part of the world: what the bundled rule lists name must not depend on a seed.


@dataclass(frozen=True, slots=True)
class Org:
    """One organization of the parent; `domain` is its members' email domain."""

    id: str
    uuid: str
    name: str
    domain: str


ORGS: tuple[Org, ...] = (
    Org(
        "org_01Hq3vKpR8sWxZ2mTnYbC4dF",
        "6f1c2b9e-4d3a-4e8b-9a51-2c7d8e0f1a23",
        "Example Corp",
        "example.com",
    ),
    Org(
        "org_01Jt6cNw9aBzQ4rUeXs7kGhM",
        "0b7e5a41-93c2-4f6d-8e1a-5d2c9b7f3e64",
        "Example Corp Research",
        "example.com",
    ),
    Org(
        "org_01Pm2yFg5hVdT8jKqLw3nRxS",
        "c3d9f2a7-61b8-4e05-b7c4-8a0e1f6d2b95",
        "Example Labs",
        "example.net",
    ),
)
_ORG_SHARE = (0.6, 0.25, 0.15)

_CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/138.0.0.0 Safari/537.36"
)
_CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/138.0.0.0 Safari/537.36"
)
_EDGE_WIN = _CHROME_WIN + " Edg/138.0.3351.65"
_SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.5 Safari/605.1.15"
)
_FIREFOX_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0"
_CLAUDE_DESKTOP = "Claude/0.12.28 (darwin; arm64) Electron/36.4.0"
_CLAUDE_IOS = "Claude/1.250616.0 CFNetwork/3826.500.131 Darwin/24.5.0"
_CLAUDE_ANDROID = "Claude/1.250616.0 (Android 15; Pixel 8)"
_USER_AGENTS = (
    (_CHROME_MAC, 30),
    (_CHROME_WIN, 22),
    (_EDGE_WIN, 10),
    (_SAFARI_MAC, 8),
    (_FIREFOX_WIN, 4),
    (_CLAUDE_DESKTOP, 18),
    (_CLAUDE_IOS, 5),
    (_CLAUDE_ANDROID, 3),
)

# Attackers' tooling; real intrusions come from scripts and from unfamiliar browsers.
_ATTACKER_BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
_ATTACKER_SCRIPT = "python-requests/2.32.3"
_ATTACKER_CURL = "curl/8.7.1"

# (user_id, email, org index, role, addresses, user agent). The emails are the ones
# rules/lists/admins.yml names; the addresses sit in rules/lists/trusted_networks.yml.
_ADMINS = (
    (
        "user_01Ws8kD3fQ2mZr7TyVb5NcXe",
        "priya.raman@example.com",
        0,
        "primary_owner",
        ("192.0.2.21", "198.51.100.40"),
        _CHROME_MAC,
    ),
    (
        "user_01Gn4tR9pLx2Hc6BvYq8MdKs",
        "marco.bianchi@example.com",
        0,
        "admin",
        ("192.0.2.34",),
        _EDGE_WIN,
    ),
    (
        "user_01Ck7yS5wN3jFh9QzXm2TrBa",
        "sam.okafor@example.com",
        1,
        "admin",
        ("192.0.2.57", "198.51.100.77"),
        _SAFARI_MAC,
    ),
    (
        "user_01Yd2vH8nK4sPq6WcJx3GfLz",
        "lea.durand@example.net",
        2,
        "admin",
        ("198.51.100.12",),
        _FIREFOX_WIN,
    ),
)

# The Compliance API keys the organization knows (rules/lists/compliance_keys.yml):
# (api_key_id, address, user agent, share of the calls).
_COMPLIANCE_KEYS = (
    (
        "apikey_01Qm5bT8xR3nWk7Ys2HvDc9F",
        "198.51.100.200",
        "siem-connector/2.3.1 python-httpx/0.27.2",
        0.85,
    ),
    (
        "apikey_01Zp3cV6rN9gTf2Kw8JsHm4X",
        "198.51.100.201",
        "ediscovery-archiver/5.2 (+https://archiver.example.com)",
        0.15,
    ),
)
# An Admin API key automation legitimately holds; the attacks reuse it from elsewhere.
_ADMIN_API_KEY_ID = "apikey_01Ua7Ev4sB2xJr9Nd5KtQw3P"

# How many chats the scraping scenario loads (more than the 50 distinct a mass-viewing
# threshold counts).
_SCRAPED_CHATS = 55

# Activity types and actor types the August 2026 reference does not list.
UNLISTED_TYPE = "claude_chat_transcript_exported"
UNLISTED_ACTOR_TYPE = "workload_identity_actor"

_FIRST = (
    "ana",
    "ben",
    "carla",
    "dmitri",
    "elena",
    "farid",
    "grace",
    "hiro",
    "ines",
    "jonas",
    "kavya",
    "liam",
    "mei",
    "nadia",
    "oscar",
    "paula",
    "quentin",
    "rosa",
    "stefan",
    "tariq",
    "uma",
    "victor",
    "wen",
    "ximena",
    "yusuf",
    "zoe",
    "amara",
    "bruno",
    "chloe",
    "diego",
    "emma",
    "felix",
    "gita",
    "hugo",
    "ivy",
    "jamal",
    "kira",
    "lucas",
    "maya",
    "noah",
)
_LAST = (
    "alvarez",
    "becker",
    "chen",
    "dubois",
    "eriksen",
    "fischer",
    "garcia",
    "haddad",
    "ito",
    "jensen",
    "kowalski",
    "lopez",
    "mueller",
    "nakamura",
    "olsen",
    "petrov",
    "quinn",
    "rossi",
    "schmidt",
    "tanaka",
    "ueda",
    "varga",
    "wagner",
    "xu",
    "yilmaz",
    "zhang",
    "brown",
    "costa",
    "dias",
    "evans",
    "novak",
    "silva",
    "moreau",
    "khan",
    "berg",
    "kim",
)
_FILENAMES = (
    "Q3-forecast.xlsx",
    "design-review.pdf",
    "customer-interviews.docx",
    "architecture.png",
    "incident-2026-04-12.md",
    "pricing-model.csv",
    "roadmap-h2.pptx",
    "contract-draft.docx",
    "meeting-notes.txt",
    "survey-results.csv",
    "api-spec.yaml",
    "org-chart.pdf",
    "screenshot.png",
    "board-deck.pdf",
    "benchmark-results.json",
    "onboarding-guide.md",
)
_INTEGRATIONS = ("gdrive", "github", "gmail", "google_calendar", "slack")


@dataclass(slots=True)
class User:
    """A member of an organization, with what makes their activity look like one person's."""

    user_id: str
    email: str
    org: Org
    role: str
    ips: tuple[str, ...]
    agent: str
    chats: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# Time: integer microseconds since the epoch, formatted with a per-second cache.


class _Clock:
    """Formats microsecond times as the API does (`…T12:18:11.000538Z`); the date part is
    cached per second because consecutive activities share it most of the time."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, t_us: int) -> str:
        second, micro = divmod(t_us, _US)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{micro:06d}Z"


# Relative activity per hour of a weekday (UTC), and a weekend factor: Claude is used at
# work, so nights and weekends are quiet and the late morning is busiest.
# fmt: off
_HOURLY = (
    0.08, 0.05, 0.04, 0.04, 0.05, 0.10, 0.25, 0.55, 1.10, 1.60, 1.80, 1.75,  # 00-11
    1.40, 1.55, 1.70, 1.65, 1.45, 1.10, 0.70, 0.45, 0.35, 0.25, 0.18, 0.12,  # 12-23
)
# fmt: on
_WEEKEND = 0.15
# Cap on a person's activity weight (the median weight is about 1.5).
_HEAVIEST_USER = 100.0
_ACTIVITIES_PER_USER_DAY = 40.0


def _hour_of_week_rates(users: int) -> tuple[float, ...]:
    """Activities per microsecond for each hour of the week (index 0 = Monday 00:00 UTC)."""
    weights = [_HOURLY[h] * (_WEEKEND if day >= 5 else 1.0) for day in range(7) for h in range(24)]
    mean = sum(weights) / len(weights)
    per_us = users * _ACTIVITIES_PER_USER_DAY / 86_400 / _US
    return tuple(per_us * w / mean for w in weights)


def _lookup_table(weighted: Iterable[tuple[Any, float]], bits: int) -> tuple[Any, ...]:
    """A table of 2**bits entries where each item fills its share: one `getrandbits` then
    picks by weight in constant time, far cheaper than `random.choices` per activity."""
    items = list(weighted)
    total = sum(w for _, w in items)
    size = 1 << bits
    table: list[Any] = []
    for item, weight in items:
        table.extend([item] * max(1, round(weight / total * size)))
    while len(table) < size:
        table.append(items[0][0])
    return tuple(table[:size])
