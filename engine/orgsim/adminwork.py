"""The routine administration of an organization, at the rates real ones see.

Everything an admin does happens inside one of that admin's own sessions of the day (same
address, same user agent); admin work follows the admins' working days, so weekends are
nearly empty. Rates are per organization per local working day; `S` is the org's
membership in hundreds.

- invitations: 0.3·S in SCIM orgs, 0.5·S elsewhere (orgs in their Claude roll-out
  grow). 10% go to personal mail, 15% to contractor/partner domains, 3% carry the admin
  role; 75% are accepted (median 3 h), 12% re-sent after 5–8 days, 8% revoked, the rest
  expire.
- SCIM provisioning 0.10·S (new hires from the IdP), updates 0.15·S.
- leavers 0.06·S (SCIM delete, or `org_user_deleted`; 1 in 10 remove themselves), and
  with probability S/45 an offboarding batch: 3–8 people on one day (a contract cohort
  ends, a reorganization).
- admins promoted 1/40, demoted 1/50 (two admins remain at least).
- RBAC roles 0.15·S; project role grants 0.3·S, revocations 0.1·S; a quarter of grants
  go to guests from partner domains: content shared outside the organization.
- MCP servers: 1/12 added, 1/20 removed, 1/30 updated. Org integrations (Google Drive,
  GitHub): 1/40 connected, 1/30 updated, 1/80 removed. People connect their own
  integrations (Drive, GitHub, Slack, Jira, Calendar, the org's MCP servers): 1% of
  active people a day, a quarter of those events are disconnections.
- admin API keys: 1/25 created (half are rotations: the old key is deleted 1–3 days
  later), 1/30 updated; platform keys 1/15; engineers' console keys 1% of engineers a
  day (three in ten are deletions); service keys 1/20 by the Claude Code service, 1/40
  by admins, 1/40 revoked.
- org settings 1/10 (one boolean setting flipped, either way); IP allow list updated
  1/60, created 1/300; compliance settings re-saved 1/300; domain verified 1/400.
- SSO orgs: group-role mappings 1/30, certificate rotation (new connection activated,
  old one deactivated) 1/90, provisioning mode 1/150, SSO toggled off and on again
  minutes later while troubleshooting 1/200.
- spend limits: 1/15 created, 1/8 updated, 1/20 extra usage updated, 1/40 workspace
  limit deleted, 1/60 org limit deleted (budget housekeeping).
- workspaces 1/25 created, 1/5 member added by hand; member list exported 1/25 (seat
  reconciliation for finance/HR); member lists viewed 0.5, a member viewed 0.5.
- monthly, in the first five days when a working day: a conversations export
  (started, completed by the platform, downloaded) and an audit-log export of the
  month before.

Sensitive actions (keys, SSO, exports) are preceded by a step-up check 40% of the time,
which fails once before passing 3% of the time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from engine.orgsim.rhythm import Rhythm, local_weekday
from engine.orgsim.routine import People, Session, poisson
from engine.orgsim.wire import (
    ANTHROPIC_ACTOR,
    DAY,
    HOUR,
    MINUTE,
    US,
    Sink,
    rfc3339,
    scim_actor,
    system_actor,
    unauthenticated_actor,
    user_actor,
)
from engine.orgsim.world import (
    FIRST_NAMES,
    LAST_NAMES,
    PERSONAL_DOMAINS,
    Org,
    Person,
    World,
    user_agent,
)

_MCP_NAMES = (
    "Linear",
    "Sentry",
    "Atlassian",
    "Notion",
    "Asana",
    "Zapier",
    "Snowflake",
    "Datadog",
    "HubSpot",
    "Box",
    "PagerDuty",
    "Stripe",
    "Cloudflare",
    "GitLab",
    "Figma",
    "Salesforce",
)
_USER_INTEGRATIONS = ("gdrive", "github", "slack", "jira", "google_calendar", "gmail")
_SETTINGS = (
    "public_projects_enabled",
    "web_search_enabled",
    "artifacts_enabled",
    "claude_code_enabled",
    "file_creation_enabled",
    "desktop_extensions_enabled",
)
_SCOPES = (["read", "write"], ["read"], ["admin"], ["workspaces:write", "users:read"])


class AdminWork:
    """The organizations' administration, one simulated day at a time."""

    def __init__(
        self, world: World, rng: random.Random, sink: Sink, rhythm: Rhythm, people: People
    ) -> None:
        self.world = world
        self.rng = rng
        self.sink = sink
        self.rhythm = rhythm
        self.people = people
        self.ids = sink.ids
        self._exported: dict[str, tuple[int, int]] = {}  # org id -> (year, month) done
        self.invites: list[tuple[str, str]] = []  # (domain kind, email), for the tests

    # -- the day ----------------------------------------------------------------------

    def run_day(self, epoch_day: int, day_start: int, sessions: dict[str, list[Session]]) -> None:
        for org in self.world.orgs:
            by_org = sessions[org.id]
            admins = [s for s in by_org if s[3].role(org) != "user"]
            working = local_weekday(day_start + 12 * HOUR, org.tz_minutes) < 5
            factor = 1.0 if working else 0.05
            size = len([p for p in org.people if p.active_until > day_start]) / 100
            if admins:
                self._admin_tasks(org, admins, factor, size, epoch_day, day_start)
            if by_org:
                self._member_tasks(org, by_org, factor)
            if org.idp is not None:
                self._directory(org, factor, size, epoch_day, day_start)
            if working and self.rng.random() < 1 / 20:
                t = day_start + self.rhythm.sample(org.tz_minutes, epoch_day)
                self.sink.emit(
                    t,
                    org,
                    system_actor("claude_code"),
                    "service_key_created",
                    {
                        "is_service_created": True,
                        "key_name": "claude-code-review",
                        "service_name": "claude_code",
                        "scopes": None,
                        "service_key_id": self.ids.new("svckey_"),
                    },
                )

    def _admin_tasks(
        self,
        org: Org,
        admins: list[Session],
        factor: float,
        size: float,
        epoch_day: int,
        day_start: int,
    ) -> None:
        sso = org.sign_in == "sso"
        tasks: list[tuple[float, Callable[[Org, int, dict[str, Any], Person], None]]] = [
            ((0.3 if org.idp else 0.5) * size, self.invite),
            (0.06 * size * (0.0 if org.idp else 1.0), self.remove_member),
            (size / 45 * (0.0 if org.idp else 1.0), self.offboard_batch),
            (1 / 40, self.promote),
            (1 / 50, self.demote),
            (0.15 * size, self.rbac_assign),
            (0.3 * size, self.grant_project_role),
            (0.1 * size, self.revoke_project_role),
            (1 / 12, self.add_mcp_server),
            (1 / 20, self.remove_mcp_server),
            (1 / 30, self.update_mcp_server),
            (1 / 40, self.org_integration("created")),
            (1 / 30, self.org_integration("updated")),
            (1 / 80, self.org_integration("deleted")),
            (1 / 25, self.admin_key),
            (1 / 30, self.admin_key_update),
            (1 / 15, self.platform_key),
            (1 / 40, self.service_key),
            (1 / 40, self.service_key_revoke),
            (1 / 10, self.settings),
            (1 / 60, self.ip_restriction("org_ip_restriction_updated")),
            (1 / 300, self.ip_restriction("org_ip_restriction_created")),
            (1 / 15, self.spend("workspace_spend_limit_created")),
            (1 / 8, self.spend("platform_spend_limit_updated")),
            (1 / 20, self.spend("extra_usage_spend_limit_updated")),
            (1 / 40, self.spend("workspace_spend_limit_deleted")),
            (1 / 60, self.spend("platform_spend_limit_deleted")),
            (1 / 25, self.workspace),
            (1 / 5, self.workspace_member),
            (1 / 25, self.members_export),
            (0.5, self.simple("org_users_listed")),
            (0.5, self.simple("org_user_viewed")),
            (1 / 300, self.compliance_settings),
            (1 / 400, self.domain_verified),
        ]
        if sso:
            tasks += [
                (1 / 30, self.simple("org_sso_group_role_mappings_updated")),
                (1 / 90, self.sso_rotation),
                (1 / 150, self.provisioning_mode),
                (1 / 200, self.sso_toggle),
            ]
        rng = self.rng
        for rate, task in tasks:
            for _ in range(poisson(rng, rate * factor)):
                start, end, actor, person = rng.choice(admins)
                t = start + int(rng.random() * (end - start + 2 * MINUTE))
                task(org, t, actor, person)
        self._monthly(org, admins, epoch_day, day_start)

    def _member_tasks(self, org: Org, by_org: list[Session], factor: float) -> None:
        """People connecting their own integrations, engineers creating console keys."""
        rng = self.rng
        people = {s[3].user_id for s in by_org}
        for _ in range(poisson(rng, 0.01 * len(people))):
            start, _end, actor, _p = rng.choice(by_org)
            fields: dict[str, Any] = {
                "integration_type": rng.choice(_USER_INTEGRATIONS),
                "mcp_server_id": None,
                "mcp_server_name": None,
            }
            if org.mcp_servers and rng.random() < 0.3:
                server_id, name = rng.choice(org.mcp_servers)
                fields = {
                    "integration_type": "mcp",
                    "mcp_server_id": server_id,
                    "mcp_server_name": name,
                }
            kind = "integration_user_connected"
            if rng.random() < 0.25:
                kind = "integration_user_disconnected"
            self.sink.emit(start + int(rng.random() * 10 * MINUTE), org, actor, kind, fields)
        engineers = [s for s in by_org if s[3].engineer]
        for _ in range(poisson(rng, 0.01 * len(engineers) * factor * 3)):
            start, _end, actor, _p = rng.choice(engineers)
            t = start + int(rng.random() * 20 * MINUTE)
            if rng.random() < 0.7:
                self.sink.emit(
                    t,
                    org,
                    actor,
                    "api_key_created",
                    {
                        "api_key_id": self.ids.new("apikey_"),
                        "scopes": ["user:inference"],
                        "restricted_to_organization": True,
                    },
                )
            else:
                self.sink.emit(
                    t,
                    org,
                    actor,
                    "scoped_api_key_deleted",
                    {
                        "api_key_id": self.ids.new("apikey_"),
                        "api_key_name": rng.choice(("laptop", "ci", "notebook", "test-key")),
                        "scopes": ["user:inference"],
                    },
                )

    # -- people joining and leaving -------------------------------------------------------

    def invitee(self, org: Org) -> tuple[str, str]:
        """Whom an invitation goes to: (kind, address). Personal addresses are how
        contractors, advisors and people between mailboxes are invited."""
        rng = self.rng
        first, last = rng.choice(FIRST_NAMES).lower(), rng.choice(LAST_NAMES).lower()
        roll = rng.random()
        if roll < 0.10:
            sep = rng.choice((".", "", "_"))
            digits = str(rng.randrange(10, 99)) if rng.random() < 0.4 else ""
            local = f"{first}{sep}{last}{digits}"
            return "personal", self.world.unique(f"{local}@{rng.choice(PERSONAL_DOMAINS)}")
        if roll < 0.25:
            return "partner", self.world.unique(f"{first}.{last}@{rng.choice(org.partners)}")
        local = f"{first}.{last}" if org.email_style == "first.last" else f"{first[0]}{last}"
        return "corporate", self.world.unique(f"{local}@{rng.choice(org.domains)}")

    def invite(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        rng, emit, ids = self.rng, self.sink.emit, self.ids
        kind, email = self.invitee(org)
        self.invites.append((kind, email))
        role = "admin" if kind == "corporate" and rng.random() < 0.03 else "user"
        invite_id = ids.new("invite_")
        emit(
            t,
            org,
            actor,
            "org_user_invite_sent",
            {
                "invited_email": email,
                "invited_rbac_group_ids": [],
                "invited_role": role,
                "invited_seat_tier": "premium" if rng.random() < 0.2 else "standard",
            },
        )
        roll = rng.random()
        if roll < 0.75:
            self._accept(org, t + int(rng.lognormvariate(9.3, 1.2) * US), email, role, invite_id)
        elif roll < 0.87:
            later = t + int(rng.uniform(5, 8) * DAY)
            emit(later, org, actor, "org_user_invite_re_sent", {"invite_id": invite_id})
            if rng.random() < 0.6:
                self._accept(org, later + int(rng.uniform(1, 48) * HOUR), email, role, invite_id)
        elif roll < 0.95:
            later = t + int(rng.uniform(1, 96) * HOUR)
            emit(later, org, actor, "org_user_invite_deleted", {"invite_id": invite_id})

    def _accept(self, org: Org, t: int, email: str, role: str, invite_id: str) -> None:
        person = self.world.add_person(org, t, email=email, role=role)
        if role == "admin":
            org.admins.append(person)
        agent = user_agent(person.browser, t // DAY, person.lag)
        ip = person.home_ip
        person.seen.add(ip)
        t = self.people.sign_in(t, person, ip, agent)
        actor = user_actor(person.email, person.user_id, ip, agent)
        self.sink.emit(t + 2 * US, org, actor, "org_user_invite_accepted", {"invite_id": invite_id})

    def _leaver(self, org: Org, t: int) -> Person | None:
        candidates = [
            p
            for p in org.people
            if p.role(org) == "user" and p.home_org is org and p.active_from < t < p.active_until
        ]
        return self.rng.choice(candidates) if candidates else None

    def remove_member(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        leaver = self._leaver(org, t)
        if leaver is None:
            return
        leaver.active_until = t
        if self.rng.random() < 0.1:
            own = user_actor(
                leaver.email,
                leaver.user_id,
                leaver.home_ip,
                user_agent(leaver.browser, t // DAY, leaver.lag),
            )
            self.sink.emit(t, org, own, "org_user_left", {"previous_role": "user"})
            return
        self.sink.emit(
            t,
            org,
            actor,
            "org_user_deleted",
            {"deleted_user_email": leaver.email, "deleted_user_id": leaver.user_id},
        )

    def offboard_batch(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        """Several leavers removed by hand one after another (end of a contract cohort)."""
        for _ in range(self.rng.randint(3, 8)):
            t += int(self.rng.uniform(0.5, 6) * MINUTE)
            leaver = self._leaver(org, t)
            if leaver is None:
                return
            leaver.active_until = t
            self.sink.emit(
                t,
                org,
                actor,
                "org_user_deleted",
                {"deleted_user_email": leaver.email, "deleted_user_id": leaver.user_id},
            )

    def _directory(
        self, org: Org, factor: float, size: float, epoch_day: int, day_start: int
    ) -> None:
        """What the IdP pushes over SCIM: hires, updates, leavers and the odd batch."""
        rng, emit, ids = self.rng, self.sink.emit, self.ids
        idp = org.idp or "OktaSAML"

        def when() -> int:
            return day_start + self.rhythm.sample(org.tz_minutes, epoch_day)

        def actor() -> dict[str, Any]:
            return scim_actor(ids.new("event_"), org.directory_id, idp)

        for _ in range(poisson(rng, 0.10 * size * factor)):
            t = when()
            person = self.world.add_person(org, t + int(rng.uniform(1, 48) * HOUR))
            emit(t, org, actor(), "scim_user_created", {"user_id": person.user_id})
        for _ in range(poisson(rng, 0.15 * size * factor)):
            active = [p for p in org.people if p.active_until > day_start + DAY]
            if active:
                emit(
                    when(),
                    org,
                    actor(),
                    "scim_user_updated",
                    {"user_id": rng.choice(active).user_id},
                )
        leavers = poisson(rng, 0.06 * size * factor)
        if rng.random() < size / 45 * factor:
            leavers += rng.randint(3, 8)  # an offboarding batch
            t = when()
            for _ in range(leavers):
                t += int(rng.uniform(2, 40) * US)
                leaver = self._leaver(org, t)
                if leaver is None:
                    break
                leaver.active_until = t
                emit(t, org, actor(), "scim_user_deleted", {"user_id": leaver.user_id})
            return
        for _ in range(leavers):
            t = when()
            leaver = self._leaver(org, t)
            if leaver is not None:
                leaver.active_until = t
                emit(t, org, actor(), "scim_user_deleted", {"user_id": leaver.user_id})

    # -- roles ------------------------------------------------------------------------------

    def _role_change(
        self, org: Org, t: int, actor: dict[str, Any], person: Person, new: str
    ) -> None:
        previous = person.role(org)
        person.roles[org.id] = new
        if new == "admin":
            org.admins.append(person)
        elif person in org.admins:
            org.admins.remove(person)
        self.sink.emit(
            t,
            org,
            actor,
            "claude_user_role_updated",
            {
                "current_role": new,
                "previous_role": previous,
                "user_email": person.email,
                "user_id": person.user_id,
            },
        )

    def promote(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        candidate = self._leaver(org, t)
        if candidate is not None and len(org.admins) < max(4, len(org.people) // 15):
            self._role_change(org, t, actor, candidate, "admin")

    def demote(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        plain = [p for p in org.admins if p.role(org) == "admin" and p is not admin]
        if len(plain) > 2:
            self._role_change(org, t, actor, self.rng.choice(plain), "user")

    def rbac_assign(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        member = self._leaver(org, t)
        if member is None:
            return
        kind = "rbac_role_assigned" if self.rng.random() < 0.8 else "rbac_role_unassigned"
        self.sink.emit(
            t,
            org,
            actor,
            kind,
            {
                "principal_id": member.user_id,
                "principal_type": "user",
                "role_id": f"rbac_role_01{org.id[6:14]}{self.rng.randrange(4)}",
            },
        )

    def _project_role(self, org: Org, t: int, actor: dict[str, Any], kind: str) -> None:
        rng = self.rng
        guests = [p for p in org.people if p.domain not in org.domains and p.active_until > t]
        target = rng.choice(guests) if guests and rng.random() < 0.25 else self._leaver(org, t)
        if target is None or not org.shared_projects:
            return
        self.sink.emit(
            t,
            org,
            actor,
            kind,
            {
                "resource_id": rng.choice(org.shared_projects),
                "resource_type": "project",
                "role": rng.choice(("viewer", "editor", "editor", "owner")),
                "target_id": target.user_id,
                "target_type": "user",
            },
        )

    def grant_project_role(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        self._project_role(org, t, actor, "role_assignment_granted")

    def revoke_project_role(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        self._project_role(org, t, actor, "role_assignment_revoked")

    # -- integrations and keys --------------------------------------------------------------

    def add_mcp_server(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        rng = self.rng
        name = rng.choice(_MCP_NAMES)
        if rng.random() < 0.2:
            name = f"internal-{rng.choice(('wiki', 'search', 'tickets', 'metrics'))}"
        server = (self.ids.new("mcpsrv_"), name)
        org.mcp_servers.append(server)
        self.sink.emit(
            t,
            org,
            actor,
            "mcp_server_created",
            {"mcp_server_id": server[0], "mcp_server_name": server[1]},
        )

    def remove_mcp_server(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        if len(org.mcp_servers) > 2:
            server = org.mcp_servers.pop(self.rng.randrange(len(org.mcp_servers)))
            self.sink.emit(
                t,
                org,
                actor,
                "mcp_server_deleted",
                {"mcp_server_id": server[0], "mcp_server_name": server[1]},
            )

    def update_mcp_server(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        if org.mcp_servers:
            server = self.rng.choice(org.mcp_servers)
            self.sink.emit(
                t,
                org,
                actor,
                "mcp_server_updated",
                {"mcp_server_id": server[0], "mcp_server_name": server[1]},
            )

    def org_integration(self, verb: str) -> Callable[[Org, int, dict[str, Any], Person], None]:
        def task(org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
            which = self.rng.choice(("gdrive", "github"))
            self.sink.emit(t, org, actor, f"claude_{which}_integration_{verb}")

        return task

    def _step_up(self, org: Org, t: int, actor: dict[str, Any]) -> int:
        rng = self.rng
        if rng.random() < 0.4:
            if rng.random() < 0.03:
                self.sink.emit(
                    t - 40 * US,
                    None,
                    actor,
                    "step_up_authentication_failed",
                    {
                        "method": "webauthn",
                        "reason": "challenge_rejected",
                        "trusted_device_id": None,
                    },
                )
            self.sink.emit(
                t - 10 * US, None, actor, "step_up_authentication_succeeded", {"method": "webauthn"}
            )
        return t

    def admin_key(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        rng = self.rng
        self._step_up(org, t, actor)
        key = self.ids.new("apikey_")
        self.sink.emit(
            t,
            org,
            actor,
            "admin_api_key_created",
            {"admin_api_key_id": key, "scopes": list(rng.choice(_SCOPES))},
        )
        if org.admin_keys and rng.random() < 0.5:  # a rotation: the old key goes later
            old = org.admin_keys.pop(0)
            later = t + int(rng.uniform(1, 3) * DAY)
            self.sink.emit(later, org, actor, "admin_api_key_deleted", {"admin_api_key_id": old})
        org.admin_keys.append(key)

    def admin_key_update(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        if not org.admin_keys:
            return
        renamed = self.rng.random() < 0.6
        self.sink.emit(
            t,
            org,
            actor,
            "admin_api_key_updated",
            {
                "admin_api_key_id": self.rng.choice(org.admin_keys),
                "updates": [
                    {
                        "type": "name",
                        "previous_value": "provisioning",
                        "current_value": "provisioning-prod",
                    }
                ]
                if renamed
                else [{"type": "status", "previous_value": "active", "current_value": "inactive"}],
            },
        )

    def platform_key(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        self.sink.emit(
            t, org, actor, "platform_api_key_created", {"api_key_id": self.ids.new("apikey_")}
        )

    def service_key(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        self._step_up(org, t, actor)
        self.sink.emit(
            t,
            org,
            actor,
            "service_key_created",
            {
                "is_service_created": False,
                "key_name": self.rng.choice(("slack-bot", "jira-sync", "data-pipeline", "ci")),
                "service_name": self.rng.choice(("claude_code", "slack", "custom")),
                "scopes": ["read"],
                "service_key_id": self.ids.new("svckey_"),
            },
        )

    def service_key_revoke(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        self.sink.emit(
            t,
            org,
            actor,
            "service_key_revoked",
            {
                "service_key_id": self.ids.new("svckey_"),
                "service_name": self.rng.choice(("claude_code", "slack", "custom")),
            },
        )

    # -- configuration ------------------------------------------------------------------------

    def settings(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        on = self.rng.random() < 0.6
        self.sink.emit(
            t,
            org,
            actor,
            "claude_organization_settings_updated",
            {
                "updates": [
                    {
                        "type": self.rng.choice(_SETTINGS),
                        "previous_value": not on,
                        "current_value": on,
                    }
                ],
            },
        )

    def simple(self, kind: str) -> Callable[[Org, int, dict[str, Any], Person], None]:
        def task(org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
            self.sink.emit(t, org, actor, kind)

        return task

    def ip_restriction(self, kind: str) -> Callable[[Org, int, dict[str, Any], Person], None]:
        def task(org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
            self._step_up(org, t, actor)
            self.sink.emit(t, org, actor, kind)

        return task

    def spend(self, kind: str) -> Callable[[Org, int, dict[str, Any], Person], None]:
        def task(org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
            fields: dict[str, Any] = {"spend_limit_id": self.rng.choice(org.spend_limits)}
            if kind.startswith("workspace"):
                fields["workspace_id"] = self.rng.choice(org.workspaces)
            self.sink.emit(t, org, actor, kind, fields)

        return task

    def sso_rotation(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        """The IdP certificate expires: a new connection is activated, the old one goes."""
        self._step_up(org, t, actor)
        old, org.sso_connection_id = org.sso_connection_id, self.ids.new("conn_")
        self.sink.emit(
            t,
            org,
            actor,
            "org_sso_connection_activated",
            {"connection_id": org.sso_connection_id, "connection_type": "saml"},
        )
        later = t + int(self.rng.uniform(2, 30) * MINUTE)
        self.sink.emit(later, org, actor, "org_sso_connection_deactivated", {"connection_id": old})

    def provisioning_mode(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        modes = ("jit", "scim")
        previous = self.rng.choice(modes)
        self.sink.emit(
            t,
            org,
            actor,
            "org_sso_provisioning_mode_changed",
            {"previous_mode": previous, "new_mode": modes[previous == "jit"]},
        )

    def sso_toggle(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        """Troubleshooting an IdP change: SSO off for a few minutes, then on again."""
        self._step_up(org, t, actor)
        self.sink.emit(t, org, actor, "org_sso_toggled", {"enabled": False})
        later = t + int(self.rng.uniform(3, 25) * MINUTE)
        self.sink.emit(later, org, actor, "org_sso_toggled", {"enabled": True})

    def compliance_settings(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        self.sink.emit(
            t,
            org,
            actor,
            "org_compliance_api_settings_updated",
            {"compliance_api_enabled": True, "compliance_api_logging_enabled": True},
        )

    def domain_verified(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        self.sink.emit(t, org, actor, "org_domain_verified", {"domain": org.domains[-1]})

    def workspace(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        workspace = self.ids.new("wrkspc_")
        org.workspaces.append(workspace)
        self.sink.emit(t, org, actor, "platform_workspace_created", {"workspace_id": workspace})

    def workspace_member(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        member = self._leaver(org, t)
        if member is not None:
            self.sink.emit(
                t,
                org,
                actor,
                "platform_workspace_member_added",
                {"user_id": member.user_id, "workspace_id": self.rng.choice(org.workspaces)},
            )

    def members_export(self, org: Org, t: int, actor: dict[str, Any], admin: Person) -> None:
        self.sink.emit(t, org, actor, "org_members_exported")

    # -- monthly ------------------------------------------------------------------------------

    def _monthly(self, org: Org, admins: list[Session], epoch_day: int, day_start: int) -> None:
        """The compliance routine of the first working days of a month: a conversations
        export and an audit-log export of the month before."""
        local = day_start + 12 * HOUR + org.tz_minutes * MINUTE
        year, month, mday = (int(x) for x in rfc3339(local)[:10].split("-"))
        if mday > 5 or local_weekday(day_start + 12 * HOUR, org.tz_minutes) >= 5:
            return
        if self._exported.get(org.id) == (year, month) or self.rng.random() > 0.6:
            return
        self._exported[org.id] = (year, month)
        rng = self.rng
        start, end, actor, _admin = rng.choice(admins)
        t = start + int(rng.random() * (end - start + MINUTE))
        self._step_up(org, t, actor)
        self.sink.emit(t, org, actor, "org_data_export_started", {"export_type": "conversations"})
        done = t + int(rng.uniform(20, 180) * MINUTE)
        self.sink.emit(
            done,
            org,
            ANTHROPIC_ACTOR,
            "org_data_export_completed",
            {"export_type": "conversations"},
        )
        self.sink.emit(
            done + int(rng.uniform(2, 60) * MINUTE), org, actor, "org_data_export_accessed"
        )
        prev_year, prev_month = (year, month - 1) if month > 1 else (year - 1, 12)
        self.sink.emit(
            t + int(rng.uniform(1, 15) * MINUTE),
            org,
            actor,
            "audit_log_export_started",
            {
                "from_date": f"{prev_year:04d}-{prev_month:02d}-01T00:00:00Z",
                "to_date": f"{year:04d}-{month:02d}-01T00:00:00Z",
            },
        )


__all__ = ["AdminWork", "unauthenticated_actor"]
