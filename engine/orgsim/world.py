"""The simulated world: organizations, their people, devices and network addresses.

The shape follows how Claude Enterprise customers are actually laid out, not what any rule
looks for:

- **Organizations.** Default three, two of them belonging to one parent company (the
  main org and a research org on the same IdP, about a third of the research people also
  members of the main org with the same account), one independent company. Some orgs
  have two mail domains (an acquired company or subsidiary keeps its own). Each org has a
  time zone (fixed UTC offset; daylight saving is ignored), a sign-in method (SAML SSO via
  an IdP with SCIM provisioning, or magic link plus Google sign-in), one owner, a handful
  of admins (about 3% of members, at least two) and members.
- **People.** Names from a varied list, `first.last@domain` (or `flast@` where the
  company uses that), a stable `user_...` id, a per-person activity level drawn from a
  log-normal (heavy users exist: the top tenth do about four times the median), a work
  pattern (about 45% hybrid in the office 2–3 fixed weekdays, 15% always in the office,
  40% remote), about 12% engineers who also use the CLI/SDK and console keys, and about
  8% who work from another time zone than their org.
- **Devices.** Everyone has a browser (Chrome on macOS or Windows dominates, then Edge,
  Safari, Firefox); about 45% the desktop app; about 35% the mobile app; engineers a CLI.
  Browsers and apps update on their real cadence (Chrome every four weeks, each person a
  few days behind), so a person's user agent changes a dozen times a year.
- **Addresses** (documentation ranges only, for people and attackers alike):

  | block | used for |
  |---|---|
  | 198.51.100.0/26 | office NAT egress, one or two per office, shared by everyone there |
  | 198.51.100.64/26 | corporate VPN egress, shared by everyone on the VPN |
  | 198.51.100.128/26 | cloud providers: SIEM pollers, automation, attackers' servers |
  | 198.51.100.192/26 | mobile carriers' IPv4 CGNAT |
  | 192.0.2.0/24 | home broadband IPv4 (CGNAT, so strangers share addresses) |
  | 203.0.113.0/25 | hotels, airports, conference and café Wi-Fi |
  | 203.0.113.128/25 | commercial VPN services' exits |
  | 2001:db8:1000::/36 | home broadband IPv6 (a /64 per household) |
  | 2001:db8:c000::/36 | mobile carrier IPv6 (a new address most days) |

  Half the IPv6 households use privacy extensions, so their address changes daily; an
  IPv4 home address is reassigned about every two months; about a quarter of people use
  a commercial VPN now and then.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from engine.orgsim.wire import Ids

PERSONAL_DOMAINS = ("gmail.com", "outlook.com", "icloud.com", "proton.me", "yahoo.com")


@dataclass(frozen=True, slots=True)
class OrgTemplate:
    name: str
    parent: str
    domains: tuple[str, ...]
    tz_minutes: int
    sign_in: str  # "sso" or "magic_link"
    idp: str | None  # SCIM/SSO connection type, None without an IdP
    email_style: str  # "first.last" or "flast"
    partners: tuple[str, ...]
    share: float  # share of the people


_TEMPLATES = (
    OrgTemplate(
        "Northwind Traders",
        "Northwind",
        ("northwind.example", "northwind-labs.example"),
        -300,
        "sso",
        "OktaSAML",
        "first.last",
        ("brightlane-consulting.example", "kestrelpartners.example", "quillfield-law.example"),
        0.5,
    ),
    OrgTemplate(
        "Northwind Research",
        "Northwind",
        ("northwind.example",),
        -300,
        "sso",
        "OktaSAML",
        "first.last",
        ("brightlane-consulting.example", "univ-lakeside.example"),
        0.15,
    ),
    OrgTemplate(
        "Fabrikam",
        "Fabrikam",
        ("fabrikam.example", "tailspin.example"),
        60,
        "magic_link",
        None,
        "flast",
        ("meridian-agency.example", "harbourview-audit.example"),
        0.35,
    ),
    OrgTemplate(
        "Alpine Ski House",
        "Alpine Ski House",
        ("alpineskihouse.example",),
        -480,
        "sso",
        "AzureSAML",
        "first.last",
        ("summitworks.example",),
        0.3,
    ),
    OrgTemplate(
        "Woodgrove Bank",
        "Woodgrove",
        ("woodgrove.example", "woodgrove-capital.example"),
        0,
        "sso",
        "AzureSAML",
        "first.last",
        ("ledgerline-audit.example", "brightlane-consulting.example"),
        0.4,
    ),
    OrgTemplate(
        "Coho Vineyard",
        "Coho",
        ("cohovineyard.example",),
        600,
        "magic_link",
        None,
        "flast",
        ("grapevine-design.example",),
        0.15,
    ),
)

FIRST_NAMES = [
    "Aisha",
    "Akira",
    "Alejandro",
    "Amara",
    "Ana",
    "Anders",
    "Arjun",
    "Beatriz",
    "Ben",
    "Bilal",
    "Carlos",
    "Chen",
    "Chiara",
    "Chloe",
    "Daniel",
    "Dmitri",
    "Elena",
    "Elif",
    "Emeka",
    "Emma",
    "Fatima",
    "Felix",
    "Freya",
    "Gabriel",
    "Grace",
    "Hana",
    "Hannah",
    "Hiro",
    "Ines",
    "Isaac",
    "Ivan",
    "Jae",
    "James",
    "Jana",
    "Javier",
    "Jin",
    "Joao",
    "Jonas",
    "Julia",
    "Kai",
    "Kavya",
    "Kenji",
    "Lars",
    "Laura",
    "Layla",
    "Lea",
    "Leon",
    "Lucas",
    "Lucia",
    "Maria",
    "Marco",
    "Mateo",
    "Maya",
    "Mei",
    "Mohammed",
    "Nadia",
    "Naomi",
    "Nikhil",
    "Nina",
    "Noah",
    "Olga",
    "Omar",
    "Oscar",
    "Paula",
    "Pedro",
    "Priya",
    "Rafael",
    "Rahul",
    "Rosa",
    "Ruth",
    "Sam",
    "Sara",
    "Sean",
    "Sofia",
    "Sven",
    "Tariq",
    "Thomas",
    "Tomas",
    "Valentina",
    "Victor",
    "Wei",
    "Yara",
    "Yusuf",
    "Zara",
    "Zoe",
]
LAST_NAMES = [
    "Abbott",
    "Adeyemi",
    "Alvarez",
    "Andersen",
    "Bauer",
    "Becker",
    "Bianchi",
    "Brennan",
    "Chen",
    "Costa",
    "Dubois",
    "Dias",
    "Eriksson",
    "Fischer",
    "Garcia",
    "Gupta",
    "Haddad",
    "Hansen",
    "Hoffmann",
    "Ibrahim",
    "Ito",
    "Jansen",
    "Johnson",
    "Kaur",
    "Kim",
    "Kowalski",
    "Kumar",
    "Larsen",
    "Lee",
    "Lopez",
    "Martin",
    "Meyer",
    "Moreau",
    "Murphy",
    "Nakamura",
    "Nguyen",
    "Novak",
    "Okafor",
    "Olsen",
    "Park",
    "Patel",
    "Perez",
    "Petrov",
    "Quinn",
    "Raman",
    "Reyes",
    "Rossi",
    "Santos",
    "Sato",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Suzuki",
    "Tanaka",
    "Taylor",
    "Ueda",
    "Vargas",
    "Walsh",
    "Weber",
    "Wright",
    "Xu",
    "Yamamoto",
    "Zhang",
]

# Browser share among business users (desktop): Chrome well ahead, then Edge, Safari,
# Firefox; the kind names index the user-agent templates below.
_BROWSERS = (
    ("chrome_mac", 0.34),
    ("chrome_win", 0.26),
    ("edge_win", 0.16),
    ("safari_mac", 0.14),
    ("firefox_win", 0.05),
    ("firefox_linux", 0.05),
)

DEFAULT_EPOCH_DAY = 20577  # 2026-05-04 in days since 1970: the versions below are of then


def user_agent(kind: str, day: int, lag: int) -> str:
    """The user agent of a device `kind` on epoch `day`, updated `lag` days late.

    Chrome and Edge ship a major version every four weeks, Firefox too, Safari twice a
    year, the Claude apps weekly; 2026-05-04 is taken as Chrome 138, Firefox 140."""
    age = max(0, day - lag - DEFAULT_EPOCH_DAY)
    four_weeks = age // 28
    if kind in ("chrome_mac", "chrome_win", "edge_win"):
        v = 138 + four_weeks
        os_part = (
            "Macintosh; Intel Mac OS X 10_15_7"
            if kind == "chrome_mac"
            else "Windows NT 10.0; Win64; x64"
        )
        ua = (
            f"Mozilla/5.0 ({os_part}) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{v}.0.0.0 Safari/537.36"
        )
        return (
            ua + f" Edg/{v}.0.{3351 + 40 * four_weeks}.{55 + age % 28}"
            if kind == "edge_win"
            else ua
        )
    if kind == "safari_mac":
        version = "18.5" if age < 130 else "26.0"
        return (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
            f"(KHTML, like Gecko) Version/{version} Safari/605.1.15"
        )
    if kind in ("firefox_win", "firefox_linux"):
        v = 140 + four_weeks
        os_part = "Windows NT 10.0; Win64; x64" if kind == "firefox_win" else "X11; Linux x86_64"
        return f"Mozilla/5.0 ({os_part}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"
    week = age // 7
    if kind == "desktop_mac":
        return f"Claude/0.{12 + week // 6}.{(week * 7) % 40} (darwin; arm64) Electron/36.4.0"
    if kind == "desktop_win":
        return f"Claude/0.{12 + week // 6}.{(week * 7) % 40} (win32; x64) Electron/36.4.0"
    if kind == "ios":
        return f"Claude/1.{250616 + week * 7}.0 CFNetwork/3826.500.131 Darwin/24.5.0"
    if kind == "android":
        return f"Claude/1.{250616 + week * 7}.0 (Android 15; Pixel 8)"
    if kind == "cli":
        return f"claude-cli/2.0.{14 + week} (external, cli)"
    raise ValueError(kind)


@dataclass(slots=True, eq=False)
class Org:
    """One Claude organization and the network it owns."""

    id: str
    uuid: str
    name: str
    parent: str
    domains: tuple[str, ...]
    tz_minutes: int
    sign_in: str
    idp: str | None
    email_style: str
    partners: tuple[str, ...]
    directory_id: str
    sso_connection_id: str
    offices: list[str]  # office NAT egress addresses
    vpn: list[str]  # corporate VPN egress addresses
    automation_ip: str  # where the org's admin-API automation runs
    automation_key: str  # the admin API key that automation uses
    people: list[Person] = field(default_factory=list)
    admins: list[Person] = field(default_factory=list)
    owner: Person | None = None
    mcp_servers: list[tuple[str, str]] = field(default_factory=list)
    admin_keys: list[str] = field(default_factory=list)
    workspaces: list[str] = field(default_factory=list)
    spend_limits: list[str] = field(default_factory=list)
    shared_projects: list[str] = field(default_factory=list)
    pending_invites: int = 0


@dataclass(slots=True, eq=False)
class Person:
    """One person and their habits; `roles` maps org id to role in that org."""

    user_id: str
    email: str
    name: str
    home_org: Org
    roles: dict[str, str]
    orgs: list[Org]
    tz_minutes: int
    level: float  # relative activity (median 1)
    pattern: str  # "hybrid", "office" or "remote"
    office_days: frozenset[int]  # weekdays 0..6 in the office
    office_ip: str
    browser: str
    extra_devices: list[str]  # desktop_*, ios/android, cli
    lag: int  # days behind on updates
    home_ip: str  # the household's current address (IPv4, or IPv6 without privacy ext.)
    home_prefix6: str | None  # household /64, None for IPv4 homes
    privacy6: bool  # IPv6 privacy extensions: a new address daily
    carrier_prefix: str
    uses_vpn: float  # share of remote days on the corporate VPN
    commercial_vpn: bool
    engineer: bool
    active_from: int = 0  # epoch microseconds
    active_until: int = 1 << 62
    trip_until_day: int = -1
    trip_ip: str = ""
    seen: set[str] = field(default_factory=set)  # every address this person acted from
    chats: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)

    def role(self, org: Org) -> str:
        return self.roles.get(org.id, "user")

    @property
    def domain(self) -> str:
        return self.email.rsplit("@", 1)[1]


def ipv6(prefix: str, rng: random.Random) -> str:
    """A random interface id in a /64 `prefix` written like `2001:db8:1a2b:c3d4`."""
    b = rng.getrandbits(64)
    return f"{prefix}:{b >> 48:x}:{(b >> 32) & 0xFFFF:x}:{(b >> 16) & 0xFFFF:x}:{b & 0xFFFF:x}"


def home_prefix6(rng: random.Random) -> str:
    return f"2001:db8:{0x1000 + rng.getrandbits(12):x}:{rng.getrandbits(16):x}"


def carrier_prefix6(rng: random.Random) -> str:
    return f"2001:db8:{0xC000 + rng.getrandbits(12):x}:{rng.getrandbits(16):x}"


def home_ip4(rng: random.Random) -> str:
    return f"192.0.2.{rng.randrange(1, 255)}"


def hotel_ip(rng: random.Random) -> str:
    return f"203.0.113.{rng.randrange(1, 127)}"


def commercial_vpn_ip(rng: random.Random) -> str:
    return f"203.0.113.{rng.randrange(129, 255)}"


def cloud_ip(rng: random.Random) -> str:
    return f"198.51.100.{rng.randrange(129, 191)}"


def carrier_ip4(rng: random.Random) -> str:
    return f"198.51.100.{rng.randrange(193, 255)}"


class World:
    """The organizations and people, built once from the seed."""

    def __init__(self, rng: random.Random, ids: Ids, orgs: int = 3, people: int = 200) -> None:
        self.rng = rng
        self.ids = ids
        self.orgs: list[Org] = []
        self.people: list[Person] = []
        self._emails: set[str] = set()
        self._office_next = 1
        self._vpn_next = 65
        for index in range(orgs):
            self.orgs.append(self._org(index))
        templates = [self._template(i) for i in range(orgs)]
        total_share = sum(t.share for t in templates)
        for org, template in zip(self.orgs, templates, strict=True):
            count = max(3, round(people * template.share / total_share))
            for _ in range(count):
                self.add_person(org, 0)
            self._appoint(org)
        self._share_members()

    # -- organizations ----------------------------------------------------------------

    def _template(self, index: int) -> OrgTemplate:
        if index < len(_TEMPLATES):
            return _TEMPLATES[index]
        base = _TEMPLATES[index % len(_TEMPLATES)]
        n = index // len(_TEMPLATES) + 1
        stem = base.domains[0].split(".")[0]
        return OrgTemplate(
            f"{base.name} {n}",
            f"{base.parent} {n}",
            (f"{stem}{n}.example",),
            base.tz_minutes,
            base.sign_in,
            base.idp,
            base.email_style,
            base.partners,
            base.share,
        )

    def _org(self, index: int) -> Org:
        rng, ids = self.rng, self.ids
        t = self._template(index)
        same_parent = [o for o in self.orgs if o.parent == t.parent]
        offices = []
        for _ in range(1 if same_parent else rng.randint(1, 3)):
            offices.append(f"198.51.100.{self._office_next % 63 + 1}")
            self._office_next += 1
        vpn = []
        for _ in range(rng.randint(2, 3)):
            vpn.append(f"198.51.100.{64 + self._vpn_next % 63}")
            self._vpn_next += 1
        if same_parent:  # one company: one network, one IdP directory
            sibling = same_parent[0]
            offices, vpn = sibling.offices[:1], sibling.vpn
        return Org(
            id=ids.new("org_"),
            uuid=ids.uuid(),
            name=t.name,
            parent=t.parent,
            domains=t.domains,
            tz_minutes=t.tz_minutes,
            sign_in=t.sign_in,
            idp=t.idp,
            email_style=t.email_style,
            partners=t.partners,
            directory_id=same_parent[0].directory_id if same_parent else ids.new("directory_"),
            sso_connection_id=ids.new("conn_"),
            offices=offices,
            vpn=vpn,
            automation_ip=cloud_ip(rng),
            automation_key=ids.new("apikey_"),
            mcp_servers=[],
            admin_keys=[ids.new("apikey_") for _ in range(rng.randint(1, 3))],
            workspaces=[ids.new("wrkspc_") for _ in range(rng.randint(2, 5))],
            spend_limits=[ids.new("spendlim_") for _ in range(rng.randint(1, 3))],
        )

    # -- people -------------------------------------------------------------------------

    def _address(self, org: Org, first: str, last: str, domain: str) -> str:
        local = (
            f"{first}.{last}" if org.email_style == "first.last" else f"{first[0]}{last}"
        ).lower()
        return self.unique(f"{local}@{domain}")

    def unique(self, email: str) -> str:
        """`email`, or with a number after the local part when someone already has it."""
        local, domain = email.split("@", 1)
        n = 1
        while email in self._emails:
            n += 1
            email = f"{local}{n}@{domain}"
        self._emails.add(email)
        return email

    def add_person(
        self,
        org: Org,
        active_from: int,
        email: str | None = None,
        role: str = "user",
    ) -> Person:
        """A new person in `org` (a founding member, or a hire, guest or contractor who
        joins at `active_from`); `email` is given for invited outsiders."""
        rng = self.rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        if email is None:
            # The acquired company's people keep their old domain.
            domain = org.domains[0]
            if len(org.domains) > 1 and rng.random() < 0.25:
                domain = org.domains[1]
            email = self._address(org, first, last, domain)
        else:
            self._emails.add(email)
        pattern_roll = rng.random()
        pattern = "hybrid" if pattern_roll < 0.45 else "office" if pattern_roll < 0.6 else "remote"
        if pattern == "hybrid":
            office_days = frozenset(rng.sample((0, 1, 2, 3, 4), rng.choice((2, 2, 3))))
        elif pattern == "office":
            office_days = frozenset((0, 1, 2, 3, 4))
        else:
            office_days = frozenset()
        roll, browser = rng.random(), _BROWSERS[0][0]
        for kind, share in _BROWSERS:
            roll -= share
            if roll < 0:
                browser = kind
                break
        mac = browser in ("chrome_mac", "safari_mac")
        engineer = rng.random() < 0.12
        extra: list[str] = []
        if rng.random() < 0.45:
            extra.append("desktop_mac" if mac else "desktop_win")
        if rng.random() < 0.35:
            extra.append("ios" if rng.random() < 0.55 else "android")
        if engineer:
            extra.append("cli")
        v6 = rng.random() < 0.55
        prefix = home_prefix6(rng) if v6 else None
        tz = org.tz_minutes if rng.random() > 0.08 else org.tz_minutes + rng.choice((-360, 360))
        person = Person(
            user_id=self.ids.new("user_"),
            email=email,
            name=f"{first} {last}",
            home_org=org,
            roles={org.id: role},
            orgs=[org],
            tz_minutes=tz,
            level=min(8.0, rng.lognormvariate(0.0, 0.8)),
            pattern=pattern,
            office_days=office_days,
            office_ip=rng.choice(org.offices),
            browser=browser,
            extra_devices=extra,
            lag=rng.randrange(0, 12),
            home_ip=ipv6(prefix, rng) if prefix else home_ip4(rng),
            home_prefix6=prefix,
            privacy6=v6 and rng.random() < 0.5,
            carrier_prefix=carrier_prefix6(rng),
            uses_vpn=rng.choice((0.0, 0.0, 0.3, 0.7, 1.0)),
            commercial_vpn=rng.random() < 0.25,
            engineer=engineer,
            active_from=active_from,
        )
        org.people.append(person)
        self.people.append(person)
        return person

    def _appoint(self, org: Org) -> None:
        """One owner and about 3% admins (at least two), chosen among the first members."""
        members = org.people
        count = max(2, round(len(members) * 0.03))
        chosen = self.rng.sample(members, min(len(members), count + 1))
        org.owner = chosen[0]
        chosen[0].roles[org.id] = "owner"
        for admin in chosen[1:]:
            admin.roles[org.id] = "admin"
        org.admins = chosen[:]

    def _share_members(self) -> None:
        """About a third of a sibling org's people are also members of the parent's main
        org (same account, same user id): research staff who also work in the main org."""
        by_parent: dict[str, list[Org]] = {}
        for org in self.orgs:
            by_parent.setdefault(org.parent, []).append(org)
        for siblings in by_parent.values():
            main = siblings[0]
            for other in siblings[1:]:
                for person in list(other.people):
                    if person.roles[other.id] == "user" and self.rng.random() < 0.33:
                        person.roles[main.id] = "user"
                        person.orgs.append(main)
                        main.people.append(person)
                # and a few of the main org's people are members of the sibling
                for person in self.rng.sample(main.people, max(1, len(main.people) // 15)):
                    if other not in person.orgs:
                        person.roles[other.id] = "user"
                        person.orgs.append(other)
                        other.people.append(person)
                # the main org's owner administers the sibling too
                if main.owner is not None and other not in main.owner.orgs:
                    main.owner.roles[other.id] = "admin"
                    main.owner.orgs.append(other)
                    other.people.append(main.owner)
                    other.admins.append(main.owner)
