"""People's ordinary day: where they are, when they sign in, what they do in Claude.

Rates, and why (per person, before the per-person activity level, median 1, mean 1.4):

- **Volume.** About 32 activities on a full working day at the median, most of them
  content views: opening a chat loads it (`claude_chat_viewed`, often twice, the API does
  not deduplicate), then chats created, projects, files and artifacts. A working day is 1
  to 6 sessions (bursts of use) shaped by `rhythm`. About 8% of working days are absences
  (leave, sickness, days without Claude).
- **Where from.** Office days from the office NAT; other days from home, the corporate VPN
  (per person 0–100% of remote days) or now and then a commercial VPN (a quarter of
  people). Desktop app sessions come from the same place; the phone uses the carrier
  unless on the office or home Wi-Fi. About one person in 150 starts a trip on a given
  weekday: 2–5 days from a hotel/airport/conference address and a roaming phone. Home
  IPv4 addresses are reassigned about every 60 days; half the IPv6 homes change address
  daily (privacy extensions).
- **Sign-ins.** A session is preceded by a sign-in about 25% of the time on a browser's
  first session of the day, 8% on the desktop app, 3% on the phone; during a trip more
  often. SSO orgs: `sso_login_initiated` then `sso_login_succeeded` 3–20 s later; 3.5% of
  attempts fail 1–3 times first (wrong IdP account, MFA timeout) and 0.6% give up.
  Magic-link orgs and guests: the link arrives and is clicked 15 s – 4 min later; 2% mistype
  their address first, 2.5% click an old, expired link first, 1% see 2–4 failures (a mail
  scanner consumed the link, another browser) then succeed; people on personal Google
  addresses use Google sign-in. About once in twelve weekdays an SSO org's IdP hiccups in
  the morning and several people behind one office NAT fail within half an hour, then get
  in. Sign-in, sign-out and session activities carry null organization ids.
- **Claude Code.** About 10% of an engineer's sessions are in the CLI; the feed sees
  their settings, memory and plugins change, with the CLI's user agent.
- **Other.** 4% of sessions end with `user_logged_out`; about one person in 400 a day
  revokes a session (a lost phone, a shared computer); one in 250 enrols a new trusted
  device.
"""

from __future__ import annotations

import math
import random
from typing import Any

from engine.orgsim.rhythm import Rhythm, local_weekday
from engine.orgsim.wire import DAY, MINUTE, US, Sink, unauthenticated_actor, user_actor
from engine.orgsim.world import (
    Org,
    Person,
    World,
    carrier_prefix6,
    commercial_vpn_ip,
    home_ip4,
    hotel_ip,
    ipv6,
    user_agent,
)

# (session start, session end, actor, person): who was in, when, from where and how; the
# admin work and people's own settings changes happen inside these sessions.
Session = tuple[int, int, dict[str, Any], Person]

_ACTIVITIES_PER_DAY = 32.0
_MEAN_GAP_S = 75.0

_FILENAMES = (
    "Q3-forecast.xlsx",
    "board-deck-draft.pptx",
    "contract-redline.docx",
    "api-spec.yaml",
    "customer-interviews.pdf",
    "architecture.png",
    "invoice-0425.pdf",
    "roadmap.md",
    "survey-results.csv",
    "pricing-model.xlsx",
    "onboarding-guide.docx",
    "logs.txt",
    "screenshot.png",
    "meeting-notes.md",
    "requirements.pdf",
    "dataset-sample.json",
)

# The content mix of a session (weights per thousand activities).
_CONTENT = (
    ("claude_chat_viewed", 330),
    ("claude_chat_created", 175),
    ("claude_artifact_viewed", 70),
    ("claude_artifact_created", 40),
    ("claude_project_viewed", 90),
    ("claude_file_uploaded", 50),
    ("claude_file_viewed", 60),
    ("claude_project_document_viewed", 30),
    ("claude_project_document_uploaded", 12),
    ("claude_chat_updated", 25),
    ("claude_chat_deleted", 8),
    ("claude_project_created", 4),
    ("claude_chat_snapshot_created", 3),
    ("claude_project_sharing_updated", 3),
    ("claude_artifact_sharing_updated", 2),
    ("claude_artifact_published", 1),
    ("claude_file_deleted", 3),
    ("claude_chat_access_failed", 2),
    ("claude_project_document_deleted", 2),
    ("claude_chat_snapshot_viewed", 5),
)
_CLAUDE_CODE = (
    "claude_code_user_settings_updated",
    "claude_code_user_memory_updated",
    "claude_code_user_memory_updated",
    "claude_code_user_plugins_updated",
)
_MOBILE = (("claude_chat_viewed", 55), ("claude_chat_created", 35), ("claude_project_viewed", 10))


def _table(weighted: tuple[tuple[str, int], ...], bits: int = 10) -> tuple[str, ...]:
    """2**bits entries, each type filling its share: one getrandbits picks by weight."""
    total = sum(w for _, w in weighted)
    size = 1 << bits
    out: list[str] = []
    acc = 0
    for kind, w in weighted:
        acc += w
        while len(out) < round(acc / total * size):
            out.append(kind)
    return tuple(out + [weighted[0][0]] * (size - len(out)))


_CONTENT_TABLE = _table(_CONTENT)
_MOBILE_TABLE = _table(_MOBILE)


def poisson(rng: random.Random, rate: float) -> int:
    """A Poisson draw (Knuth's method: the rates here are small)."""
    if rate <= 0:
        return 0
    limit, n, p = math.exp(-rate), 0, rng.random()
    while p > limit:
        n += 1
        p *= rng.random()
    return n


def typo(email: str, rng: random.Random) -> str:
    """The address with one slip of the finger: two letters swapped or one dropped."""
    local, domain = email.split("@", 1)
    if len(local) < 4:
        return f"{local}{local[-1]}@{domain}"
    i = rng.randrange(1, len(local) - 2)
    if rng.random() < 0.5:
        local = local[:i] + local[i + 1] + local[i] + local[i + 2 :]
    else:
        local = local[:i] + local[i + 1 :]
    return f"{local}@{domain}"


class People:
    """Generates everyone's ordinary day into the sink."""

    def __init__(self, world: World, rng: random.Random, sink: Sink, rhythm: Rhythm) -> None:
        self.world = world
        self.rng = rng
        self.sink = sink
        self.rhythm = rhythm
        self.ids = sink.ids

    # -- the day ----------------------------------------------------------------------

    def run_day(self, epoch_day: int, day_start: int) -> dict[str, list[Session]]:
        """Everyone's sessions of this UTC day; returns the sessions per org."""
        sessions: dict[str, list[Session]] = {o.id: [] for o in self.world.orgs}
        day_end = day_start + DAY
        for person in self.world.people:
            if person.active_from >= day_end or person.active_until <= day_start:
                continue
            self._person_day(person, epoch_day, day_start, sessions)
        parents: set[str] = set()
        for org in self.world.orgs:
            if org.parent in parents:
                continue  # one IdP and one network per company
            parents.add(org.parent)
            if org.sign_in == "sso" and self.rng.random() < 1 / 12:
                self._idp_hiccup(org, epoch_day, day_start)
        return sessions

    def _where(self, person: Person, epoch_day: int, local_wd: int) -> tuple[str, bool]:
        """The person's address for the day and whether it is their home Wi-Fi/office."""
        rng = self.rng
        if rng.random() < 1 / 60 and person.home_prefix6 is None:
            person.home_ip = home_ip4(rng)  # the ISP reassigned the address
        if person.trip_until_day >= epoch_day:
            return person.trip_ip, False
        if local_wd < 5 and rng.random() < 1 / 150:
            person.trip_until_day = epoch_day + rng.randint(1, 4)
            person.trip_ip = hotel_ip(rng)
            person.carrier_prefix = carrier_prefix6(rng)  # roaming
            return person.trip_ip, False
        if local_wd in person.office_days and rng.random() < 0.9:
            return person.office_ip, True
        if person.commercial_vpn and rng.random() < 0.1:
            return commercial_vpn_ip(rng), False
        if person.uses_vpn and rng.random() < person.uses_vpn:
            return rng.choice(person.home_org.vpn), False
        if person.privacy6 and person.home_prefix6:
            return ipv6(person.home_prefix6, rng), True
        return person.home_ip, True

    def _person_day(
        self,
        person: Person,
        epoch_day: int,
        day_start: int,
        by_org: dict[str, list[Session]],
    ) -> None:
        rng = self.rng
        rhythm = self.rhythm
        volume = rhythm.volume(person.tz_minutes, epoch_day)
        if rng.random() < 0.08:
            return  # leave, sickness, a day without Claude
        expected = _ACTIVITIES_PER_DAY * person.level * volume
        if volume < 0.3 and rng.random() > 0.35:
            return  # most people do not touch work on their weekend
        sessions = 1 + min(5, int(rng.random() * 3 * min(person.level, 2.0) + 0.3))
        local_wd = local_weekday(day_start + 12 * 60 * MINUTE, person.tz_minutes)
        where, wifi = self._where(person, epoch_day, local_wd)
        travelling = person.trip_until_day >= epoch_day
        starts = sorted(rhythm.sample(person.tz_minutes, epoch_day) for _ in range(sessions))
        browser_ua = user_agent(person.browser, epoch_day, person.lag)
        first_browser = True
        for offset in starts:
            t = day_start + offset
            if t < person.active_from or t >= person.active_until:
                continue
            device = person.browser
            roll = rng.random()
            if person.extra_devices and roll < 0.3:
                device = rng.choice(person.extra_devices)
                if device == "cli":
                    self._cli(t, person, where, user_agent("cli", epoch_day, person.lag))
                    continue
            mobile = device in ("ios", "android")
            agent = (
                browser_ua
                if device == person.browser
                else user_agent(device, epoch_day, person.lag)
            )
            ip = where
            if mobile and not (wifi and rng.random() < 0.5):
                ip = ipv6(person.carrier_prefix, rng)
            person.seen.add(ip)
            if device == person.browser:
                p_sign_in = 0.25 if first_browser else 0.04
                first_browser = False
            else:
                p_sign_in = 0.03 if mobile else 0.08
            if travelling:
                p_sign_in *= 2
            if rng.random() < p_sign_in:
                t = self.sign_in(t, person, ip, agent)
            org = person.home_org
            if len(person.orgs) > 1 and rng.random() < 0.35:
                org = rng.choice(person.orgs)
            actor = user_actor(person.email, person.user_id, ip, agent)
            count = max(1, int(rng.expovariate(sessions / max(expected, 1.0))) + 1)
            end = self.session(t, person, org, actor, count, mobile)
            if rng.random() < 0.04:
                end += int(rng.uniform(5, 120) * US)
                self.sink.emit(end, None, actor, "user_logged_out")
            by_org[org.id].append((t, end, actor, person))
        if rng.random() < 1 / 400:
            t = day_start + rhythm.sample(person.tz_minutes, epoch_day)
            actor = user_actor(person.email, person.user_id, where, browser_ua)
            self.sink.emit(t, None, actor, "session_revoked")
        if rng.random() < 1 / 250:
            t = day_start + rhythm.sample(person.tz_minutes, epoch_day)
            actor = user_actor(person.email, person.user_id, where, browser_ua)
            self.sink.emit(
                t,
                None,
                actor,
                "trusted_device_enrolled",
                {
                    "enrollment_method": "session",
                    "platform": "desktop_app" if person.extra_devices else "web",
                    "trusted_device_id": self.ids.new("trusted_device_"),
                },
            )

    def _cli(self, t: int, person: Person, ip: str, agent: str) -> None:
        """An engineer's Claude Code session: what reaches the feed is their settings,
        memory and plugins changing now and then."""
        rng = self.rng
        person.seen.add(ip)
        actor = user_actor(person.email, person.user_id, ip, agent)
        for _ in range(rng.randint(1, 3)):
            t += int(rng.uniform(1, 40) * MINUTE)
            self.sink.emit(t, person.home_org, actor, rng.choice(_CLAUDE_CODE))

    # -- signing in ----------------------------------------------------------------------

    def sign_in(self, t: int, person: Person, ip: str, agent: str) -> int:
        """A realistic sign-in at `t`; returns when the person is in."""
        rng, emit = self.rng, self.sink.emit
        org = person.home_org
        email = person.email
        guest = person.domain not in org.domains
        method = "sso" if org.sign_in == "sso" and not guest else "magic_link"
        who = unauthenticated_actor(email, ip, agent)
        actor = user_actor(email, person.user_id, ip, agent)
        if method == "magic_link" and person.domain == "gmail.com" and rng.random() < 0.6:
            t += int(rng.uniform(4, 15) * US)
            emit(
                t,
                None,
                actor,
                "social_login_succeeded",
                {"provider": "google", "auth_method": "social", "mfa_method": None},
            )
            return t
        if method == "sso":
            emit(t, None, who, "sso_login_initiated")
            roll = rng.random()
            if roll < 0.035:
                for _ in range(rng.randint(1, 3)):
                    t += int(rng.uniform(5, 40) * US)
                    emit(t, None, who, "sso_login_failed")
                    if roll < 0.006:
                        return t  # gave up; tries again another time
                    t += int(rng.uniform(10, 90) * US)
                    emit(t, None, who, "sso_login_initiated")
            t += int(rng.uniform(3, 20) * US)
            emit(t, None, actor, "sso_login_succeeded", {"auth_method": "sso", "mfa_method": None})
            return t
        roll = rng.random()
        if roll < 0.02:  # mistyped address: the link never arrives
            emit(
                t,
                None,
                unauthenticated_actor(typo(email, rng), ip, agent),
                "magic_link_login_initiated",
            )
            t += int(rng.uniform(30, 150) * US)
        elif roll < 0.045:  # clicked yesterday's link first
            emit(t, None, who, "magic_link_login_failed")
            t += int(rng.uniform(10, 60) * US)
        emit(t, None, who, "magic_link_login_initiated")
        if 0.045 <= roll < 0.055:
            for _ in range(rng.randint(2, 4)):
                t += int(rng.uniform(10, 120) * US)
                emit(t, None, who, "magic_link_login_failed")
            t += int(rng.uniform(10, 60) * US)
            emit(t, None, who, "magic_link_login_initiated")
        t += int(rng.uniform(15, 240) * US)
        emit(
            t,
            None,
            actor,
            "magic_link_login_succeeded",
            {"auth_method": "magic_link", "mfa_method": None},
        )
        return t

    def _idp_hiccup(self, org: Org, epoch_day: int, day_start: int) -> None:
        """The IdP misbehaves one morning: several people behind one office NAT fail to
        sign in within half an hour, then get in once it recovers."""
        rng = self.rng
        if local_weekday(day_start + 12 * 60 * MINUTE, org.tz_minutes) >= 5:
            return
        office = rng.choice(org.offices)
        here = [
            p
            for p in org.people
            if p.office_ip == office
            and p.office_days
            and p.home_org.parent == org.parent
            and p.active_from < day_start
            and p.active_until > day_start + DAY
        ]
        if len(here) < 3:
            return
        begin = day_start + ((8 * 60 + rng.randrange(0, 90) - org.tz_minutes) * MINUTE) % DAY
        recover = begin + rng.randint(10, 35) * MINUTE
        for person in rng.sample(here, min(len(here), rng.randint(3, 7))):
            agent = user_agent(person.browser, epoch_day, person.lag)
            who = unauthenticated_actor(person.email, office, agent)
            t = begin + int(rng.uniform(0, 25) * MINUTE)
            for _ in range(rng.randint(1, 3)):
                self.sink.emit(t, None, who, "sso_login_initiated")
                t += int(rng.uniform(5, 40) * US)
                self.sink.emit(t, None, who, "sso_login_failed")
                t += int(rng.uniform(30, 240) * US)
            t = max(t, recover + int(rng.uniform(0, 15) * MINUTE))
            self.sink.emit(t, None, who, "sso_login_initiated")
            t += int(rng.uniform(3, 20) * US)
            actor = user_actor(person.email, person.user_id, office, agent)
            self.sink.emit(
                t, None, actor, "sso_login_succeeded", {"auth_method": "sso", "mfa_method": None}
            )
            person.seen.add(office)

    # -- using Claude ---------------------------------------------------------------------

    def session(
        self, t: int, person: Person, org: Org, actor: dict[str, Any], count: int, mobile: bool
    ) -> int:
        """`count` content activities from `t`; returns the time of the last one."""
        rng = self.rng
        bits = rng.getrandbits
        rand = rng.random
        emit = self.sink.emit
        new = self.ids.new
        table = _MOBILE_TABLE if mobile else _CONTENT_TABLE
        chats, projects, files, artifacts = (
            person.chats,
            person.projects,
            person.files,
            person.artifacts,
        )
        if not chats:
            chats.extend(new("claude_chat_") for _ in range(3))
        if not projects:
            projects.append(new("claude_proj_"))
            if len(org.shared_projects) < 40:
                org.shared_projects.append(projects[0])
        shared = org.shared_projects
        log = math.log
        for _ in range(count):
            t += int(-_MEAN_GAP_S * log(1.0 - rand()) * US) + 1
            kind = table[bits(10)]
            if kind == "claude_chat_viewed":
                chat = chats[-1 - int(rand() * rand() * len(chats))]
                fields = {"claude_chat_id": chat, "claude_project_id": None}
                emit(t, org, actor, kind, fields)
                if rand() < 0.2:  # the app loads it again; the API does not deduplicate
                    emit(t + int(rand() * 3 * US), org, actor, kind, dict(fields))
            elif kind == "claude_chat_created":
                chat = new("claude_chat_")
                project = rng.choice(projects) if rand() < 0.2 else None
                chats.append(chat)
                if len(chats) > 40:
                    del chats[0]
                emit(t, org, actor, kind, {"claude_chat_id": chat, "claude_project_id": project})
            elif kind == "claude_project_viewed":
                project = rng.choice(shared) if shared and rand() < 0.3 else rng.choice(projects)
                emit(t, org, actor, kind, {"claude_project_id": project})
            elif kind == "claude_artifact_viewed" or kind == "claude_artifact_created":
                if kind == "claude_artifact_created" or not artifacts:
                    kind = "claude_artifact_created"
                    artifacts.append(new("claude_artifact_"))
                    if len(artifacts) > 20:
                        del artifacts[0]
                emit(
                    t,
                    org,
                    actor,
                    kind,
                    {
                        "claude_artifact_id": artifacts[-1 - int(rand() * len(artifacts))],
                        "claude_chat_id": chats[-1],
                    },
                )
            elif kind == "claude_file_uploaded":
                file_id = new("claude_file_")
                files.append(file_id)
                if len(files) > 20:
                    del files[0]
                emit(
                    t,
                    org,
                    actor,
                    kind,
                    {
                        "claude_file_id": file_id,
                        "filename": rng.choice(_FILENAMES),
                        "claude_chat_id": chats[-1],
                        "claude_project_id": None,
                    },
                )
            elif kind == "claude_file_viewed":
                if not files:
                    files.append(new("claude_file_"))
                emit(
                    t,
                    org,
                    actor,
                    kind,
                    {
                        "claude_file_id": rng.choice(files),
                        "claude_artifact_id": None,
                        "claude_project_id": None,
                    },
                )
            elif kind in (
                "claude_project_document_viewed",
                "claude_project_document_uploaded",
                "claude_project_document_deleted",
            ):
                project = rng.choice(shared) if shared and rand() < 0.4 else projects[-1]
                emit(
                    t,
                    org,
                    actor,
                    kind,
                    {
                        "claude_project_document_id": new("claude_proj_doc_"),
                        "claude_project_id": project,
                    },
                )
            elif kind in (
                "claude_chat_updated",
                "claude_chat_deleted",
                "claude_chat_access_failed",
                "claude_chat_snapshot_created",
                "claude_chat_snapshot_viewed",
            ):
                chat = chats[-1 - int(rand() * len(chats))]
                if kind == "claude_chat_access_failed":
                    chat = new("claude_chat_")  # a stale link to a deleted or private chat
                emit(t, org, actor, kind, {"claude_chat_id": chat})
                if kind == "claude_chat_deleted" and len(chats) > 1:
                    chats.remove(chat)
            elif kind == "claude_project_created":
                project = new("claude_proj_")
                projects.append(project)
                if len(projects) > 10:
                    del projects[0]
                emit(t, org, actor, kind, {"claude_project_id": project})
            elif kind == "claude_project_sharing_updated":
                # Mostly to the whole org, sometimes to named people, rarely back to private.
                roll = rand()
                audience = (
                    [{"type": "organization"}]
                    if roll < 0.6
                    else [{"type": "user"}]
                    if roll < 0.9
                    else []
                )
                project = projects[-1]
                emit(t, org, actor, kind, {"audience": audience, "claude_project_id": project})
                if roll < 0.6 and project not in shared and len(shared) < 60:
                    shared.append(project)
            elif kind == "claude_artifact_sharing_updated":
                if not artifacts:
                    artifacts.append(new("claude_artifact_"))
                public = rand() < 0.25
                emit(
                    t,
                    org,
                    actor,
                    kind,
                    {
                        "audience": {"type": "public" if public else "organization"},
                        "claude_artifact_id": artifacts[-1],
                        "claude_artifact_version_id": new("claude_artifact_version_"),
                        "new_mode": "public" if public else "organization",
                        "previous_mode": "private",
                    },
                )
            elif kind == "claude_artifact_published":
                emit(
                    t,
                    org,
                    actor,
                    kind,
                    {
                        "artifact_type": rng.choice(("react", "html", "markdown")),
                        "claude_published_artifact_id": new("claude_published_artifact_"),
                        "title": rng.choice(
                            (
                                "Team OKR tracker",
                                "Pricing calculator",
                                "Onboarding checklist",
                                "Event agenda",
                            )
                        ),
                        "claude_artifact_version_id": new("claude_artifact_version_"),
                        "is_redeploy": rand() < 0.3,
                    },
                )
            else:  # claude_file_deleted
                if not files:
                    continue
                emit(t, org, actor, kind, {"claude_file_id": files.pop()})
        return t
