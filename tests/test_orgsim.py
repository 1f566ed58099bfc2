"""The organization simulator: determinism, wire shape, labels and a realistic mix."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from engine.activity import parse_activity
from engine.cli import main
from engine.orgsim import Simulation, write_jsonl
from engine.orgsim.attacks import KINDS

# The API reference kept beside the checkout (`../shared`), where there is one.
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "activity-types.txt"
SIGN_IN_FAMILY = {
    "sso_login_initiated",
    "sso_login_succeeded",
    "sso_login_failed",
    "magic_link_login_initiated",
    "magic_link_login_succeeded",
    "magic_link_login_failed",
    "social_login_succeeded",
    "user_logged_out",
    "session_revoked",
    "compliance_api_accessed",
}
# The person's account, not an org: the simulator writes these without an org too.
ACCOUNT_LEVEL = {
    "trusted_device_enrolled",
    "step_up_authentication_succeeded",
    "step_up_authentication_failed",
}
ACTOR_TYPES = {
    "user_actor",
    "api_actor",
    "admin_api_key_actor",
    "unauthenticated_user_actor",
    "anthropic_actor",
    "system_actor",
    "service_account_actor",
    "scim_directory_sync_actor",
    "federated_identity_actor",
    "federated_actor",
    "attested_device_actor",
}
PERSONAL_WORK = (
    "claude_chat_",
    "claude_file_",
    "claude_project_",
    "claude_artifact_",
    "claude_code_",
    "integration_user_",
    "api_key_created",
    "scoped_api_key_",
)
ADMIN_TYPES = {
    "org_user_invite_sent",
    "org_user_deleted",
    "claude_user_role_updated",
    "admin_api_key_created",
    "mcp_server_created",
    "org_sso_toggled",
    "org_data_export_started",
    "org_members_exported",
    "claude_organization_settings_updated",
    "rbac_role_assigned",
    "role_assignment_granted",
}


def _feed(count: int, seed: int = 5, attacks: int = 0) -> tuple[list[dict[str, Any]], list]:
    sim = Simulation(count, seed=seed, attacks=attacks)
    activities = [json.loads(json.dumps(a)) for a in sim]
    return activities, sim.labels()


@pytest.fixture(scope="module")
def attacked() -> tuple[list[dict[str, Any]], list]:
    return _feed(60_000, attacks=40)


@pytest.fixture(scope="module")
def benign() -> list[dict[str, Any]]:
    return _feed(60_000)[0]


def test_same_arguments_same_bytes(tmp_path: Path) -> None:
    paths = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.jsonl.gz"
        write_jsonl(path, iter(Simulation(5_000, seed=9, attacks=5)))
        paths.append(path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    other = tmp_path / "c.jsonl.gz"
    write_jsonl(other, iter(Simulation(5_000, seed=10, attacks=5)))
    assert other.read_bytes() != paths[0].read_bytes()
    assert len(gzip.decompress(paths[0].read_bytes()).splitlines()) == 5_000


def test_every_activity_parses_and_is_in_order(attacked: tuple) -> None:
    activities, _ = attacked
    assert len(activities) == 60_000
    previous = None
    for activity in activities:
        record = parse_activity(activity)
        assert previous is None or record.created_at >= previous
        previous = record.created_at
        assert activity["actor"]["type"] in ACTOR_TYPES
        assert list(activity)[:6] == [
            "id",
            "created_at",
            "organization_id",
            "organization_uuid",
            "actor",
            "type",
        ]
    assert len({a["id"] for a in activities}) == len(activities)


def test_types_are_the_reference_ones(attacked: tuple) -> None:
    if not REFERENCE.is_file():
        pytest.skip("reference list not available")
    known = set(REFERENCE.read_text().split())
    assert {a["type"] for a in attacked[0]} <= known


def test_replay_reads_everything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    feed = tmp_path / "feed.jsonl"
    write_jsonl(feed, iter(Simulation(8_000, seed=2, attacks=8)))
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "trivial.yml").write_text(
        "id: test.trivial\nname: trivial\nseverity: info\nmatch:\n  type: no_such_type\n"
    )
    code = main(["replay", str(feed), "--rules", str(rules), "--no-quarantine", "--processes", "1"])
    assert code == 0
    assert "8000 activities read · 0 rejected" in capsys.readouterr().err


def test_labels_point_into_the_feed(attacked: tuple) -> None:
    activities, labels = attacked
    by_id = {a["id"]: a for a in activities}
    assert len(labels) == 40
    assert {label["kind"] for label in labels} == set(KINDS)
    seen: set[str] = set()
    for label in labels:
        assert set(label) == {
            "instance",
            "kind",
            "organization_id",
            "activity_ids",
            "key_activity_id",
            "started_at",
            "description",
        }
        ids = label["activity_ids"]
        assert ids and all(i in by_id for i in ids)
        assert not seen & set(ids)
        seen |= set(ids)
        assert label["key_activity_id"] in ids
        assert label["started_at"] == by_id[ids[0]]["created_at"]
        assert min(by_id[i]["created_at"] for i in ids) == label["started_at"]
        orgs = {by_id[i]["organization_id"] for i in ids} - {None}
        assert orgs <= {label["organization_id"]}
        assert label["description"]
    takeovers = [x for x in labels if x["kind"] == "admin_account_takeover"]
    for label in takeovers:
        key = by_id[label["key_activity_id"]]
        assert key["type"] in ("sso_login_succeeded", "magic_link_login_succeeded")
        earlier = {
            a["actor"].get("ip_address")
            for a in activities
            if a["actor"].get("user_id") == key["actor"]["user_id"]
            and a["created_at"] < key["created_at"]
        }
        assert key["actor"]["ip_address"] not in earlier


def test_takeover_gets_the_larger_share() -> None:
    sim = Simulation(20_000, seed=1, attacks=200)
    for _ in sim:
        pass
    kinds = Counter(label["kind"] for label in sim.labels())
    assert kinds["admin_account_takeover"] >= 20
    assert kinds["admin_account_takeover"] > 2 * max(
        v for k, v in kinds.items() if k != "admin_account_takeover"
    )


def test_attacks_leave_the_ordinary_traffic_alone(attacked: tuple, benign: list) -> None:
    activities, labels = attacked
    attack_ids = {i for label in labels for i in label["activity_ids"]}
    assert not attack_ids & {a["id"] for a in benign}
    ordinary = [a for a in activities if a["id"] not in attack_ids]
    assert ordinary == benign[: len(ordinary)]


def test_sign_ins_and_api_calls_carry_no_org(benign: list) -> None:
    for activity in benign:
        if activity["type"] in SIGN_IN_FAMILY:
            assert activity["organization_id"] is None
            assert activity["organization_uuid"] is None
        elif activity["type"] in ACCOUNT_LEVEL:
            continue
        elif activity["actor"]["type"] == "user_actor":
            assert activity["organization_id"] is not None


def test_realistic_mix(benign: list) -> None:
    kinds = Counter(a["type"] for a in benign)
    # administration: what people do that is neither their own content nor signing in
    admin = [
        a
        for a in benign
        if a["actor"]["type"] == "user_actor"
        and not a["type"].startswith(PERSONAL_WORK)
        and a["type"] not in SIGN_IN_FAMILY | ACCOUNT_LEVEL
    ]
    assert 0.0005 < len(admin) / len(benign) < 0.02
    assert sum(kinds[k] for k in ADMIN_TYPES) >= 5
    assert kinds["claude_chat_viewed"] > kinds["claude_chat_created"] > kinds["sso_login_succeeded"]
    assert 0.03 < kinds["compliance_api_accessed"] / len(benign) < 0.25
    failures = kinds["sso_login_failed"] + kinds["magic_link_login_failed"]
    attempts = kinds["sso_login_initiated"] + kinds["magic_link_login_initiated"]
    assert 0.01 < failures / attempts < 0.2
    # people work from several addresses; offices and VPNs are shared by many
    addresses: dict[str, set[str]] = defaultdict(set)
    users_at: dict[str, set[str]] = defaultdict(set)
    for a in benign:
        actor = a["actor"]
        if actor["type"] == "user_actor":
            addresses[actor["user_id"]].add(actor["ip_address"])
            users_at[actor["ip_address"]].add(actor["user_id"])
    several = sum(1 for ips in addresses.values() if len(ips) >= 2)
    assert several / len(addresses) > 0.6
    assert max(len(u) for u in users_at.values()) >= 20
    # weekends are thin
    by_day = Counter(a["created_at"][:10] for a in benign)
    weekday = [n for d, n in by_day.items() if datetime.fromisoformat(d).weekday() < 5]
    weekend = [n for d, n in by_day.items() if datetime.fromisoformat(d).weekday() >= 5]
    assert weekend and max(weekend) < 0.35 * min(weekday[1:-1] or weekday)
    # addresses are documentation ranges only, org domains invented under .example
    for ip in users_at:
        assert ip.startswith(("192.0.2.", "198.51.100.", "203.0.113.", "2001:db8:"))
    assert not any(
        a["actor"].get("email_address", "").endswith(("example.com", "example.net"))
        for a in benign
        if a["actor"].get("email_address")
    )


def test_invitations_are_mostly_corporate_one_in_ten_personal() -> None:
    sim = Simulation(10, seed=4)
    org = sim.world.orgs[0]
    kinds = Counter(sim.admin.invitee(org)[0] for _ in range(4000))
    assert 0.08 < kinds["personal"] / 4000 < 0.12
    assert 0.12 < kinds["partner"] / 4000 < 0.18


def test_invitations_in_the_feed(benign: list) -> None:
    invites = [a for a in benign if a["type"] == "org_user_invite_sent"]
    assert invites
    assert all(a["actor"]["type"] == "user_actor" for a in invites)
    assert any(a["type"] == "org_user_invite_accepted" for a in benign)


def test_world_shape() -> None:
    sim = Simulation(10, seed=3)
    world = sim.world
    assert len(world.orgs) == 3
    assert 190 <= len(world.people) <= 210
    assert any(len(org.domains) == 2 for org in world.orgs)
    assert any(len(p.orgs) == 2 for p in world.people)
    for org in world.orgs:
        roles = Counter(p.role(org) for p in org.people)
        assert roles["owner"] <= 1 and 2 <= roles["admin"] + roles["owner"] <= 12
        assert not any(d.endswith(("example.com", "example.net")) for d in org.domains)
    bigger = Simulation(10, seed=3, orgs=5, people=500).world
    assert len(bigger.orgs) == 5 and 480 <= len(bigger.people) <= 520


def test_simulate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, labels = tmp_path / "feed.jsonl", tmp_path / "labels.jsonl"
    args = ["simulate", "--activities", "3000", "--seed", "4", "--out", str(out)]
    assert main([*args, "--attacks", "6", "--labels", str(labels)]) == 0
    assert "wrote 3000 activities" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 3000
    assert 1 <= len(labels.read_text().splitlines()) <= 6
    assert main([*args, "--no-attacks", "--labels", str(labels)]) == 0
    assert labels.read_text() == ""
    assert main([*args, "--start", "2026-09-01T09:00:00Z"]) == 0
    first = json.loads(out.read_text().splitlines()[0])
    assert first["created_at"] >= "2026-09-01T09:00:00"
    with pytest.raises(SystemExit):
        main([*args, "--attacks", "3", "--no-attacks"])
