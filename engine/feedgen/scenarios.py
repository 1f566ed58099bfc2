"""Scenarios: the attacks a rule pack exists for, and the novelties that must pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.feedgen.roster import (
    _ADMIN_API_KEY_ID,
    _ATTACKER_BROWSER,
    _ATTACKER_CURL,
    _ATTACKER_SCRIPT,
    _CHROME_WIN,
    _SCRAPED_CHATS,
    _US,
    UNLISTED_ACTOR_TYPE,
    UNLISTED_TYPE,
    Org,
    _Scheduled,
)

if TYPE_CHECKING:
    from engine.feedgen.background import _Feed

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
