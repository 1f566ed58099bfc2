"""Deterministic, realistic Compliance API activity feeds.

The demo, the rules' fixtures and the benchmarks all need activities that look like what the
Compliance API really sends (the wire shape of `GET /v1/compliance/activities`, its type mix,
its actor union), with attacks hidden in them that the bundled rules must find. Real feeds
cannot be shipped, so this module makes them: the same `(count, seed, start, attacks)` always
gives the same activities, byte for byte, so a fixture can be regenerated and diffed.

Regenerate the bundled demo feed with:

    python -m engine.feedgen --count 400 --seed 7 --out fixtures/demo/feed.jsonl

and a benchmark file (gzip when the name ends in .gz) with, for example:

    python -m engine.feedgen --count 1000000 --seed 1 --out /tmp/feed-1m.jsonl.gz

What the feed holds:

- Three organizations of one parent (`Example Corp` and a research org on example.com,
  `Example Labs` on example.net). Sign-ins, sign-outs and Compliance API calls carry null
  `organization_id`/`organization_uuid`, as the API does.
- A fixed roster of four admins (the ones `rules/lists/admins.yml` names, on office and VPN
  addresses that `rules/lists/trusted_networks.yml` trusts) and a seeded crowd of users, each
  with a stable email, `user_id`, one or two stable addresses from the documentation ranges
  and a user agent. Heavy users exist: activity per user follows a long tail.
- The real mix: mostly chat and file views, chat creation, SSO sign-ins (initiated, then
  succeeded a few seconds later), Compliance API reads by the two keys
  `rules/lists/compliance_keys.yml` knows, some project and file work, rare admin actions
  that look like attacks but are benign (invites to corporate domains, members joining,
  keys created by people, service keys created by the system, harmless settings changes),
  and one benign look-alike of each attack the rules count: a single session revoked, a
  step-up prompt cancelled once and then passed, a stale chat link denied once or twice,
  trusted devices enrolled (admins from the office), a workspace created by a person.
- Admins sign in from their office address as the feed begins, as they would have before
  any deployment's history: a feed that starts cold must not make an admin's first office
  sign-in look new because their VPN address happened to show up first.
- Activity follows office hours (UTC) and is thin at weekends; inter-arrival times are
  exponential, so bursts happen the way they do in real feeds.
- In every feed, once per round: an activity of a type the API reference does not list, one
  from an actor type it does not list, and one known type with an extra field: new types
  and fields appear without notice and must flow through the engine.
- With `attacks=True`, the scenarios of `SCENARIOS` (see `_Scenarios`), spread through the
  feed, repeated with fresh attacker addresses once per 50,000 activities so benchmark
  files keep producing alerts from start to end. They tell one story per round: an admin
  account taken over, a member promoted and minting a key, data exported and scraped,
  defenses switched off. A feed too small for all of them keeps those that fit in a third
  of its activities (the 400-activity demo drops none).

Everything is plain stdlib and cheap per activity (a few dict builds, one random id and a
cached timestamp prefix), because the same code writes million-activity benchmark files.
"""

from __future__ import annotations

import argparse
import gzip
import heapq
import json
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

Activity = dict[str, Any]

__all__ = ["DEFAULT_START", "SCENARIOS", "generate", "main", "write_jsonl"]

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


# --------------------------------------------------------------------------------------
# The generator.

_Scheduled = tuple[int, Activity]


class _Feed:
    """State of one feed: the seeded world, the clock, and activities scheduled for later
    (the second half of a sign-in, the steps of an attack)."""

    def __init__(
        self, count: int, seed: int, start: datetime, attacks: bool, users: int | None = None
    ) -> None:
        self.rng = random.Random(seed)
        self.users_wanted = users
        self.count = count
        self.attacks = attacks
        self.clock = _Clock()
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self.start_us = int(start.timestamp()) * _US + start.microsecond
        self.pending: list[tuple[int, int, Activity]] = []
        self._seq = 0
        self._bits = self.rng.getrandbits
        self._build_world()
        self.rates = _hour_of_week_rates(len(self.users))
        self.type_table = _lookup_table(self._type_mix(), 14)

    # -- ids and actors ----------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        """A tagged id like the API's: prefix, `01`, then 22 base58 characters."""
        tail = self._bits(176).to_bytes(22, "little").translate(_B58_TABLE).decode("ascii")
        return prefix + "01" + tail

    def schedule(self, t_us: int, activity: Activity) -> None:
        self._seq += 1
        heapq.heappush(self.pending, (t_us, self._seq, activity))

    def activity(
        self, t_us: int, org: Org | None, actor: dict[str, Any], kind: str, **fields: Any
    ) -> Activity:
        """The common envelope, in the API's key order, then the type-specific fields."""
        result: Activity = {
            "id": self.new_id("activity_"),
            "created_at": self.clock.format(t_us),
            "organization_id": org.id if org else None,
            "organization_uuid": org.uuid if org else None,
            "actor": actor,
            "type": kind,
        }
        if fields:
            result.update(fields)
        return result

    def user_actor(self, user: User, ip: str | None = None, agent: str | None = None) -> dict:
        return {
            "type": "user_actor",
            "email_address": user.email,
            "user_id": user.user_id,
            "ip_address": ip or (user.ips[0] if len(user.ips) == 1 else self.rng.choice(user.ips)),
            "user_agent": agent or user.agent,
        }

    @staticmethod
    def unauthenticated_actor(email: str | None, ip: str, agent: str) -> dict:
        return {
            "type": "unauthenticated_user_actor",
            "unauthenticated_email_address": email,
            "ip_address": ip,
            "user_agent": agent,
        }

    # -- the world ---------------------------------------------------------------------

    def _build_world(self) -> None:
        rng = self.rng
        # Big feeds get big organizations, so a million activities span days, not years.
        n_users = self.users_wanted or max(24, min(3000, self.count // 16))
        agents = _lookup_table(_USER_AGENTS, 8)
        # Offices egress through a handful of NAT addresses; VPN users through others;
        # some people work from home addresses nobody lists.
        office = [f"192.0.2.{n}" for n in range(100, 160)]
        vpn = [f"198.51.100.{n}" for n in range(100, 180)]
        taken: set[str] = {email for _, email, *_ in _ADMINS}
        self.admins: list[User] = []
        self.admins_by_org: dict[str, list[User]] = {org.id: [] for org in ORGS}
        for user_id, email, org_index, role, ips, agent in _ADMINS:
            admin = User(user_id, email, ORGS[org_index], role, ips, agent)
            self.admins.append(admin)
            self.admins_by_org[admin.org.id].append(admin)
        self.members: list[User] = []
        orgs = _lookup_table(zip(ORGS, _ORG_SHARE, strict=True), 8)
        while len(self.members) < n_users:
            org = orgs[rng.getrandbits(8)]
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            email = f"{first}.{last}@{org.domain}"
            suffix = 2
            while email in taken:
                email = f"{first}.{last}{suffix}@{org.domain}"
                suffix += 1
            taken.add(email)
            roll = rng.random()
            if roll < 0.55:
                ips: tuple[str, ...] = (rng.choice(office),)
            elif roll < 0.8:
                ips = (rng.choice(office), rng.choice(vpn))
            else:
                ips = (rng.choice(office), f"203.0.113.{rng.randint(2, 126)}")
            self.members.append(
                User(self.new_id("user_"), email, org, "user", ips, agents[rng.getrandbits(8)])
            )
        self.users = self.admins + self.members
        self.org_projects: dict[str, list[str]] = {org.id: [] for org in ORGS}
        for user in self.users:
            user.chats = [self.new_id("claude_chat_") for _ in range(rng.randint(2, 5))]
            user.files = [self.new_id("claude_file_") for _ in range(rng.randint(1, 3))]
            project = self.new_id("claude_proj_")
            user.projects = [project]
            self.org_projects[user.org.id].append(project)
        # A long tail: a few people use Claude all day, most a little. The tail is capped:
        # uncapped, one of 3,000 draws now and then weighs a thousand times the median and
        # "a person" loads a chat every three seconds for a whole day, which is a script.
        # At the cap the busiest person of a 3,000-member organization does about 200
        # things an hour at the late-morning peak, one every 18 seconds.
        self.user_table = _lookup_table(
            ((u, min(rng.paretovariate(1.6), _HEAVIEST_USER)) for u in self.users), 14
        )
        self.compliance_keys = _lookup_table(((k, k[3]) for k in _COMPLIANCE_KEYS), 8)

    def _type_mix(self) -> list[tuple[Callable[[int, User], Activity], float]]:
        """Relative frequencies, per mille, of what members do (a sign-in counts once
        although it writes two activities)."""
        return [
            (self._chat_viewed, 285),
            (self._file_viewed, 125),
            (self._chat_created, 110),
            (self._compliance_api_accessed, 95),
            (self._sso_login, 55),
            (self._project_viewed, 45),
            (self._file_uploaded, 30),
            (self._artifact_viewed, 28),
            (self._chat_updated, 18),
            (self._logged_out, 12),
            (self._artifact_created, 12),
            (self._project_document_uploaded, 10),
            (self._chat_deleted, 8),
            (self._project_created, 6),
            (self._magic_link_login, 6),
            (self._project_sharing_updated, 3),
            (self._user_settings_updated, 3),
            (self._sso_login_with_typo, 1),
            (self._integration_connected, 2),
            (self._invite_sent, 1.5),
            (self._invite_accepted, 1),
            (self._scim_user_created, 0.8),
            (self._role_updated, 1),
            (self._org_settings_updated, 0.5),
            (self._api_key_created, 0.4),
            (self._service_key_created, 0.3),
            (self._members_exported, 0.2),
            # Near misses for the bundled rules: each looks like its attack, once.
            (self._session_revoked, 0.5),
            (self._step_up_hiccup, 0.2),
            (self._chat_link_denied, 0.3),
            (self._trusted_device_enrolled, 0.2),
            (self._workspace_created, 0.05),
        ]

    # -- the main loop -----------------------------------------------------------------

    def run(self) -> Iterator[Activity]:
        rng = self.rng
        pending = self.pending
        rates = self.rates
        users = self.user_table
        types = self.type_table
        getrandbits = rng.getrandbits
        expovariate = rng.expovariate
        plan = self._plan()
        next_plan = 0
        emitted = 0
        t = self.start_us
        self._admins_sign_in(t)
        count = self.count
        while emitted < count:
            hour_of_week = (t // 3_600_000_000 + 72) % 168  # the epoch was a Thursday
            t += int(expovariate(rates[hour_of_week])) + 1
            while pending and pending[0][0] <= t:
                yield heapq.heappop(pending)[2]
                emitted += 1
                if emitted >= count:
                    return
            while next_plan < len(plan) and plan[next_plan][0] <= emitted:
                for when, activity in plan[next_plan][1](t):
                    self.schedule(when, activity)
                next_plan += 1
            yield types[getrandbits(14)](t, users[getrandbits(14)])
            emitted += 1

    def _plan(self) -> list[tuple[int, Callable[[int], list[_Scheduled]]]]:
        """Where each scenario starts, as a number of activities already emitted: spread
        over 3 %..85 % of every round, so none is cut off by the end of the feed."""
        rounds = max(1, self.count // _ACTIVITIES_PER_ROUND)
        per_round = self.count / rounds
        plan: list[tuple[int, Callable[[int], list[_Scheduled]]]] = []
        for r in range(rounds):
            scenarios = _Scenarios(self, r).chosen(self.attacks, budget=int(per_round) // 3)
            for i, scenario in enumerate(scenarios):
                position = 0.03 + 0.82 * i / max(1, len(scenarios) - 1)
                plan.append((int(r * per_round + position * per_round), scenario))
        return plan

    # -- member activity ---------------------------------------------------------------

    def _chat_viewed(self, t: int, user: User) -> Activity:
        project = self.rng.choice(user.projects) if self.rng.random() < 0.2 else None
        return self.activity(
            t,
            user.org,
            self.user_actor(user),
            "claude_chat_viewed",
            claude_chat_id=self.rng.choice(user.chats),
            claude_project_id=project,
        )

    def _chat_created(self, t: int, user: User) -> Activity:
        chat = self.new_id("claude_chat_")
        user.chats.append(chat)
        if len(user.chats) > 12:
            del user.chats[0]
        project = self.rng.choice(user.projects) if self.rng.random() < 0.2 else None
        return self.activity(
            t,
            user.org,
            self.user_actor(user),
            "claude_chat_created",
            claude_chat_id=chat,
            claude_project_id=project,
        )

    def _chat_updated(self, t: int, user: User) -> Activity:
        return self.activity(
            t,
            user.org,
            self.user_actor(user),
            "claude_chat_updated",
            claude_chat_id=self.rng.choice(user.chats),
        )

    def _chat_deleted(self, t: int, user: User) -> Activity:
        chat = user.chats.pop(0) if len(user.chats) > 1 else user.chats[0]
        return self.activity(
            t, user.org, self.user_actor(user), "claude_chat_deleted", claude_chat_id=chat
        )

    def _file_viewed(self, t: int, user: User) -> Activity:
        return self.activity(
            t,
            user.org,
            self.user_actor(user),
            "claude_file_viewed",
            claude_file_id=self.rng.choice(user.files),
            claude_artifact_id=None,
            claude_project_id=None,
            filename=self.rng.choice(_FILENAMES),
        )

    def _file_uploaded(self, t: int, user: User) -> Activity:
        file_id = self.new_id("claude_file_")
        user.files.append(file_id)
        if len(user.files) > 8:
            del user.files[0]
        return self.activity(
            t,
            user.org,
            self.user_actor(user),
            "claude_file_uploaded",
            claude_file_id=file_id,
            filename=self.rng.choice(_FILENAMES),
            claude_chat_id=self.rng.choice(user.chats),
            claude_project_id=None,
        )

    def _project_viewed(self, t: int, user: User) -> Activity:
        return self.activity(
            t,
            user.org,
            self.user_actor(user),
            "claude_project_viewed",
            claude_project_id=self.rng.choice(self.org_projects[user.org.id]),
            preview_only=False,
        )

    def _project_created(self, t: int, user: User) -> Activity:
        project = self.new_id("claude_proj_")
        user.projects.append(project)
        self.org_projects[user.org.id].append(project)
        return self.activity(
            t, user.org, self.user_actor(user), "claude_project_created", claude_project_id=project
        )

    def _project_document_uploaded(self, t: int, user: User) -> Activity:
        return self.activity(
            t,
            user.org,
            self.user_actor(user),
            "claude_project_document_uploaded",
            claude_project_document_id=self.new_id("claude_proj_doc_"),
            claude_project_id=self.rng.choice(user.projects),
            filename=self.rng.choice(_FILENAMES),
        )

    def _project_sharing_updated(self, t: int, user: User) -> Activity:
        return self.activity(
            t,
            user.org,
            self.user_actor(user),
            "claude_project_sharing_updated",
            audience=[{"type": "organization"}],
            claude_project_id=self.rng.choice(user.projects),
        )

    def _artifact_viewed(self, t: int, user: User) -> Activity:
        return self.activity(
            t,
            user.org,
            self.user_actor(user),
            "claude_artifact_viewed",
            claude_artifact_id=self.new_id("claude_artifact_"),
            claude_chat_id=self.rng.choice(user.chats),
        )

    def _artifact_created(self, t: int, user: User) -> Activity:
        return self.activity(
            t,
            user.org,
            self.user_actor(user),
            "claude_artifact_created",
            claude_artifact_id=self.new_id("claude_artifact_"),
            claude_chat_id=self.rng.choice(user.chats),
        )

    def _user_settings_updated(self, t: int, user: User) -> Activity:
        on = self.rng.random() < 0.5
        return self.activity(
            t,
            user.org,
            self.user_actor(user),
            "claude_user_settings_updated",
            updates=[{"type": "web_search_enabled", "previous_value": not on, "current_value": on}],
        )

    def _integration_connected(self, t: int, user: User) -> Activity:
        return self.activity(
            t,
            user.org,
            self.user_actor(user),
            "integration_user_connected",
            integration_type=self.rng.choice(_INTEGRATIONS),
            mcp_server_id=None,
            mcp_server_name=None,
        )

    def _compliance_api_accessed(self, t: int, _user: User) -> Activity:
        key_id, ip, agent, _share = self.compliance_keys[self.rng.getrandbits(8)]
        actor = {"type": "api_actor", "api_key_id": key_id, "ip_address": ip, "user_agent": agent}
        return self.activity(
            t,
            None,
            actor,
            "compliance_api_accessed",
            request_id=self.new_id("req_"),
            request_method="GET",
            status_code=200,
            url="/v1/compliance/activities?limit=1000",
            request_body=None,
        )

    # -- signing in and out ------------------------------------------------------------

    def _sso_login(self, t: int, user: User) -> Activity:
        """A sign-in writes two activities: the unauthenticated start, then the success."""
        actor = self._sign_in_actor(user)
        self._later(
            t + self.rng.randint(1_500_000, 6_000_000),
            None,
            actor,
            "sso_login_succeeded",
            auth_method="sso",
            mfa_method=None,
        )
        return self.activity(
            t,
            None,
            self.unauthenticated_actor(user.email, actor["ip_address"], actor["user_agent"]),
            "sso_login_initiated",
        )

    def _sso_login_with_typo(self, t: int, user: User) -> Activity:
        """A benign failure: the person fails once, tries again and gets in."""
        actor = self._sign_in_actor(user)
        start = self.unauthenticated_actor(user.email, actor["ip_address"], actor["user_agent"])
        failed_at = t + self.rng.randint(3_000_000, 20_000_000)
        retry_at = failed_at + self.rng.randint(5_000_000, 40_000_000)
        self._later(failed_at, None, dict(start), "sso_login_failed")
        self._later(retry_at, None, dict(start), "sso_login_initiated")
        self._later(
            retry_at + 2_500_000,
            None,
            actor,
            "sso_login_succeeded",
            auth_method="sso",
            mfa_method=None,
        )
        return self.activity(t, None, start, "sso_login_initiated")

    def _magic_link_login(self, t: int, user: User) -> Activity:
        actor = self._sign_in_actor(user)
        self._later(
            t + self.rng.randint(20_000_000, 180_000_000),
            None,
            actor,
            "magic_link_login_succeeded",
            auth_method="magic_link",
            mfa_method=None,
        )
        return self.activity(
            t,
            None,
            self.unauthenticated_actor(user.email, actor["ip_address"], actor["user_agent"]),
            "magic_link_login_initiated",
        )

    def _sign_in_actor(self, user: User) -> dict[str, Any]:
        """Admins sign in from their first (office) address. Their other address only shows
        up in activity after a sign-in (a laptop moving onto the VPN), so a feed without
        attacks has no admin sign-in from an address the feed has not shown before: a
        deployment with history would have learned it, and a clean feed must stay clean."""
        return self.user_actor(user, user.ips[0] if user.role != "user" else None)

    def _logged_out(self, t: int, user: User) -> Activity:
        return self.activity(t, None, self.user_actor(user), "user_logged_out")

    def _later(self, t: int, org: Org | None, actor: dict, kind: str, **fields: Any) -> None:
        self.schedule(t, self.activity(t, org, actor, kind, **fields))

    def _admins_sign_in(self, t: int) -> None:
        """Each admin signs in from the office as the feed begins. A deployment with
        history knows their addresses; a feed that starts cold must not let an admin's VPN
        address (seen first in ordinary activity, learned silently) make their first office
        sign-in look new."""
        for i, admin in enumerate(self.admins):
            ip = admin.ips[0]
            start = self.unauthenticated_actor(admin.email, ip, admin.agent)
            self._later(t + 2 * i, None, start, "sso_login_initiated")
            self._later(
                t + 2 * i + 1,
                None,
                self.user_actor(admin, ip),
                "sso_login_succeeded",
                auth_method="sso",
                mfa_method=None,
            )

    # -- near misses: what the attacks look like when nothing is wrong -----------------

    def _session_revoked(self, t: int, user: User) -> Activity:
        """Someone signs an old laptop out: one session, not a purge."""
        return self.activity(t, None, self.user_actor(user), "session_revoked")

    def _step_up_hiccup(self, t: int, user: User) -> Activity:
        """A step-up prompt cancelled once, then passed."""
        actor = self.user_actor(user)
        self._later(
            t + self.rng.randint(10_000_000, 60_000_000),
            user.org,
            dict(actor),
            "step_up_authentication_succeeded",
        )
        return self.activity(
            t,
            user.org,
            actor,
            "step_up_authentication_failed",
            user_agent=actor["user_agent"],
            method="webauthn",
            reason="challenge_rejected",
            trusted_device_id=None,
        )

    def _chat_link_denied(self, t: int, user: User) -> Activity:
        """A stale link to someone else's chat, opened and retried once or twice."""
        actor = self.user_actor(user)
        chat = self.new_id("claude_chat_")
        for _ in range(self.rng.randint(0, 2)):
            t2 = t + self.rng.randint(3_000_000, 30_000_000)
            self._later(t2, user.org, dict(actor), "claude_chat_access_failed", claude_chat_id=chat)
        return self.activity(t, user.org, actor, "claude_chat_access_failed", claude_chat_id=chat)

    def _trusted_device_enrolled(self, t: int, user: User) -> Activity:
        """A member (admins from the office) enrols their laptop or phone."""
        ip = user.ips[0] if user.role != "user" else None
        actor = self.user_actor(user, ip)
        return self.activity(
            t,
            None,
            actor,
            "trusted_device_enrolled",
            user_agent=actor["user_agent"],
            enrollment_method="session",
            platform=self.rng.choice(("desktop_app", "ios", "android")),
            trusted_device_id=self.new_id("tdev_"),
        )

    def _workspace_created(self, t: int, user: User) -> Activity:
        """An admin creates a workspace in the Console (a person, not a key)."""
        admin = self._admin_of(user)
        actor = self.user_actor(admin, admin.ips[0])
        return self.activity(
            t,
            admin.org,
            actor,
            "platform_workspace_created",
            user_agent=actor["user_agent"],
            workspace_id=self.new_id("wrkspc_"),
        )

    # -- rare administration, all benign -----------------------------------------------

    def _admin_of(self, user: User) -> User:
        return self.rng.choice(self.admins_by_org[user.org.id])

    def _invite_sent(self, t: int, user: User) -> Activity:
        admin = self._admin_of(user)
        email = f"{self.rng.choice(_FIRST)}.{self.rng.choice(_LAST)}@{user.org.domain}"
        return self.activity(
            t,
            admin.org,
            self.user_actor(admin),
            "org_user_invite_sent",
            invited_email=email,
            invited_rbac_group_ids=[],
            invited_role="user",
            invited_seat_tier="standard",
        )

    def _invite_accepted(self, t: int, user: User) -> Activity:
        return self.activity(
            t,
            user.org,
            self.user_actor(user),
            "org_user_invite_accepted",
            invite_id=self.new_id("invite_"),
        )

    def _scim_user_created(self, t: int, user: User) -> Activity:
        actor = {
            "type": "scim_directory_sync_actor",
            "workos_event_id": self.new_id("event_"),
            "directory_id": "directory_01Fk8sN3vT6pWq2Xc9RbYm4H",
            "idp_connection_type": "OktaSAML",
        }
        return self.activity(t, user.org, actor, "scim_user_created", user_id=self.new_id("user_"))

    def _role_updated(self, t: int, user: User) -> Activity:
        """Members join (no role -> user) or leave (user -> no role); never a promotion."""
        admin = self._admin_of(user)
        joined = self.rng.random() < 0.7
        return self.activity(
            t,
            admin.org,
            self.user_actor(admin),
            "claude_user_role_updated",
            current_role="user" if joined else None,
            previous_role=None if joined else "user",
            user_email=user.email,
            user_id=user.user_id,
        )

    def _org_settings_updated(self, t: int, user: User) -> Activity:
        """Harmless changes, or risky settings moved the safe way."""
        admin = self._admin_of(user)
        updates = self.rng.choice(
            (
                [{"type": "web_search_enabled", "previous_value": False, "current_value": True}],
                [
                    {
                        "type": "public_projects_enabled",
                        "previous_value": True,
                        "current_value": False,
                    }
                ],
                [{"type": "chat_enabled", "previous_value": False, "current_value": True}],
                [{"type": "members_limit", "previous_value": 500, "current_value": 750}],
            )
        )
        return self.activity(
            t,
            admin.org,
            self.user_actor(admin),
            "claude_organization_settings_updated",
            updates=updates,
        )

    def _api_key_created(self, t: int, user: User) -> Activity:
        """People create their own keys in the Console, one at a time, from where they work
        (an admin creating every member's keys would be a key factory, not an admin)."""
        return self.activity(
            t,
            user.org,
            self.user_actor(user),
            "api_key_created",
            api_key_id=self.new_id("apikey_"),
            scopes=["user:inference"],
            restricted_to_organization=True,
        )

    def _service_key_created(self, t: int, user: User) -> Activity:
        """Anthropic's systems mint service keys for integrations; this is normal."""
        actor = {"type": "system_actor", "service": "claude_code"}
        return self.activity(
            t,
            user.org,
            actor,
            "service_key_created",
            is_service_created=True,
            key_name="claude-code-review",
            service_name="claude_code",
            scopes=None,
            service_key_id=self.new_id("svckey_"),
        )

    def _members_exported(self, t: int, user: User) -> Activity:
        admin = self._admin_of(user)
        return self.activity(t, admin.org, self.user_actor(admin), "org_members_exported")


# --------------------------------------------------------------------------------------
# Scenarios: the attacks a rule pack exists for, and the novelties that must pass.

#: Scenario name -> what the attacker does in it (what a rule pack should notice).
SCENARIOS: dict[str, str] = {
    "sso_brute_force": "a burst of failed SSO sign-ins on one account, then a success",
    "admin_login_untrusted_network": (
        "an admin signs in from an address outside the trusted networks"
    ),
    "step_up_failures": "repeated failed step-up (re-authentication) attempts",
    "privilege_escalation_then_key": (
        "a member is made admin, signs in from a new address and creates an admin API key"
    ),
    "public_projects_enabled": "the organization's settings are loosened: public projects",
    "password_spraying": "one address fails sign-ins against many accounts",
    "external_invite": "an outside address is invited, with a privileged role",
    "sso_disabled": "the SSO connection is removed and SSO switched off",
    "ip_restriction_deleted": "the organization's IP allow-list is deleted",
    "compliance_api_denied": "Compliance API calls denied to a key",
    "compliance_api_unknown_key": "Compliance API calls with a key the organization does not list",
    "compliance_api_logging_disabled": "Compliance API activity logging switched off",
    "data_exfiltration": "the member list, the audit log and the organization's data exported",
    "mass_chat_views": "one account opens many other people's chats in a short time",
    "mcp_server_created": "a new MCP server is connected",
    "code_execution_full_egress": "code execution given unrestricted network egress",
    "spend_limit_deleted": "a spend limit is deleted",
    "api_key_created_by_non_user": "API keys created in a burst by an actor that is not a person",
    "access_transparency": "Anthropic staff access the organization's data",
}


class _Scenarios:
    """One round of scenarios. Each method takes the anchor time (µs) and returns its
    activities with absolute times, all after the anchor. Within a round one admin account
    is compromised and works from one attacker address, so the alerts tell one story."""

    def __init__(self, feed: _Feed, round_index: int) -> None:
        self.feed = feed
        rng = feed.rng
        self.round = round_index
        addresses = rng.sample(range(128, 255), 5)
        self.brute_ip, self.spray_ip, self.intruder_ip, self.tool_ip, self.accomplice_ip = (
            f"203.0.113.{n}" for n in addresses
        )
        # Round 0 is the demo's story: marco.bianchi@example.com is compromised.
        self.victim_admin = feed.admins[1] if round_index == 0 else rng.choice(feed.admins)
        self.accomplice = rng.choice(
            [m for m in feed.members if m.org.id == self.victim_admin.org.id] or feed.members
        )

    def chosen(self, attacks: bool, budget: int) -> list[Callable[[int], list[_Scheduled]]]:
        """Scenarios for this round in feed order, dropping those a small feed cannot hold."""
        novelties = [self.unlisted_type, self.unlisted_actor_type]
        if not attacks:
            return novelties if budget >= 3 else []
        ordered = [
            self.unlisted_type,
            self.sso_brute_force,
            self.admin_login_untrusted_network,
            self.step_up_failures,
            self.privilege_escalation_then_key,
            self.public_projects_enabled,
            self.password_spraying,
            self.external_invite,
            self.sso_disabled,
            self.ip_restriction_deleted,
            self.compliance_api_denied,
            self.compliance_api_unknown_key,
            self.unlisted_actor_type,
            self.compliance_api_logging_disabled,
            self.data_exfiltration,
            self.mass_chat_views,
            self.mcp_server_created,
            self.code_execution_full_egress,
            self.spend_limit_deleted,
            self.api_key_created_by_non_user,
            self.access_transparency,
        ]
        sizes = {
            self.sso_brute_force: 15,
            self.password_spraying: 12,
            self.compliance_api_unknown_key: 6,
            self.compliance_api_denied: 6,
            self.sso_disabled: 2,
            self.admin_login_untrusted_network: 4,
            self.step_up_failures: 3,
            self.privilege_escalation_then_key: 5,
            self.data_exfiltration: 4,
            self.mass_chat_views: _SCRAPED_CHATS,
            self.api_key_created_by_non_user: 5,
            self.unlisted_type: 2,
        }
        chosen = []
        for scenario in ordered:
            size = sizes.get(scenario, 1)
            if size <= budget:
                chosen.append(scenario)
                budget -= size
        return chosen

    def _admin_actor(self) -> dict[str, Any]:
        return self.feed.user_actor(self.victim_admin, self.intruder_ip, _ATTACKER_BROWSER)

    def _at(self, t: int, org: Org | None, actor: dict, kind: str, **fields: Any) -> _Scheduled:
        return t, self.feed.activity(t, org, actor, kind, **fields)

    def _seconds(self, low: float, high: float) -> int:
        return int(self.feed.rng.uniform(low, high) * _US)

    # -- novelties (in every feed) -----------------------------------------------------

    def unlisted_type(self, t: int) -> list[_Scheduled]:
        """A type the reference does not list yet, and a known type with a new field."""
        user = self.feed.rng.choice(self.feed.members)
        t1 = t + self._seconds(5, 30)
        t2 = t1 + self._seconds(20, 60)
        return [
            self._at(
                t1,
                user.org,
                self.feed.user_actor(user),
                UNLISTED_TYPE,
                claude_chat_id=user.chats[-1],
                export_format="markdown",
            ),
            self._at(
                t2,
                user.org,
                self.feed.user_actor(user),
                "claude_chat_viewed",
                claude_chat_id=user.chats[-1],
                claude_project_id=None,
                client_platform="claude_in_chrome",
            ),
        ]

    def unlisted_actor_type(self, t: int) -> list[_Scheduled]:
        """An actor type the reference does not list: a CI workload reading a file."""
        user = self.feed.rng.choice(self.feed.members)
        actor = {
            "type": UNLISTED_ACTOR_TYPE,
            "workload_id": self.feed.new_id("wlid_"),
            "issuer": "https://token.actions.githubusercontent.com",
            "ip_address": "198.51.100.230",
            "user_agent": "github-actions-runner/2.325.0",
        }
        return [
            self._at(
                t + self._seconds(5, 30),
                user.org,
                actor,
                "claude_file_viewed",
                claude_file_id=user.files[-1],
                claude_artifact_id=None,
                claude_project_id=None,
                filename=None,
            )
        ]

    # -- attacks -----------------------------------------------------------------------

    def sso_brute_force(self, t: int) -> list[_Scheduled]:
        """Seven SSO failures for one account from one address in about four minutes, and
        then the guess that works: the script signs in as the member."""
        target = self.feed.rng.choice(self.feed.members)
        out: list[_Scheduled] = []
        for _ in range(7):
            t += self._seconds(20, 40)
            actor = self.feed.unauthenticated_actor(target.email, self.brute_ip, _ATTACKER_SCRIPT)
            out.append(self._at(t, None, actor, "sso_login_initiated"))
            out.append(self._at(t + self._seconds(1, 3), None, dict(actor), "sso_login_failed"))
        t += self._seconds(20, 40)
        out.append(
            self._at(
                t,
                None,
                self.feed.user_actor(target, self.brute_ip, _ATTACKER_SCRIPT),
                "sso_login_succeeded",
                auth_method="sso",
                mfa_method=None,
            )
        )
        return out

    def step_up_failures(self, t: int) -> list[_Scheduled]:
        """The intruder in the admin's session reaches a sensitive action and fails the
        security-key check three times."""
        out: list[_Scheduled] = []
        for _ in range(3):
            t += self._seconds(20, 60)
            out.append(
                self._at(
                    t,
                    self.victim_admin.org,
                    self._admin_actor(),
                    "step_up_authentication_failed",
                    user_agent=_ATTACKER_BROWSER,
                    method="webauthn",
                    reason="verification_failed",
                    trusted_device_id=None,
                )
            )
        return out

    def password_spraying(self, t: int) -> list[_Scheduled]:
        """One failed magic-link sign-in for each of six accounts, four to five minutes
        apart: slow enough to stay under a per-address burst rule."""
        rng = self.feed.rng
        targets = [u.email for u in rng.sample(self.feed.members, 5)]
        targets.insert(rng.randint(0, 5), "admin@example.com")
        out: list[_Scheduled] = []
        for email in targets:
            t += self._seconds(235, 290)
            actor = self.feed.unauthenticated_actor(email, self.spray_ip, _CHROME_WIN)
            out.append(self._at(t, None, actor, "magic_link_login_initiated"))
            out.append(
                self._at(t + self._seconds(30, 90), None, dict(actor), "magic_link_login_failed")
            )
        return out

    def admin_login_untrusted_network(self, t: int) -> list[_Scheduled]:
        """The admin signs in at the office; minutes later someone signs in as them from an
        address neither they nor the lists know. (Kept short, so the intruder's sign-in
        precedes what the next scenarios do from that address even in dense feeds.)"""
        admin = self.victim_admin
        office = self.feed.user_actor(admin, admin.ips[0])
        t0 = t + self._seconds(5, 30)
        t1 = t0 + self._seconds(60, 180)
        intruder = self.feed.unauthenticated_actor(admin.email, self.intruder_ip, _ATTACKER_BROWSER)
        return [
            self._at(
                t0,
                None,
                self.feed.unauthenticated_actor(admin.email, admin.ips[0], admin.agent),
                "sso_login_initiated",
            ),
            self._at(
                t0 + self._seconds(2, 6),
                None,
                office,
                "sso_login_succeeded",
                auth_method="sso",
                mfa_method=None,
            ),
            self._at(t1, None, intruder, "sso_login_initiated"),
            self._at(
                t1 + self._seconds(2, 6),
                None,
                self._admin_actor(),
                "sso_login_succeeded",
                auth_method="sso",
                mfa_method=None,
            ),
        ]

    def privilege_escalation_then_key(self, t: int) -> list[_Scheduled]:
        """The intruder makes a member (the accomplice) admin; twenty minutes later the
        accomplice signs in from an address of the intruder's and mints an Admin API key.
        The member works from the office first, so their address has a baseline, and the
        feed itself (not lists/admins.yml) tells the rules they are now an admin."""
        member = self.accomplice
        org = self.victim_admin.org
        t0 = t + self._seconds(5, 30)
        t1 = t0 + self._seconds(30, 90)
        t2 = t1 + self._seconds(480, 720)
        t3 = t2 + self._seconds(300, 600)
        intruder = self.feed.user_actor(member, self.accomplice_ip, _ATTACKER_BROWSER)
        return [
            self._at(
                t0,
                member.org,
                self.feed.user_actor(member, member.ips[0]),
                "claude_chat_viewed",
                claude_chat_id=member.chats[-1],
                claude_project_id=None,
            ),
            self._at(
                t1,
                org,
                self._admin_actor(),
                "claude_user_role_updated",
                current_role="admin",
                previous_role="user",
                user_email=member.email,
                user_id=member.user_id,
            ),
            self._at(
                t2,
                None,
                self.feed.unauthenticated_actor(
                    member.email, self.accomplice_ip, _ATTACKER_BROWSER
                ),
                "sso_login_initiated",
            ),
            self._at(
                t2 + self._seconds(2, 6),
                None,
                intruder,
                "sso_login_succeeded",
                auth_method="sso",
                mfa_method=None,
            ),
            self._at(
                t3,
                org,
                dict(intruder),
                "admin_api_key_created",
                admin_api_key_id=self.feed.new_id("apikey_"),
                scopes=[],
            ),
        ]

    def mass_chat_views(self, t: int) -> list[_Scheduled]:
        """The promoted accomplice's script loads other people's chats, one every few
        seconds: the harvest the new admin role was for."""
        member = self.accomplice
        pool = [c for m in self.feed.members if m is not member for c in m.chats]
        self.feed.rng.shuffle(pool)
        chats = pool[:_SCRAPED_CHATS]
        while len(chats) < _SCRAPED_CHATS:
            chats.append(self.feed.new_id("claude_chat_"))
        actor = self.feed.user_actor(member, self.accomplice_ip, _ATTACKER_SCRIPT)
        out: list[_Scheduled] = []
        for chat in chats:
            t += self._seconds(4, 9)
            out.append(
                self._at(
                    t,
                    member.org,
                    dict(actor),
                    "claude_chat_viewed",
                    claude_chat_id=chat,
                    claude_project_id=None,
                )
            )
        return out

    def data_exfiltration(self, t: int) -> list[_Scheduled]:
        """From the admin's session: the member list, the audit log of the last day, and a
        full conversations export, downloaded when it is ready."""
        org = self.victim_admin.org
        t0 = t + self._seconds(5, 30)
        t1 = t0 + self._seconds(20, 60)
        t2 = t1 + self._seconds(20, 60)
        t3 = t2 + self._seconds(300, 600)
        day_before = self.feed.clock.format(t1 - 86_400 * _US)[:10] + "T00:00:00Z"
        return [
            self._at(t0, org, self._admin_actor(), "org_members_exported"),
            self._at(
                t1,
                org,
                self._admin_actor(),
                "audit_log_export_started",
                from_date=day_before,
                to_date=self.feed.clock.format(t1),
            ),
            self._at(
                t2, org, self._admin_actor(), "org_data_export_started", export_type="conversations"
            ),
            self._at(t3, org, self._admin_actor(), "org_data_export_accessed"),
        ]

    def ip_restriction_deleted(self, t: int) -> list[_Scheduled]:
        org = self.victim_admin.org
        return [
            self._at(
                t + self._seconds(5, 60), org, self._admin_actor(), "org_ip_restriction_deleted"
            )
        ]

    def mcp_server_created(self, t: int) -> list[_Scheduled]:
        """An MCP server the intruder runs, added for the whole organization."""
        return [
            self._at(
                t + self._seconds(5, 60),
                self.victim_admin.org,
                self._admin_actor(),
                "mcp_server_created",
                user_agent=_ATTACKER_BROWSER,
                mcp_server_id=self.feed.new_id("mcpsrv_"),
                mcp_server_name="workspace-sync",
            )
        ]

    def spend_limit_deleted(self, t: int) -> list[_Scheduled]:
        return [
            self._at(
                t + self._seconds(5, 60),
                self.victim_admin.org,
                self._admin_actor(),
                "platform_spend_limit_deleted",
                spend_limit_id=self.feed.new_id("spendlim_"),
            )
        ]

    def access_transparency(self, t: int) -> list[_Scheduled]:
        """Anthropic staff look at content while helping with the incident. The field name
        of the reason code is an assumption (the reference snapshot lists none)."""
        return [
            self._at(
                t + self._seconds(5, 60),
                self.victim_admin.org,
                {"type": "anthropic_actor", "email_address": None},
                "anthropic_access",
                reason_code="incident_response",
            )
        ]

    def public_projects_enabled(self, t: int) -> list[_Scheduled]:
        """A legitimate admin, from their usual address, makes projects publicly shareable:
        a posture change worth a look, not an intrusion."""
        admin = self.feed.admins[3]
        return [
            self._at(
                t + self._seconds(5, 60),
                admin.org,
                self.feed.user_actor(admin),
                "claude_organization_settings_updated",
                updates=[
                    {
                        "type": "public_projects_enabled",
                        "previous_value": False,
                        "current_value": True,
                    }
                ],
            )
        ]

    def external_invite(self, t: int) -> list[_Scheduled]:
        admin = self.victim_admin
        # One personal mailbox per round, so every round of a long feed raises its alert.
        local = admin.email.split("@")[0].replace(".", "")
        local += ".backup" if self.round == 0 else f".backup{self.round + 1}"
        return [
            self._at(
                t + self._seconds(5, 60),
                admin.org,
                self._admin_actor(),
                "org_user_invite_sent",
                invited_email=f"{local}@gmail.com",
                invited_rbac_group_ids=[],
                invited_role="admin",
                invited_seat_tier="premium",
            )
        ]

    def sso_disabled(self, t: int) -> list[_Scheduled]:
        org = self.victim_admin.org
        t1 = t + self._seconds(5, 60)
        return [
            self._at(
                t1,
                org,
                self._admin_actor(),
                "org_sso_connection_deactivated",
                connection_id="conn_01Rb6nW2xK9sTd4Vq7HcMf3Z",
            ),
            self._at(
                t1 + self._seconds(30, 60),
                org,
                self._admin_actor(),
                "org_sso_toggled",
                enabled=False,
            ),
        ]

    def compliance_api_logging_disabled(self, t: int) -> list[_Scheduled]:
        return [
            self._at(
                t + self._seconds(5, 60),
                self.victim_admin.org,
                self._admin_actor(),
                "org_compliance_api_settings_updated",
                compliance_api_enabled=True,
                compliance_api_logging_enabled=False,
            )
        ]

    def code_execution_full_egress(self, t: int) -> list[_Scheduled]:
        return [
            self._at(
                t + self._seconds(5, 60),
                self.victim_admin.org,
                self._admin_actor(),
                "claude_organization_settings_updated",
                updates=[
                    {
                        "type": "code_execution_domain_allowlist_template_changed",
                        "previous_value": "package_managers",
                        "current_value": "full_egress",
                    },
                    {
                        "type": "code_execution_network_egress_enabled",
                        "previous_value": False,
                        "current_value": True,
                    },
                ],
            )
        ]

    def api_key_created_by_non_user(self, t: int) -> list[_Scheduled]:
        """The automation's Admin API key, used from an unknown host, mints five API keys in
        a couple of minutes."""
        actor = {
            "type": "admin_api_key_actor",
            "admin_api_key_id": _ADMIN_API_KEY_ID,
            "ip_address": self.tool_ip,
            "user_agent": _ATTACKER_CURL,
        }
        out: list[_Scheduled] = []
        for _ in range(5):
            t += self._seconds(15, 40)
            out.append(
                self._at(
                    t,
                    self.victim_admin.org,
                    dict(actor),
                    "platform_api_key_created",
                    user_agent=_ATTACKER_CURL,
                    api_key_id=self.feed.new_id("apikey_"),
                )
            )
        return out

    def compliance_api_denied(self, t: int) -> list[_Scheduled]:
        """A Compliance key revoked last month, found in an old script, tried again and
        again: every call answered 401."""
        key = self.feed.new_id("apikey_")
        actor = {
            "type": "api_actor",
            "api_key_id": key,
            "ip_address": self.tool_ip,
            "user_agent": _ATTACKER_SCRIPT,
        }
        out: list[_Scheduled] = []
        for _ in range(6):
            t += self._seconds(5, 15)
            out.append(
                self._at(
                    t,
                    None,
                    dict(actor),
                    "compliance_api_accessed",
                    request_id=self.feed.new_id("req_"),
                    request_method="GET",
                    status_code=401,
                    url="/v1/compliance/activities?limit=5000",
                    request_body=None,
                )
            )
        return out

    def compliance_api_unknown_key(self, t: int) -> list[_Scheduled]:
        """A key nobody listed pages through the whole audit trail and reads chats."""
        key = self.feed.new_id("apikey_")
        out: list[_Scheduled] = []
        for page in range(6):
            t += self._seconds(8, 25)
            url = (
                "/v1/compliance/activities?limit=5000"
                if page < 5
                else "/v1/compliance/apps/chats?limit=100"
            )
            actor = {
                "type": "api_actor",
                "api_key_id": key,
                "ip_address": self.tool_ip,
                "user_agent": _ATTACKER_SCRIPT,
            }
            out.append(
                self._at(
                    t,
                    None,
                    actor,
                    "compliance_api_accessed",
                    request_id=self.feed.new_id("req_"),
                    request_method="GET",
                    status_code=200,
                    url=url,
                    request_body=None,
                )
            )
        return out


# --------------------------------------------------------------------------------------
# Public API.


def generate(
    count: int,
    seed: int = 0,
    start: datetime | None = None,
    attacks: bool = True,
    users: int | None = None,
) -> Iterator[dict]:
    """Yield `count` activities in `created_at` order (oldest first), as plain dicts in the
    Compliance API's wire shape. The same arguments always give the same activities.

    `start` defaults to `DEFAULT_START` (not the current time: output must not depend on the
    clock). With `attacks`, the scenarios of `SCENARIOS` are mixed in; feeds too small to
    hold them all keep the ones that fit. `users` sets the size of the organization
    (default: grows with `count`, up to 3,000 people).
    """
    if count <= 0:
        return iter(())
    return _Feed(count, seed, start or DEFAULT_START, attacks, users).run()


def write_jsonl(path: str | Path, activities: Iterable[dict]) -> int:
    """Write activities one JSON object a line to `path` (`-` for stdout; gzip when the name
    ends in `.gz`); returns how many were written."""
    if str(path) == "-":
        return _write_lines(sys.stdout, activities)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".gz":
        with gzip.open(target, "wt", encoding="utf-8", compresslevel=6) as gz:
            return _write_lines(gz, activities)
    with target.open("w", encoding="utf-8") as handle:
        return _write_lines(handle, activities)


def _write_lines(handle: TextIO, activities: Iterable[dict]) -> int:
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    written = 0
    batch: list[str] = []
    for activity in activities:
        batch.append(encode(activity))
        if len(batch) == 4096:
            handle.write("\n".join(batch) + "\n")
            written += len(batch)
            batch.clear()
    if batch:
        handle.write("\n".join(batch) + "\n")
        written += len(batch)
    return written


def _parse_start(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.feedgen`: write a feed and report the rate on stderr."""
    parser = argparse.ArgumentParser(
        prog="python -m engine.feedgen",
        description="Write a deterministic, realistic Compliance API activity feed (JSONL).",
    )
    parser.add_argument("--count", type=int, default=400, help="activities to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same feed)")
    parser.add_argument(
        "--start",
        type=_parse_start,
        default=None,
        help="RFC 3339 time of the first activity (default 2026-05-04T07:30Z)",
    )
    parser.add_argument(
        "--no-attacks",
        dest="attacks",
        action="store_false",
        help="background activity only, no attack scenarios",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=None,
        help="people in the organization (default: grows with --count)",
    )
    parser.add_argument("--out", default="-", help="output file (.gz compresses); - = stdout")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    feed = generate(args.count, args.seed, args.start, args.attacks, args.users)
    written = write_jsonl(args.out, feed)
    elapsed = time.perf_counter() - began
    rate = written / elapsed if elapsed > 0 else float("inf")
    print(
        f"wrote {written} activities to {args.out} in {elapsed:.2f}s ({rate:,.0f}/s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
