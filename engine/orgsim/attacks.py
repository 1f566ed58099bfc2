"""Labelled attacks, mixed into the ordinary traffic.

Each instance is one intrusion of a kind named by its behaviour. Intruders are made to
look like what real ones look like, not like a test fixture:

- Their addresses come from the same documentation blocks as everyone's: residential
  proxies (home broadband IPv4 and IPv6), commercial VPN exits that travellers also use,
  cloud servers beside the SIEM, now and then a hotel network. For a sign-in as a victim
  the address is one that victim has never used.
- They reuse the victim's own user agent about 40% of the time (a stolen session or a
  cloned browser profile), otherwise a current mainstream browser; scripts show a library
  user agent only where a script is what does the work (guessing, API scraping).
- Some act from a stolen session without signing in at all (a hijacked cookie), and an
  insider acts from their own address.
- Timing is any hour of the day; follow-ups are spaced minutes apart, as a person at a
  keyboard works.

The attacks draw from their own random stream and ids, and never change the world, so the
ordinary traffic of a feed with attacks is the ordinary traffic of the same feed without
them (up to where the requested count ends it). After an attack the simulated people go on
as before (removed members are, in effect, restored by the admins).

`key_activity_id` is the earliest single activity at which a defender should know:

| kind | key activity |
|---|---|
| admin_account_takeover | the sign-in success from the new address |
| credential_brute_force | the 5th failure against the account |
| password_spraying | the first failure against the 5th distinct account |
| privilege_escalation | the promotion to admin |
| data_exfiltration | the export started / members exported / the 30th view of a burst |
| defense_evasion | the first protection turned off |
| key_persistence | the key made by a non-person actor / the 3rd key of a burst |
| external_access | the outside invite with an admin role / the share to the outsider |
| malicious_mcp_server | the server added |
| compliance_api_abuse | the first request by the unknown key or from the new address |
| mass_destruction | the 5th removal |
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.orgsim.machines import Machines
from engine.orgsim.routine import Session
from engine.orgsim.wire import (
    ANTHROPIC_ACTOR,
    DAY,
    MINUTE,
    US,
    Activity,
    Ids,
    Sink,
    admin_api_key_actor,
    api_actor,
    scim_actor,
    service_account_actor,
    unauthenticated_actor,
    user_actor,
)
from engine.orgsim.world import (
    PERSONAL_DOMAINS,
    Org,
    Person,
    World,
    cloud_ip,
    commercial_vpn_ip,
    home_ip4,
    home_prefix6,
    hotel_ip,
    ipv6,
    user_agent,
)

KINDS = (
    "admin_account_takeover",
    "credential_brute_force",
    "password_spraying",
    "privilege_escalation",
    "data_exfiltration",
    "defense_evasion",
    "key_persistence",
    "external_access",
    "malicious_mcp_server",
    "compliance_api_abuse",
    "mass_destruction",
)


def kind_cycle() -> tuple[str, ...]:
    """The order instances are dealt in: every kind once, account takeover four times in
    fourteen (takeover is the commonest serious intrusion and the one with most
    variants)."""
    cycle: list[str] = []
    for i, kind in enumerate(KINDS[1:]):
        if i % 3 == 0:
            cycle.append(KINDS[0])
        cycle.append(kind)
    return tuple(cycle)


@dataclass(slots=True)
class Instance:
    """One attack: what it made, where a defender should notice it, and what it was."""

    instance: str
    kind: str
    org: Org | None
    description: str
    activities: list[tuple[int, Activity]] = field(default_factory=list)
    key: Activity | None = None


_SCRIPTS = ("python-requests/2.32.3", "python-httpx/0.28.1", "curl/8.7.1", "Go-http-client/2.0")
_PAGE = "/v1/compliance/activities?limit=5000"
_HARM = {
    "admin_key": "created an admin API key",
    "platform_key": "created an API key",
    "export": "exported the organization's conversations",
    "invite": "invited an outside address as admin",
    "members": "exported the member list",
    "mcp": "added an MCP server",
    "sso_off": "turned SSO off",
    "ip_off": "deleted the IP restriction",
    "logging_off": "turned Compliance API logging off",
    "spend_off": "deleted a spend limit",
    "sso_connection_off": "deactivated the SSO connection",
}
_COMMON = ("chrome_win", "chrome_mac", "edge_win", "safari_mac")


class Attacks:
    """Deals `total` instances over the feed by position and builds each on its day."""

    def __init__(
        self,
        world: World,
        sink: Sink,
        machines: Machines,
        seed: int,
        total: int,
        count: int,
        start_us: int,
    ) -> None:
        self.world = world
        self.sink = sink
        self.machines = machines
        self.rng = random.Random(f"orgsim-attacks-{seed}")
        self.ids = Ids(self.rng)
        self.start_us = start_us
        self.count = count
        cycle = kind_cycle()
        # Positions (in activities) spread evenly; the last leaves room for a slow attack.
        self.plan = [
            (int((i + 0.5) / total * count * 0.97), cycle[i % len(cycle)]) for i in range(total)
        ]
        self.next = 0
        self.instances: list[Instance] = []
        self._day: tuple[int, int] = (0, 0)
        self._sessions: dict[str, list[Session]] = {}
        self._times: dict[str, int] = {}

    # -- dealing --------------------------------------------------------------------------

    def run_day(
        self,
        epoch_day: int,
        day_start: int,
        emitted: int,
        day: list[tuple[int, int, Activity]],
        sessions: dict[str, list[Session]],
    ) -> None:
        """Build the instances whose position falls among today's activities (`day`,
        sorted). Any hour will do, except on the day the feed ends: there the attack
        starts well before the last activity written, so it is in the feed whole."""
        self._day = (epoch_day, day_start)
        self._sessions = sessions
        latest = day_start + DAY
        if day and emitted + len(day) > self.count:
            latest = day_start + int((day[self.count - emitted - 1][0] - day_start) * 0.6)
        while self.next < len(self.plan) and self.plan[self.next][0] < emitted + len(day):
            kind = self.plan[self.next][1]
            self.next += 1
            t = day_start + int(self.rng.random() * (latest - day_start))
            t = max(self.start_us + MINUTE, t)
            builder: Callable[[Instance, int], bool] = getattr(self, kind)
            for _ in range(5):  # a kind can need an org with an IdP, say: pick again
                org = self.rng.choice(self.world.orgs)
                instance = Instance(f"atk-{len(self.instances) + 1:05d}", kind, org, "")
                if builder(instance, t):
                    self.instances.append(instance)
                    break

    # -- tools ----------------------------------------------------------------------------

    def emit(
        self,
        instance: Instance,
        t: int,
        org: Org | None,
        actor: dict[str, Any],
        kind: str,
        fields: dict[str, Any] | None = None,
    ) -> Activity:
        activity = self.sink.emit(t, org, actor, kind, fields, ids=self.ids)
        instance.activities.append((t, activity))
        self._times[activity["id"]] = t
        return activity

    def address(self, avoid: set[str] | None = None, cloud: bool = False) -> str:
        """An intruder's address from the blocks ordinary people use too."""
        rng = self.rng
        for _ in range(20):
            roll = rng.random()
            if cloud or 0.6 <= roll < 0.85:
                ip = cloud_ip(rng)
            elif roll < 0.2:
                ip = ipv6(home_prefix6(rng), rng)  # residential proxy, IPv6
            elif roll < 0.35:
                ip = home_ip4(rng)  # residential proxy, IPv4
            elif roll < 0.6:
                ip = commercial_vpn_ip(rng)
            else:
                ip = hotel_ip(rng)
            if avoid is None or ip not in avoid:
                return ip
        return ipv6(home_prefix6(rng), rng)

    def agent(self, victim: Person | None, script: bool = False) -> str:
        rng = self.rng
        epoch_day = self._day[0]
        if script and rng.random() < 0.7:
            return rng.choice(_SCRIPTS)
        if victim is not None and rng.random() < 0.4:
            return user_agent(victim.browser, epoch_day, victim.lag)
        return user_agent(rng.choice(_COMMON), epoch_day, 0)

    def active(self, org: Org, t: int, admins: bool = False) -> list[Person]:
        return [
            p
            for p in org.people
            if p.active_from < t < p.active_until and (p.role(org) != "user") == admins
        ]

    def sign_in(self, inst: Instance, t: int, victim: Person, ip: str, agent: str) -> Activity:
        """The intruder signs in as `victim` (they hold the password and MFA, or the
        mailbox); returns the success."""
        rng = self.rng
        org = victim.home_org
        who = unauthenticated_actor(victim.email, ip, agent)
        actor = user_actor(victim.email, victim.user_id, ip, agent)
        if org.sign_in == "sso" and victim.domain in org.domains:
            self.emit(inst, t, None, who, "sso_login_initiated")
            t += int(rng.uniform(4, 30) * US)
            return self.emit(
                inst,
                t,
                None,
                actor,
                "sso_login_succeeded",
                {"auth_method": "sso", "mfa_method": None},
            )
        self.emit(inst, t, None, who, "magic_link_login_initiated")
        t += int(rng.uniform(20, 200) * US)
        return self.emit(
            inst,
            t,
            None,
            actor,
            "magic_link_login_succeeded",
            {"auth_method": "magic_link", "mfa_method": None},
        )

    def look_around(
        self, inst: Instance, t: int, org: Org, actor: dict[str, Any], victim: Person, n: int
    ) -> int:
        rng = self.rng
        for _ in range(n):
            t += int(rng.uniform(10, 120) * US)
            roll = rng.random()
            if roll < 0.4 and victim.chats:
                self.emit(
                    inst,
                    t,
                    org,
                    actor,
                    "claude_chat_viewed",
                    {"claude_chat_id": rng.choice(victim.chats), "claude_project_id": None},
                )
            elif roll < 0.65 and org.shared_projects:
                self.emit(
                    inst,
                    t,
                    org,
                    actor,
                    "claude_project_viewed",
                    {"claude_project_id": rng.choice(org.shared_projects)},
                )
            elif roll < 0.85:
                self.emit(inst, t, org, actor, "org_users_listed")
            else:
                self.emit(inst, t, org, actor, "org_user_viewed")
        return t

    def hijack(self, org: Org, t: int) -> tuple[Person, dict[str, Any]] | None:
        """A stolen admin session: the victim's user agent, the intruder's address."""
        admins = self.active(org, t, admins=True)
        if not admins:
            return None
        victim = self.rng.choice(admins)
        agent = user_agent(victim.browser, self._day[0], victim.lag)
        ip = self.address(victim.seen)
        return victim, user_actor(victim.email, victim.user_id, ip, agent)

    def admin_actor(self, org: Org, t: int) -> tuple[Person, dict[str, Any], str] | None:
        """A compromised admin's actor: a stolen session (half), the attacker's own browser
        (a third) or, the rest, the victim's own machine (remote-access malware)."""
        rng = self.rng
        admins = self.active(org, t, admins=True)
        if not admins:
            return None
        victim = rng.choice(admins)
        roll = rng.random()
        agent = user_agent(victim.browser, self._day[0], victim.lag)
        if roll < 0.5:
            how, ip = "a stolen session", self.address(victim.seen)
        elif roll < 0.83:
            how, ip, agent = "the intruder's browser", self.address(victim.seen), self.agent(None)
        else:
            own = [s for s in self._sessions.get(org.id, []) if s[3] is victim]
            ip = own[0][2]["ip_address"] if own else victim.home_ip
            how = "malware on the admin's own computer"
        return victim, user_actor(victim.email, victim.user_id, ip, agent), how

    # -- harmful admin acts, shared by several kinds --------------------------------------

    def harm(self, inst: Instance, t: int, org: Org, actor: dict[str, Any], what: str) -> Activity:
        rng, ids = self.rng, self.ids
        if what == "admin_key":
            return self.emit(
                inst,
                t,
                org,
                actor,
                "admin_api_key_created",
                {
                    "admin_api_key_id": ids.new("apikey_"),
                    "scopes": rng.choice((["admin"], ["read", "write"])),
                },
            )
        if what == "export":
            first = self.emit(
                inst, t, org, actor, "org_data_export_started", {"export_type": "conversations"}
            )
            done = t + int(rng.uniform(15, 90) * MINUTE)
            self.emit(
                inst,
                done,
                org,
                ANTHROPIC_ACTOR,
                "org_data_export_completed",
                {"export_type": "conversations"},
            )
            self.emit(
                inst,
                done + int(rng.uniform(1, 20) * MINUTE),
                org,
                actor,
                "org_data_export_accessed",
            )
            return first
        if what == "invite":
            return self.emit(
                inst,
                t,
                org,
                actor,
                "org_user_invite_sent",
                {
                    "invited_email": self.outside_email(org),
                    "invited_rbac_group_ids": [],
                    "invited_role": "admin",
                    "invited_seat_tier": "standard",
                },
            )
        if what == "members":
            return self.emit(inst, t, org, actor, "org_members_exported")
        if what == "mcp":
            return self.emit(
                inst,
                t,
                org,
                actor,
                "mcp_server_created",
                {"mcp_server_id": ids.new("mcpsrv_"), "mcp_server_name": self.mcp_name()},
            )
        if what == "platform_key":
            return self.emit(
                inst, t, org, actor, "platform_api_key_created", {"api_key_id": ids.new("apikey_")}
            )
        if what == "sso_off":
            return self.emit(inst, t, org, actor, "org_sso_toggled", {"enabled": False})
        if what == "ip_off":
            return self.emit(inst, t, org, actor, "org_ip_restriction_deleted")
        if what == "logging_off":
            return self.emit(
                inst,
                t,
                org,
                actor,
                "org_compliance_api_settings_updated",
                {"compliance_api_enabled": True, "compliance_api_logging_enabled": False},
            )
        if what == "spend_off":
            if rng.random() < 0.5:
                return self.emit(
                    inst,
                    t,
                    org,
                    actor,
                    "platform_spend_limit_deleted",
                    {"spend_limit_id": rng.choice(org.spend_limits)},
                )
            return self.emit(
                inst,
                t,
                org,
                actor,
                "workspace_spend_limit_deleted",
                {
                    "spend_limit_id": rng.choice(org.spend_limits),
                    "workspace_id": rng.choice(org.workspaces),
                },
            )
        if what == "sso_connection_off":
            return self.emit(
                inst,
                t,
                org,
                actor,
                "org_sso_connection_deactivated",
                {"connection_id": org.sso_connection_id},
            )
        raise ValueError(what)

    def outside_email(self, org: Org) -> str:
        rng = self.rng
        stem = org.domains[0].split(".")[0]
        local = rng.choice(
            (
                "it.support",
                "admin.backup",
                "j.miller",
                "helpdesk",
                "sec-ops",
                "d.wright",
                "svc.account",
            )
        )
        roll = rng.random()
        if roll < 0.45:
            return f"{local.replace('.', '')}{rng.randrange(10, 99)}@{rng.choice(PERSONAL_DOMAINS)}"
        if roll < 0.75:  # a look-alike of the company's own domain
            look = rng.choice(
                (f"{stem}-it", f"{stem}-support", stem.replace("i", "l", 1) + "s", f"{stem}corp")
            )
            return f"{local}@{look}.example"
        return f"{local}@{rng.choice(('mailbox-relay', 'quickmail-pro', 'secure-inbox'))}.example"

    def mcp_name(self) -> str:
        return self.rng.choice(
            (
                "Notion Sync",
                "Jira Helper",
                "Slack Tools",
                "Docs Search",
                "Linear",
                "mcp.docs-helper.example",
                "Drive Indexer",
                "productivity-tools",
                "GitHub Assist",
            )
        )

    # -- the kinds --------------------------------------------------------------------------

    def admin_account_takeover(self, inst: Instance, t: int) -> bool:
        rng = self.rng
        org = inst.org
        assert org is not None
        admins = self.active(org, t, admins=True)
        if not admins:
            return False
        victim = rng.choice(admins)
        ip = self.address(victim.seen)
        agent = self.agent(victim)
        inst.key = self.sign_in(inst, t, victim, ip, agent)
        t = self._t(inst.key)
        actor = user_actor(victim.email, victim.user_id, ip, agent)
        t = self.look_around(inst, t, org, actor, victim, rng.randint(2, 12))
        follow = rng.choice(
            (
                (),
                (),
                ("admin_key",),
                ("export",),
                ("invite",),
                ("members",),
                ("sso_off",),
                ("ip_off",),
                ("logging_off",),
                ("mcp",),
                ("admin_key", "platform_key"),
                ("invite", "admin_key"),
                ("members", "export"),
                ("logging_off", "admin_key"),
            )
        )
        for what in follow:
            t += int(rng.uniform(1, 15) * MINUTE)
            self.harm(inst, t, org, actor, what)
        if rng.random() < 0.3:
            self.emit(inst, t + int(rng.uniform(1, 10) * MINUTE), None, actor, "user_logged_out")
        did = (
            " then " + " and ".join(_HARM[w] for w in follow) if follow else ", only looked around"
        )
        inst.description = f"{victim.email} signed in from new address {ip}{did}"
        return True

    def credential_brute_force(self, inst: Instance, t: int) -> bool:
        rng = self.rng
        org = inst.org
        assert org is not None
        pool = self.active(org, t, admins=rng.random() < 0.3) or self.active(org, t)
        if not pool:
            return False
        victim = rng.choice(pool)
        ip = self.address(victim.seen)
        agent = self.agent(None, script=True)
        who = unauthenticated_actor(victim.email, ip, agent)
        sso = org.sign_in == "sso" and victim.domain in org.domains
        fast = rng.random() < 0.6
        failures = rng.randint(8, 40)
        for n in range(failures):
            t += int(rng.uniform(2, 20) * US) if fast else int(rng.uniform(20, 90) * US)
            if sso or n % 3 == 0:
                self.emit(
                    inst,
                    t,
                    None,
                    who,
                    "sso_login_initiated" if sso else "magic_link_login_initiated",
                )
                t += int(rng.uniform(1, 5) * US)
            failed = self.emit(
                inst, t, None, who, "sso_login_failed" if sso else "magic_link_login_failed"
            )
            if n == 4:
                inst.key = failed
        ending = ""
        if rng.random() < 0.3:
            t += int(rng.uniform(5, 60) * US)
            actor = user_actor(victim.email, victim.user_id, ip, agent)
            method = "sso" if sso else "magic_link"
            self.emit(
                inst,
                t,
                None,
                actor,
                f"{method}_login_succeeded",
                {"auth_method": method, "mfa_method": None},
            )
            self.look_around(inst, t, org, actor, victim, rng.randint(1, 6))
            ending = ", then got in"
        inst.description = f"{failures} failed sign-ins at {victim.email} from {ip}{ending}"
        return True

    def password_spraying(self, inst: Instance, t: int) -> bool:
        rng = self.rng
        org = inst.org
        assert org is not None
        people = [p for p in org.people if p.active_from < t and p.home_org is org]
        if len(people) < 10:
            return False
        targets = [p.email for p in rng.sample(people, min(len(people), rng.randint(12, 50)))]
        domain = org.domains[0]
        targets += [
            f"{x}@{domain}"
            for x in rng.sample(
                ("admin", "it", "support", "finance", "hr", "ceo", "test", "info"),
                rng.randint(1, 4),
            )
        ]
        rng.shuffle(targets)
        ip = self.address()
        agent = self.agent(None, script=True)
        slow = rng.random() < 0.3
        sso = org.sign_in == "sso"
        for n, email in enumerate(targets):
            for _ in range(1 if rng.random() < 0.8 else 2):
                t += int(rng.uniform(120, 600) * US) if slow else int(rng.uniform(3, 45) * US)
                who = unauthenticated_actor(email, ip, agent)
                if sso:
                    self.emit(inst, t, None, who, "sso_login_initiated")
                    t += int(rng.uniform(1, 4) * US)
                failed = self.emit(
                    inst, t, None, who, "sso_login_failed" if sso else "magic_link_login_failed"
                )
                if n == 4 and inst.key is None:
                    inst.key = failed
        inst.description = f"failed sign-ins at {len(targets)} accounts of {org.name} from {ip}"
        return True

    def privilege_escalation(self, inst: Instance, t: int) -> bool:
        rng = self.rng
        org = inst.org
        assert org is not None
        found = self.admin_actor(org, t)
        members = self.active(org, t)
        if found is None or not members:
            return False
        admin, actor, how = found
        member = rng.choice(members)
        ip = self.address(member.seen)
        agent = self.agent(member)
        promote = {
            "current_role": "admin",
            "previous_role": "user",
            "user_email": member.email,
            "user_id": member.user_id,
        }
        if org.idp is not None and rng.random() < 0.4:
            self.emit(inst, t, org, actor, "org_sso_group_role_mappings_updated")
            t += int(rng.uniform(5, 60) * MINUTE)
            signed = self.sign_in(inst, t, member, ip, agent)
            t = self._t(signed) + 2 * US
            inst.key = self.emit(inst, t, org, ANTHROPIC_ACTOR, "claude_user_role_updated", promote)
            route = f"an SSO group mapping changed by {admin.email} ({how})"
        else:
            inst.key = self.emit(inst, t, org, actor, "claude_user_role_updated", promote)
            t += int(rng.uniform(5, 90) * MINUTE)
            t = self._t(self.sign_in(inst, t, member, ip, agent))
            route = f"{admin.email} ({how})"
        mine = user_actor(member.email, member.user_id, ip, agent)
        for what in rng.choice(
            (
                ("admin_key",),
                ("admin_key", "platform_key"),
                ("platform_key",),
                ("admin_key", "invite"),
            )
        ):
            t += int(rng.uniform(1, 20) * MINUTE)
            self.harm(inst, t, org, mine, what)
        inst.description = f"{member.email} made admin via {route}, then minted keys"
        return True

    def data_exfiltration(self, inst: Instance, t: int) -> bool:
        rng = self.rng
        org = inst.org
        assert org is not None
        roll = rng.random()
        if roll < 0.55:
            if rng.random() < 0.4:  # a departing admin, from home, after hours
                admins = self.active(org, t, admins=True)
                if not admins:
                    return False
                admin = rng.choice(admins)
                agent = user_agent(admin.browser, self._day[0], admin.lag)
                actor = user_actor(admin.email, admin.user_id, admin.home_ip, agent)
                how = "an insider"
            else:
                found = self.admin_actor(org, t)
                if found is None:
                    return False
                admin, actor, how = found
            what = "export" if roll < 0.35 else "members"
            inst.key = self.harm(inst, t, org, actor, what)
            if what == "members" and rng.random() < 0.5:
                self.harm(inst, t + int(rng.uniform(2, 30) * MINUTE), org, actor, "export")
            inst.description = f"{_HARM[what]} by {admin.email} ({how})"
            return True
        members = self.active(org, t)
        if not members:
            return False
        person = rng.choice(members)
        insider = rng.random() < 0.5
        ip = person.home_ip if insider else self.address(person.seen)
        agent = (
            user_agent(person.browser, self._day[0], person.lag)
            if insider
            else self.agent(person, script=True)
        )
        actor = user_actor(person.email, person.user_id, ip, agent)
        views = rng.randint(80, 400)
        span = rng.uniform(10, 40) * MINUTE
        for n in range(views):
            t += int(rng.expovariate(views / span)) + 1
            kind = rng.choice(
                (
                    "claude_project_document_viewed",
                    "claude_project_viewed",
                    "claude_file_viewed",
                    "claude_chat_viewed",
                )
            )
            project = rng.choice(org.shared_projects) if org.shared_projects else None
            if kind == "claude_project_document_viewed":
                fields: dict[str, Any] = {
                    "claude_project_document_id": self.ids.new("claude_proj_doc_"),
                    "claude_project_id": project,
                }
            elif kind == "claude_project_viewed":
                fields = {"claude_project_id": project}
            elif kind == "claude_file_viewed":
                fields = {
                    "claude_file_id": self.ids.new("claude_file_"),
                    "claude_artifact_id": None,
                    "claude_project_id": project,
                }
            else:
                fields = {
                    "claude_chat_id": self.ids.new("claude_chat_"),
                    "claude_project_id": project,
                }
            activity = self.emit(inst, t, org, actor, kind, fields)
            if n == 29:
                inst.key = activity
        who = "insider" if insider else "intruder"
        inst.description = f"{views} content views in minutes by {person.email} ({who}, {ip})"
        return True

    def defense_evasion(self, inst: Instance, t: int) -> bool:
        rng = self.rng
        org = inst.org
        assert org is not None
        found = self.admin_actor(org, t)
        if found is None:
            return False
        admin, actor, how = found
        options = ["ip_off", "logging_off", "spend_off"]
        if org.sign_in == "sso":
            options += ["sso_off", "sso_off", "sso_connection_off"]
        acts = rng.sample(options, rng.choice((1, 1, 2)))
        for n, what in enumerate(acts):
            if n:
                t += int(rng.uniform(1, 10) * MINUTE)
            done = self.harm(inst, t, org, actor, what)
            inst.key = inst.key or done
        inst.description = f"{' and '.join(_HARM[w] for w in acts)} by {admin.email} ({how})"
        return True

    def key_persistence(self, inst: Instance, t: int) -> bool:
        rng = self.rng
        org = inst.org
        assert org is not None
        if rng.random() < 0.5:
            roll = rng.random()
            agent = rng.choice(("Anthropic/Python 0.69.0", "curl/8.7.1", "python-httpx/0.28.1"))
            if roll < 0.6:  # the org's own automation key, stolen, used from elsewhere
                key = org.automation_key if rng.random() < 0.6 else rng.choice(org.admin_keys)
                actor = admin_api_key_actor(key, self.address(cloud=rng.random() < 0.5), agent)
            else:
                actor = service_account_actor(self.ids.new("svcacct_"), self.address(), agent)
            for n in range(rng.randint(1, 4)):
                t += int(rng.uniform(2, 120) * US)
                if rng.random() < 0.6:
                    made = self.emit(
                        inst,
                        t,
                        org,
                        actor,
                        "platform_api_key_created",
                        {"api_key_id": self.ids.new("apikey_")},
                    )
                else:
                    made = self.emit(
                        inst,
                        t,
                        org,
                        actor,
                        "service_key_created",
                        {
                            "is_service_created": False,
                            "key_name": rng.choice(("backup", "ci-2")),
                            "service_name": "custom",
                            "scopes": ["read", "write"],
                            "service_key_id": self.ids.new("svckey_"),
                        },
                    )
                if n == 0:
                    inst.key = made
            inst.description = f"keys created by {actor['type']} from {actor['ip_address']}"
            return True
        found = self.admin_actor(org, t)
        if found is None:
            return False
        admin, actor, how = found
        keys = rng.randint(4, 10)
        for n in range(keys):
            t += int(rng.uniform(20, 150) * US)
            made = self.harm(inst, t, org, actor, rng.choice(("admin_key", "platform_key")))
            if n == 2:
                inst.key = made
        inst.description = f"{keys} keys in minutes by {admin.email} ({how})"
        return True

    def external_access(self, inst: Instance, t: int) -> bool:
        rng = self.rng
        org = inst.org
        assert org is not None
        found = self.admin_actor(org, t)
        if found is None:
            return False
        admin, actor, how = found
        admin_role = rng.random() < 0.6
        email = self.outside_email(org)
        invite = self.emit(
            inst,
            t,
            org,
            actor,
            "org_user_invite_sent",
            {
                "invited_email": email,
                "invited_rbac_group_ids": [],
                "invited_role": "admin" if admin_role else "user",
                "invited_seat_tier": "standard",
            },
        )
        ip, agent = self.address(), self.agent(None)
        t += int(rng.uniform(5, 120) * MINUTE)
        outsider_id = self.ids.new("user_")
        who = unauthenticated_actor(email, ip, agent)
        self.emit(inst, t, None, who, "magic_link_login_initiated")
        t += int(rng.uniform(20, 120) * US)
        mine = user_actor(email, outsider_id, ip, agent)
        self.emit(
            inst,
            t,
            None,
            mine,
            "magic_link_login_succeeded",
            {"auth_method": "magic_link", "mfa_method": None},
        )
        self.emit(
            inst,
            t + 3 * US,
            org,
            mine,
            "org_user_invite_accepted",
            {"invite_id": self.ids.new("invite_")},
        )
        if admin_role:
            inst.key = invite
            inst.description = f"{email} invited as admin by {admin.email} ({how})"
            return True
        t += int(rng.uniform(2, 30) * MINUTE)
        project = (
            rng.choice(org.shared_projects) if org.shared_projects else self.ids.new("claude_proj_")
        )
        inst.key = self.emit(
            inst,
            t,
            org,
            actor,
            "role_assignment_granted",
            {
                "resource_id": project,
                "resource_type": "project",
                "role": "editor",
                "target_id": outsider_id,
                "target_type": "user",
            },
        )
        self.emit(
            inst,
            t + int(rng.uniform(1, 10) * MINUTE),
            org,
            mine,
            "claude_project_viewed",
            {"claude_project_id": project},
        )
        inst.description = f"project shared with outsider {email} by {admin.email} ({how})"
        return True

    def malicious_mcp_server(self, inst: Instance, t: int) -> bool:
        rng = self.rng
        org = inst.org
        assert org is not None
        found = self.admin_actor(org, t)
        if found is None:
            return False
        admin, actor, how = found
        inst.key = self.harm(inst, t, org, actor, "mcp")
        if rng.random() < 0.5:
            self.emit(
                inst,
                t + int(rng.uniform(1, 5) * MINUTE),
                org,
                actor,
                "integration_user_connected",
                {
                    "integration_type": "mcp",
                    "mcp_server_id": inst.key["mcp_server_id"],
                    "mcp_server_name": inst.key["mcp_server_name"],
                },
            )
        inst.description = (
            f"MCP server {inst.key['mcp_server_name']!r} added by {admin.email} ({how})"
        )
        return True

    def compliance_api_abuse(self, inst: Instance, t: int) -> bool:
        rng = self.rng
        inst.org = None
        roll = rng.random()
        agent = rng.choice(_SCRIPTS)
        if roll < 0.4:
            key, ip, statuses, what = self.ids.new("apikey_"), self.address(), (200,), "unknown key"
        elif roll < 0.7:
            key, ip, statuses = self.ids.new("apikey_"), self.address(), (401, 403)
            what = "denied requests"
        else:
            key = rng.choice(sorted(self.machines.known_keys))
            ip, statuses, what = self.address(cloud=False), (200,), "a known key from a new address"
        for n in range(rng.randint(6, 150) if 200 in statuses else rng.randint(5, 40)):
            t += int(rng.uniform(0.5, 30) * US)
            made = self.emit(
                inst,
                t,
                None,
                api_actor(key, ip, agent),
                "compliance_api_accessed",
                {
                    "request_id": self.ids.new("req_"),
                    "request_method": "GET",
                    "status_code": rng.choice(statuses),
                    "url": _PAGE + (f"&after_id={self.ids.new('activity_')}" if n else ""),
                    "request_body": None,
                },
            )
            if n == 0:
                inst.key = made
        inst.description = f"Compliance API reads: {what} ({ip})"
        return True

    def mass_destruction(self, inst: Instance, t: int) -> bool:
        rng = self.rng
        org = inst.org
        assert org is not None
        members = self.active(org, t)
        if len(members) < 12:
            return False
        victims = rng.sample(members, min(len(members), rng.randint(10, 60)))
        if org.idp is not None and rng.random() < 0.5:
            for n, person in enumerate(victims):
                t += int(rng.uniform(0.2, 4) * US)
                actor = scim_actor(self.ids.new("event_"), org.directory_id, org.idp)
                made = self.emit(
                    inst, t, org, actor, "scim_user_deleted", {"user_id": person.user_id}
                )
                if n == 4:
                    inst.key = made
            inst.description = f"{len(victims)} members deleted over SCIM in minutes"
            return True
        found = self.admin_actor(org, t)
        if found is None:
            return False
        admin, actor, how = found
        for n, person in enumerate(victims):
            t += int(rng.uniform(3, 40) * US)
            made = self.emit(
                inst,
                t,
                org,
                actor,
                "org_user_deleted",
                {"deleted_user_email": person.email, "deleted_user_id": person.user_id},
            )
            if n == 4:
                inst.key = made
        inst.description = f"{len(victims)} members removed by {admin.email} ({how})"
        return True

    def _t(self, activity: Activity) -> int:
        """When an activity of an attack happens."""
        return self._times[activity["id"]]
