"""The organizations' own machines: the SIEM poller, eDiscovery pulls, admin automation.

- **SIEM.** Each parent company's SIEM polls the Compliance API around the clock from one
  cloud address with one key, every 5 minutes (3 for the second company), a window
  query with `created_at.gte`/`.lt`; during office hours one poll in five needs a second
  page. 0.4% of calls get a 429 and retry after a few seconds; 0.2% get a 503 and retry.
  These calls carry null organization ids, as the API documents.
- **eDiscovery.** About once in 45 working days legal pulls a custodian's activity with a
  second key from the legal team's office: 40–300 paged requests over 1–3 hours.
- **Automation.** Each org's provisioning script runs on Monday mornings from a cloud
  address with the org's admin API key (the SDK's user agent), adding or removing
  workspace members: keys acting without a person behind them, every week.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.orgsim.rhythm import local_weekday
from engine.orgsim.wire import (
    DAY,
    HOUR,
    MINUTE,
    US,
    Sink,
    admin_api_key_actor,
    api_actor,
    rfc3339,
)
from engine.orgsim.world import Org, World, cloud_ip

_SIEM_AGENTS = (
    "Go-http-client/2.0",
    "SumoLogic-CloudCollector/1.0 python-requests/2.32.3",
    "Microsoft-Sentinel-CCF/1.0",
)
_SDK = "Anthropic/Python 0.69.0"


@dataclass(slots=True)
class Poller:
    """One parent company's SIEM key and where it runs."""

    orgs: list[Org]
    key_id: str
    ip: str
    agent: str
    interval_s: int
    legal_key: str
    next_t: int = 0


class Machines:
    def __init__(self, world: World, rng: random.Random, sink: Sink) -> None:
        self.world = world
        self.rng = rng
        self.sink = sink
        self.ids = sink.ids
        by_parent: dict[str, list[Org]] = {}
        for org in world.orgs:
            by_parent.setdefault(org.parent, []).append(org)
        self.pollers = [
            Poller(
                orgs,
                self.ids.new("apikey_"),
                cloud_ip(rng),
                _SIEM_AGENTS[i % len(_SIEM_AGENTS)],
                300 if i % 2 == 0 else 180,
                self.ids.new("apikey_"),
            )
            for i, orgs in enumerate(by_parent.values())
        ]

    @property
    def known_keys(self) -> set[str]:
        return {p.key_id for p in self.pollers} | {p.legal_key for p in self.pollers}

    def run_day(self, epoch_day: int, day_start: int) -> None:
        for poller in self.pollers:
            self._poll(poller, day_start)
            main = poller.orgs[0]
            if (
                local_weekday(day_start + 12 * HOUR, main.tz_minutes) < 5
                and self.rng.random() < 1 / 45
            ):
                self._ediscovery(poller, day_start)
        for org in self.world.orgs:
            if local_weekday(day_start + 12 * HOUR, org.tz_minutes) == 0:
                self._automation(org, day_start)

    def _request(self, t: int, key: str, ip: str, agent: str, url: str, status: int) -> None:
        self.sink.emit(
            t,
            None,
            api_actor(key, ip, agent),
            "compliance_api_accessed",
            {
                "request_id": self.ids.new("req_"),
                "request_method": "GET",
                "status_code": status,
                "url": url,
                "request_body": None,
            },
        )

    def _poll(self, poller: Poller, day_start: int) -> None:
        rng = self.rng
        t = max(poller.next_t, day_start + int(rng.random() * poller.interval_s * US))
        end = day_start + DAY
        tz = poller.orgs[0].tz_minutes
        while t < end:
            window = rfc3339(t - 2 * MINUTE - poller.interval_s * US)[:19] + "Z"
            url = (
                f"/v1/compliance/activities?created_at.gte={window}"
                f"&created_at.lt={rfc3339(t - MINUTE)[:19]}Z&limit=1000"
            )
            roll = rng.random()
            if roll < 0.006:
                self._request(
                    t, poller.key_id, poller.ip, poller.agent, url, 429 if roll < 0.004 else 503
                )
                t += int(rng.uniform(1, 8) * US)
            self._request(t, poller.key_id, poller.ip, poller.agent, url, 200)
            local_hour = ((t + tz * MINUTE) % DAY) // HOUR
            if 8 <= local_hour < 18 and rng.random() < 0.2:
                t += int(rng.uniform(0.2, 1.5) * US)
                self._request(
                    t,
                    poller.key_id,
                    poller.ip,
                    poller.agent,
                    f"{url}&after_id={self.ids.new('activity_')}",
                    200,
                )
            t += int((poller.interval_s + rng.uniform(-15, 15)) * US)
        poller.next_t = t

    def _ediscovery(self, poller: Poller, day_start: int) -> None:
        rng = self.rng
        main = poller.orgs[0]
        t = day_start + ((10 * 60 + rng.randrange(0, 300) - main.tz_minutes) * MINUTE) % DAY
        ip = main.offices[0]
        custodian = rng.choice(main.people).user_id
        for _ in range(rng.randint(40, 300)):
            t += int(rng.uniform(3, 40) * US)
            url = (
                f"/v1/compliance/activities?actor_ids[]={custodian}&limit=5000"
                f"&after_id={self.ids.new('activity_')}"
            )
            status = 429 if rng.random() < 0.01 else 200
            self._request(t, poller.legal_key, ip, "python-httpx/0.28.1", url, status)

    def _automation(self, org: Org, day_start: int) -> None:
        rng = self.rng
        t = day_start + ((6 * 60 + rng.randrange(0, 30) - org.tz_minutes) * MINUTE) % DAY
        actor = admin_api_key_actor(org.automation_key, org.automation_ip, _SDK)
        active = [p for p in org.people if p.active_from < t < p.active_until]
        if not active:
            return
        for _ in range(rng.randint(2, 10)):
            t += int(rng.uniform(0.3, 3) * US)
            kind = "platform_workspace_member_added"
            if rng.random() < 0.25:
                kind = "platform_workspace_member_removed"
            self.sink.emit(
                t,
                org,
                actor,
                kind,
                {
                    "user_id": rng.choice(active).user_id,
                    "workspace_id": rng.choice(org.workspaces),
                },
            )
