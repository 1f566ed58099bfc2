"""The generator: one feed's seeded world, its background activity, and the scenarios
scheduled into it (engine/feedgen/scenarios.py)."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from engine.feedgen.roster import (
    _ACTIVITIES_PER_ROUND,
    _ADMINS,
    _B58_TABLE,
    _COMPLIANCE_KEYS,
    _FILENAMES,
    _FIRST,
    _HEAVIEST_USER,
    _INTEGRATIONS,
    _LAST,
    _ORG_SHARE,
    _US,
    _USER_AGENTS,
    ORGS,
    Activity,
    Org,
    User,
    _Clock,
    _hour_of_week_rates,
    _lookup_table,
    _Scheduled,
)
from engine.feedgen.scenarios import _Scenarios

# --------------------------------------------------------------------------------------
# The generator.


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
