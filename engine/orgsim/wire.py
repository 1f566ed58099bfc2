"""The wire form of the simulated activities: ids, timestamps, actors and the envelope.

Everything here is about looking like `GET /v1/compliance/activities` output and about
speed: a benchmark file holds a million activities, so ids are one `getrandbits` mapped
onto base58 with one `bytes.translate`, timestamps are formatted once per second of feed
time, and an actor dict is built once per session and shared by the session's
activities (the writer only reads it).

Activities are collected per simulated day in `Sink`: the day's list is sorted by time
before it is written, and anything scheduled past the day (an invite accepted on
Thursday, an export that completes after midnight) waits in a heap until its day comes.
"""

from __future__ import annotations

import heapq
import random
import time
from typing import Any

US = 1_000_000
MINUTE = 60 * US
HOUR = 60 * MINUTE
DAY = 24 * HOUR

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# Random bytes mapped onto base58 by one `bytes.translate`; the slight bias is invisible.
_B58_TABLE = bytes(ord(_B58[i % len(_B58)]) for i in range(256))

Activity = dict[str, Any]
Scheduled = tuple[int, int, Activity]


class Ids:
    """Tagged ids like the API's: a prefix, `01`, then 22 base58 characters."""

    __slots__ = ("_bits",)

    def __init__(self, rng: random.Random) -> None:
        self._bits = rng.getrandbits

    def new(self, prefix: str) -> str:
        return (
            prefix
            + "01"
            + self._bits(176).to_bytes(22, "little").translate(_B58_TABLE).decode("ascii")
        )

    def uuid(self) -> str:
        """A version-4 UUID text (organizations carry one beside their tagged id)."""
        h = f"{self._bits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


class Clock:
    """Formats microsecond epoch times as the API does (`…T12:18:11.000538Z`). The date is
    formatted once per day and the clock by arithmetic: activities of a quiet feed are
    seconds apart, so a per-second cache would miss on nearly every one."""

    __slots__ = ("_day", "_prefix")

    def __init__(self) -> None:
        self._day = -1
        self._prefix = ""

    def format(self, t_us: int) -> str:
        second, micro = divmod(t_us, US)
        day, in_day = divmod(second, 86400)
        if day != self._day:
            self._day = day
            self._prefix = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
        hour, rest = divmod(in_day, 3600)
        minute, sec = divmod(rest, 60)
        return f"{self._prefix}{hour:02d}:{minute:02d}:{sec:02d}.{micro:06d}Z"


def rfc3339(t_us: int) -> str:
    """One timestamp in the API's form, outside the hot path."""
    second, micro = divmod(t_us, US)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{micro:06d}Z"


# -- actors, as the API's union on `actor.type` documents them ---------------------------


def user_actor(email: str, user_id: str, ip: str, agent: str) -> dict[str, Any]:
    return {
        "type": "user_actor",
        "email_address": email,
        "user_id": user_id,
        "ip_address": ip,
        "user_agent": agent,
    }


def unauthenticated_actor(email: str | None, ip: str, agent: str) -> dict[str, Any]:
    return {
        "type": "unauthenticated_user_actor",
        "unauthenticated_email_address": email,
        "ip_address": ip,
        "user_agent": agent,
    }


def api_actor(key_id: str, ip: str, agent: str) -> dict[str, Any]:
    return {"type": "api_actor", "api_key_id": key_id, "ip_address": ip, "user_agent": agent}


def admin_api_key_actor(key_id: str, ip: str, agent: str) -> dict[str, Any]:
    return {
        "type": "admin_api_key_actor",
        "admin_api_key_id": key_id,
        "ip_address": ip,
        "user_agent": agent,
    }


def service_account_actor(account_id: str, ip: str, agent: str) -> dict[str, Any]:
    return {
        "type": "service_account_actor",
        "service_account_id": account_id,
        "ip_address": ip,
        "user_agent": agent,
    }


def scim_actor(event_id: str, directory_id: str, connection_type: str) -> dict[str, Any]:
    return {
        "type": "scim_directory_sync_actor",
        "workos_event_id": event_id,
        "directory_id": directory_id,
        "idp_connection_type": connection_type,
    }


def system_actor(service: str | None) -> dict[str, Any]:
    return {"type": "system_actor", "service": service}


ANTHROPIC_ACTOR: dict[str, Any] = {"type": "anthropic_actor", "email_address": None}


class Sink:
    """Collects one simulated day of activities; later ones wait in a heap.

    `emit` returns the activity dict so scenarios can keep its id for the labels. The
    `created_at` slot is filled by the writer, in order, so the key order stays the
    API's (`id`, `created_at`, `organization_id`, `organization_uuid`, `actor`, `type`).
    """

    __slots__ = ("_later", "_seq", "day", "day_end", "day_start", "ids")

    def __init__(self, ids: Ids) -> None:
        self.ids = ids
        self.day: list[Scheduled] = []
        self.day_start = 0
        self.day_end = 0
        self._later: list[Scheduled] = []
        self._seq = 0

    def emit(
        self,
        t_us: int,
        org: Any,
        actor: dict[str, Any],
        kind: str,
        fields: dict[str, Any] | None = None,
        ids: Ids | None = None,
    ) -> Activity:
        """Build one activity at `t_us` for `org` (None: the org-less sign-in family);
        `ids` draws the id from another stream (the attacks keep their own)."""
        activity: Activity = {
            "id": (ids or self.ids).new("activity_"),
            "created_at": None,
            "organization_id": org.id if org is not None else None,
            "organization_uuid": org.uuid if org is not None else None,
            "actor": actor,
            "type": kind,
        }
        if fields:
            activity.update(fields)
        self._seq += 1
        if t_us < self.day_start:
            t_us = self.day_start  # a step-up a moment before midnight: the feed stays ordered
        if t_us < self.day_end:
            self.day.append((t_us, self._seq, activity))
        else:
            heapq.heappush(self._later, (t_us, self._seq, activity))
        return activity

    def open_day(self, day_start: int, day_end: int) -> None:
        """Start a new day: the waiting activities that fall before `day_end` join it."""
        self.day = []
        self.day_start = day_start
        self.day_end = day_end
        later = self._later
        while later and later[0][0] < day_end:
            self.day.append(heapq.heappop(later))

    def close_day(self) -> list[Scheduled]:
        """The day's activities in time order (ties in the order they were made)."""
        self.day.sort()
        return self.day
