"""`match` operators, `when` with the extra JMESPath functions, and templates, each through
a real rule file loaded by the loader and run by the evaluator."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.activity import parse_activity
from engine.detection.evaluator import Evaluator
from engine.detection.rule import Match

MISSING = object()


@pytest.fixture
def evaluate(rules_dir, make_activity):
    """Write a rule with the given `match` / `when` / `title` / `dedup`, load it, and
    evaluate it on one activity built from `fields` (MISSING drops a field)."""
    rules_dir.add_list("admins", ["Ana@Example.com", "root@example.com"])
    rules_dir.add_list("trusted_networks", ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"])

    def run(
        match: dict[str, Any] | None = None,
        *,
        when: str | None = None,
        title: str | None = None,
        dedup: str | None = None,
        **fields: Any,
    ) -> Match | None:
        lines = ["id: t.operator", "name: Operator test", "severity: low"]
        if match is not None:
            lines.append(f"match: {json.dumps(match)}")
        if when is not None:
            lines.append(f"when: {json.dumps(when)}")
        if title is not None:
            lines.append(f"title: {json.dumps(title)}")
        if dedup is not None:
            lines.append(f"dedup: {{key: {json.dumps(dedup)}}}")
        rules_dir.write("rule.yml", "\n".join(lines) + "\n")
        ruleset = rules_dir.load()
        data = make_activity()
        for key, value in fields.items():
            if value is MISSING:
                data.pop(key, None)
            else:
                data[key] = value
        matches, errors = Evaluator(ruleset).evaluate(parse_activity(data))
        assert errors == []
        assert len(matches) <= 1
        return matches[0] if matches else None

    return run


@pytest.fixture
def holds(evaluate):
    """Whether `match: {v: condition}` holds on an activity whose `v` is `value`."""

    def check(condition: Any, value: Any = MISSING, path: str = "v") -> bool:
        return evaluate({path: condition}, v=value) is not None

    return check


# -- every operator ----------------------------------------------------------------------

CASES = [
    # equals, and the scalar shorthand; type-aware
    ({"equals": "a"}, "a", True),
    ({"equals": "a"}, "b", False),
    ({"equals": "a"}, "A", False),
    ("a", "a", True),
    ("a", "b", False),
    (True, True, True),
    (True, 1, False),
    (1, True, False),
    (False, 0, False),
    (0, False, False),
    (1, 1, True),
    (1, 1.0, True),
    ("1", 1, False),
    (1, "1", False),
    ({"equals": False}, False, True),
    # not_equals
    ({"not_equals": "a"}, "b", True),
    ({"not_equals": "a"}, "a", False),
    ({"not_equals": True}, 1, True),
    # in / list = any of
    ({"in": ["a", "b"]}, "b", True),
    ({"in": ["a", "b"]}, "c", False),
    ({"in": [1, 2]}, True, False),
    ({"in": [True]}, 1, False),
    (["a", "b"], "a", True),
    (["a", "b"], "c", False),
    ([1, "x"], 1, True),
    ([1, "x"], "1", False),
    # not_in
    ({"not_in": ["a", "b"]}, "c", True),
    ({"not_in": ["a", "b"]}, "a", False),
    ({"not_in": [1]}, True, True),
    # contains: substring of a string, member of a list
    ({"contains": "dmi"}, "admin", True),
    ({"contains": "dmi"}, "user", False),
    ({"contains": "admin"}, ["user", "admin"], True),
    ({"contains": "admin"}, ["user"], False),
    ({"contains": "adm"}, ["admin"], False),
    ({"contains": 1}, [True, 2], False),
    ({"contains": 1}, [2, 1], True),
    ({"contains": "1"}, 123, False),
    # starts_with / ends_with: strings only
    ({"starts_with": "adm"}, "admin", True),
    ({"starts_with": "adm"}, "user", False),
    ({"starts_with": "1"}, 123, False),
    ({"ends_with": "@example.com"}, "ana@example.com", True),
    ({"ends_with": "@example.com"}, "ana@example.org", False),
    ({"ends_with": "3"}, 123, False),
    # regex: search, not full match
    ({"regex": "min"}, "admin", True),
    ({"regex": "^min"}, "admin", False),
    ({"regex": r"^a.*n$"}, "admin", True),
    ({"regex": "1"}, 1, False),
    # cidr / not_cidr
    ({"cidr": "10.0.0.0/8"}, "10.1.2.3", True),
    ({"cidr": "10.0.0.0/8"}, "11.0.0.1", False),
    ({"cidr": "10.0.0.0/8"}, "not-an-ip", False),
    ({"cidr": ["10.0.0.0/8", "2001:db8::/32"]}, "2001:db8::1", True),
    ({"cidr": ["10.0.0.0/8", "2001:db8::/32"]}, "2001:db9::1", False),
    ({"cidr": "192.0.2.7"}, "192.0.2.7", True),
    ({"not_cidr": "10.0.0.0/8"}, "11.0.0.1", True),
    ({"not_cidr": "10.0.0.0/8"}, "10.1.2.3", False),
    ({"not_cidr": "10.0.0.0/8"}, "not-an-ip", False),
    ({"not_cidr": ["10.0.0.0/8", "192.168.0.0/16"]}, "192.168.1.1", False),
    # exists: true means resolves to a non-null value
    ({"exists": True}, "x", True),
    ({"exists": True}, "", True),
    ({"exists": True}, False, True),
    ({"exists": False}, "x", False),
    ({"exists": False}, False, False),
    # comparisons: numbers with numbers (no booleans), strings with strings
    ({"gt": 5}, 6, True),
    ({"gt": 5}, 5, False),
    ({"gt": 5}, 5.5, True),
    ({"gte": 5}, 5, True),
    ({"gte": 5}, 4, False),
    ({"lt": 5}, 4, True),
    ({"lt": 5}, 5, False),
    ({"lte": 5}, 5, True),
    ({"lte": 5}, 6, False),
    ({"gt": 5}, "6", False),
    ({"lt": 5}, "4", False),
    ({"gt": 0}, True, False),
    ({"gte": 1}, True, False),
    ({"gt": "b"}, 3, False),
    ({"gte": "2026-05-01"}, "2026-05-07", True),
    ({"lt": "2026-05-01"}, "2026-05-07", False),
    # named lists: strings without case, CIDR entries as ranges
    ({"in_list": "admins"}, "ana@example.com", True),
    ({"in_list": "admins"}, "ANA@EXAMPLE.COM", True),
    ({"in_list": "admins"}, "bob@example.com", False),
    ({"in_list": "admins"}, 1, False),
    ({"in_list": "trusted_networks"}, "10.9.8.7", True),
    ({"in_list": "trusted_networks"}, "192.0.2.7", True),
    ({"in_list": "trusted_networks"}, "192.0.2.8", False),
    ({"in_list": "trusted_networks"}, "2001:db8::5", True),
    ({"not_in_list": "admins"}, "bob@example.com", True),
    ({"not_in_list": "admins"}, "Root@Example.com", False),
    ({"not_in_list": "trusted_networks"}, "10.9.8.7", False),
    ({"not_in_list": "trusted_networks"}, "198.51.100.1", True),
    # several operators in one block: all must hold
    ({"starts_with": "a", "ends_with": "n"}, "admin", True),
    ({"starts_with": "a", "ends_with": "n"}, "after", False),
    ({"gte": 1, "lt": 10}, 10, False),
]


@pytest.mark.parametrize(("condition", "value", "expected"), CASES, ids=repr)
def test_operator(holds, condition, value, expected):
    assert holds(condition, value) is expected


# What a missing or null value gives, as docs/architecture.md states it.
MISSING_VALUE = [
    ({"equals": "a"}, False),
    ("a", False),
    ({"not_equals": "a"}, True),
    ({"in": ["a"]}, False),
    (["a", "b"], False),
    ({"not_in": ["a"]}, True),
    ({"contains": "a"}, False),
    ({"starts_with": "a"}, False),
    ({"ends_with": "a"}, False),
    ({"regex": ".*"}, False),
    ({"cidr": "0.0.0.0/0"}, False),
    ({"not_cidr": "10.0.0.0/8"}, False),
    ({"exists": True}, False),
    ({"exists": False}, True),
    ({"gt": 0}, False),
    ({"gte": 0}, False),
    ({"lt": 0}, False),
    ({"lte": 0}, False),
    ({"in_list": "admins"}, False),
    ({"not_in_list": "admins"}, True),
]


@pytest.mark.parametrize(("condition", "expected"), MISSING_VALUE, ids=repr)
@pytest.mark.parametrize("value", [MISSING, None], ids=["missing", "null"])
def test_missing_and_null_values(holds, condition, expected, value):
    assert holds(condition, value) is expected


@pytest.mark.parametrize(
    ("condition", "expected"), [({"equals": "a"}, False), ({"not_equals": "a"}, True)]
)
def test_a_path_through_a_missing_or_non_object_step_is_missing(evaluate, condition, expected):
    assert (evaluate({"actor.missing.deeper": condition}) is not None) is expected
    # `type` is a string: walking into it resolves to nothing
    assert (evaluate({"type.deeper": condition}) is not None) is expected


def test_null_condition_matches_only_missing_or_null(holds):
    assert holds(None, MISSING) is True
    assert holds(None, None) is True
    assert holds(None, "") is False
    assert holds(None, False) is False


def test_every_entry_of_match_must_hold(evaluate):
    match = {"type": "login", "actor.ip_address": {"cidr": "192.0.2.0/24"}}
    assert evaluate(match) is not None
    assert evaluate(match, type="logout") is None
    assert evaluate({**match, "actor.email_address": {"ends_with": "@other.org"}}) is None


def test_jmespath_paths_in_match(evaluate):
    assert evaluate({"tags[0]": "first"}, tags=["first", "second"]) is not None
    assert evaluate({"tags[1]": "first"}, tags=["first", "second"]) is None
    assert evaluate({"length(tags)": 2}, tags=["first", "second"]) is not None
    assert evaluate({"lower(actor.email_address)": "ana@example.com"}) is not None


def test_type_dispatch_still_evaluates_the_other_entries(evaluate):
    assert evaluate({"type": ["login", "logout"], "v": 1}, v=1) is not None
    assert evaluate({"type": ["login", "logout"], "v": 1}, v=2) is None
    assert evaluate({"type": {"in": ["logout"]}}) is None


# -- when ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "fields", "expected"),
    [
        ("cidr_match(actor.ip_address, '192.0.2.0/24')", {}, True),
        ("cidr_match(actor.ip_address, '10.0.0.0/8')", {}, False),
        ("cidr_match(missing, '10.0.0.0/8')", {}, False),
        ("!cidr_match(actor.ip_address, '10.0.0.0/8')", {}, True),
        ("regex_match(actor.email_address, '@example\\.com$')", {}, True),
        ("regex_match(actor.email_address, '^example')", {}, False),
        ("regex_match(missing, '.*')", {}, False),
        ("in_list(actor.email_address, 'admins')", {}, True),
        ("in_list(actor.user_id, 'admins')", {}, False),
        ("in_list(actor.ip_address, 'trusted_networks')", {}, True),
        ("lower(v) == 'ana@example.com'", {"v": "Ana@Example.COM"}, True),
        ("lower(v) == 'Ana@Example.COM'", {"v": "Ana@Example.COM"}, False),
        ("email_domain(actor.email_address) == 'example.com'", {}, True),
        ("email_domain(v) == 'example.com'", {"v": "Ana@EXAMPLE.com"}, True),
        ("email_domain(v) == `null`", {"v": "not-an-email"}, True),
        ("email_domain(v) == `null`", {"v": "a@localhost"}, True),
        ("email_domain(v) == `null`", {"v": "@example.com"}, True),
        ("email_domain(v) == `null`", {"v": 42}, True),
        ("email_domain(v) == `null`", {"v": "a@example.com"}, False),
        ("ip_prefix(v) == '192.0.2.7'", {"v": " 192.0.2.7 "}, True),
        ("ip_prefix(v) == '2001:db8:1:2::/64'", {"v": "2001:db8:1:2:aaaa:bbbb:cccc:dddd"}, True),
        ("ip_prefix(v) == '2001:db8:1:2::/64'", {"v": "2001:DB8:1:2::1"}, True),
        ("ip_prefix(v) == '2001:db8:1:2::/64'", {"v": "2001:db8:1:3::1"}, False),
        ("ip_prefix(v) == '192.0.2.7'", {"v": "::ffff:192.0.2.7"}, True),
        ("ip_prefix(v) == 'not an address'", {"v": "not an address"}, True),
        ("ip_prefix(v) == `null`", {"v": 42}, True),
        ("contains(['owner', 'admin'], v)", {"v": "admin"}, True),
        ("contains(['owner', 'admin'], v)", {"v": "user"}, False),
        # JMESPath truthiness: 0 is true; false, null, "", [], {} are false
        ("v", {"v": 0}, True),
        ("v", {"v": "x"}, True),
        ("v", {"v": False}, False),
        ("v", {"v": None}, False),
        ("v", {"v": ""}, False),
        ("v", {"v": []}, False),
        ("v", {"v": {}}, False),
        ("v", {}, False),
    ],
)
def test_when(evaluate, when, fields, expected):
    assert (evaluate(when=when, **fields) is not None) is expected


def test_match_and_when_must_both_hold(evaluate):
    when = "email_domain(actor.email_address) == 'example.com'"
    assert evaluate({"type": "login"}, when=when) is not None
    assert evaluate({"type": "logout"}, when=when) is None
    assert evaluate({"type": "login"}, when=when, actor={"type": "user_actor"}) is None


# -- templates -------------------------------------------------------------------------


def test_title_template_renders_paths(evaluate):
    found = evaluate(
        {"type": "login"}, title="Login by {actor.email_address} from {actor.ip_address}"
    )
    assert found.title == "Login by ana@example.com from 192.0.2.7"
    # no dedup key given: the rendered title
    assert found.dedup_key == "Login by ana@example.com from 192.0.2.7"


def test_missing_and_null_render_as_none_marker(evaluate):
    found = evaluate(
        {"type": "login"},
        title="{actor.ip_address}|{nope}|{actor.user_agent}",
        actor={"type": "user_actor", "user_agent": None},
    )
    assert found.title == "<none>|<none>|<none>"


def test_double_braces_are_literal(evaluate):
    found = evaluate({"type": "login"}, title="{{literal}} {type} }}{{")
    assert found.title == "{literal} login }{"


def test_non_string_values_render_as_compact_json(evaluate):
    found = evaluate(
        {"type": "login"},
        title="{n}|{f}|{t}|{b}|{tags}|{obj}|{tags[0]}",
        n=5,
        f=1.5,
        t=True,
        b=False,
        tags=["a", "b"],
        obj={"b": 1, "a": [2, None]},
    )
    assert found.title == '5|1.5|true|false|["a","b"]|{"a":[2,null],"b":1}|a'


def test_template_with_functions_and_dedup_key(evaluate):
    found = evaluate(
        {"type": "login"},
        title="{upper_hint}{email_domain(actor.email_address)}",
        dedup="{organization_id}:{actor.user_id}",
        upper_hint="domain ",
    )
    assert found.title == "domain example.com"
    assert found.dedup_key == "org_01:user_01"


def test_default_title_is_the_rule_name(evaluate):
    found = evaluate({"type": "login"})
    assert found.title == "Operator test"
    assert found.dedup_key == "Operator test"
