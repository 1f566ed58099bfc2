"""The activity model (validation at the edge, everything else verbatim) and the read-only
`Event` view Python rules receive."""

from __future__ import annotations

import copy
import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from engine.activity import Activity, ActivityRecord, Event, parse_activity, try_parse_activity
from engine.detection.functions import NamedList, NamedLists, make_options

BASE = {
    "id": "activity_01",
    "created_at": "2026-05-07T10:00:00Z",
    "type": "org_sso_toggled",
    "actor": {"type": "user_actor"},
}


def with_fields(**changes):
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


# -- required fields -------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["id", "created_at", "type", "actor"])
def test_each_required_field_is_required(missing):
    data = copy.deepcopy(BASE)
    del data[missing]
    with pytest.raises(ValidationError) as info:
        parse_activity(data)
    assert [err["loc"] for err in info.value.errors()] == [(missing,)]


def test_actor_type_is_required():
    data = with_fields(actor={"email_address": "ana@example.com"})
    with pytest.raises(ValidationError) as info:
        parse_activity(data)
    assert [err["loc"] for err in info.value.errors()] == [("actor", "type")]


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"id": ""}, ("id",)),
        ({"type": ""}, ("type",)),
        ({"actor": {"type": ""}}, ("actor", "type")),
    ],
)
def test_required_text_must_not_be_empty(changes, loc):
    with pytest.raises(ValidationError) as info:
        parse_activity(with_fields(**changes))
    assert [err["loc"] for err in info.value.errors()] == [loc]


def test_a_value_that_is_not_an_object_is_refused():
    with pytest.raises(TypeError, match="must be a JSON object, not list"):
        parse_activity([BASE])


# -- created_at ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-07T10:00:00Z", datetime(2026, 5, 7, 10, 0, 0, tzinfo=UTC)),
        ("2026-05-07T12:00:00+02:00", datetime(2026, 5, 7, 10, 0, 0, tzinfo=UTC)),
        ("2026-05-07T04:30:00-05:30", datetime(2026, 5, 7, 10, 0, 0, tzinfo=UTC)),
        ("2026-05-07T10:00:00.000538Z", datetime(2026, 5, 7, 10, 0, 0, 538, tzinfo=UTC)),
        ("2026-05-07T10:00:00.5Z", datetime(2026, 5, 7, 10, 0, 0, 500000, tzinfo=UTC)),
        # nanoseconds: truncated (not rounded) to microseconds
        ("2026-05-07T10:00:00.123456789Z", datetime(2026, 5, 7, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2026-05-07T10:00:59.999999999Z", datetime(2026, 5, 7, 10, 0, 59, 999999, tzinfo=UTC)),
        (
            "2026-05-07T12:00:00.123456789+02:00",
            datetime(2026, 5, 7, 10, 0, 0, 123456, tzinfo=UTC),
        ),
    ],
)
def test_created_at_forms(text, expected):
    activity = parse_activity(with_fields(created_at=text))
    assert activity.created_at == expected
    assert activity.created_at.utcoffset() == timedelta(0)
    # the original text is kept verbatim, nanoseconds and offset included
    assert activity.raw["created_at"] == text


@pytest.mark.parametrize(
    "value",
    [
        "2026-05-07T10:00:00",
        "2026-05-07T10:00:00.123456789",
        "2026-05-07",
        "10:00:00Z",
        "yesterday",
        1778148000,
        None,
        # ISO 8601 forms `datetime.fromisoformat` reads but RFC 3339 does not allow
        "2026-W19-4T10:00:00.000538Z",
        "2026-05-07T10:00.000538000Z",
        "2026-05-07T100000.000538000Z",
        "2026-05-07X10:00:00.000538Z",
        "2026-05-07T10:00:00,000538Z",
        "2026-05-07T10:00,00Z",
        # a trailing newline
        "2026-05-07T10:00:00Z\n",
        "2026-05-07T10:00:00+02:00\n",
    ],
)
def test_created_at_without_a_zone_or_not_a_timestamp_is_refused(value):
    with pytest.raises(ValidationError) as info:
        parse_activity(with_fields(created_at=value))
    assert [err["loc"] for err in info.value.errors()] == [("created_at",)]


def test_created_at_of_an_aware_datetime_is_normalised_to_utc():
    plus_two = timezone(timedelta(hours=2))
    activity = parse_activity(with_fields(created_at=datetime(2026, 5, 7, 12, tzinfo=plus_two)))
    assert activity.created_at == datetime(2026, 5, 7, 10, tzinfo=UTC)
    assert activity.created_at.tzinfo == UTC


# -- everything unknown flows through ----------------------------------------------------


def test_unknown_types_actor_types_and_extra_fields_are_preserved_verbatim():
    data = {
        "id": "activity_99",
        "created_at": "2026-05-07T10:00:00.123456789Z",
        "type": "brand_new_type_from_2027",
        "actor": {
            "type": "robot_actor",
            "serial": 7,
            "nested": {"a": [1, 2, {"b": None}]},
        },
        "organization_id": "org_01",
        "extra_top": {"x": None, "y": [True, 1.5]},
        "z_last": "kept in order",
    }
    text = json.dumps(data)
    activity = parse_activity(json.loads(text))
    assert activity.type == "brand_new_type_from_2027"
    model = activity.model()
    assert model.actor.type == "robot_actor"
    assert model.actor.serial == 7
    assert model.extra_top == {"x": None, "y": [True, 1.5]}
    assert activity.id == "activity_99"
    assert activity.organization_id == "org_01"
    # verbatim: same content, same key order, same nanosecond text
    assert json.dumps(activity.raw) == text


# -- indicators ----------------------------------------------------------------------------


def test_indicators_come_from_both_email_fields_the_ip_and_the_user_id():
    activity = parse_activity(
        with_fields(
            actor={
                "type": "user_actor",
                "email_address": "ana@example.com",
                "unauthenticated_email_address": "eve@evil.test",
                "ip_address": "192.0.2.7",
                "user_id": "user_01",
            }
        )
    )
    assert activity.indicators == {
        "emails": ["ana@example.com", "eve@evil.test"],
        "ip_addresses": ["192.0.2.7"],
        "actor_ids": ["user_01"],
    }


def test_indicators_of_an_unauthenticated_actor():
    activity = parse_activity(
        with_fields(
            actor={
                "type": "unauthenticated_user_actor",
                "unauthenticated_email_address": "who@example.org",
                "ip_address": "2001:db8::1",
            }
        )
    )
    assert activity.indicators == {
        "emails": ["who@example.org"],
        "ip_addresses": ["2001:db8::1"],
        "actor_ids": [],
    }


def test_indicators_skip_missing_null_and_repeated_values():
    activity = parse_activity(
        with_fields(
            actor={
                "type": "user_actor",
                "email_address": "ana@example.com",
                "unauthenticated_email_address": "ana@example.com",
                "ip_address": None,
            }
        )
    )
    assert activity.indicators == {
        "emails": ["ana@example.com"],
        "ip_addresses": [],
        "actor_ids": [],
    }


# -- the Event view --------------------------------------------------------------------


@pytest.fixture
def event():
    data = {
        "id": "activity_01",
        "created_at": "2026-05-07T12:00:00.123456789+02:00",
        "type": "org_sso_toggled",
        "enabled": False,
        "actor": {
            "type": "user_actor",
            "email_address": "Ana@Example.COM",
            "ip_address": "192.0.2.7",
            "user_agent": None,
        },
        "tags": ["a", "b"],
        "count": 0,
    }
    activity = parse_activity(data)
    lists = NamedLists({"admins": NamedList("admins", ["ana@example.com"])})
    return Event.of(activity, make_options(lists))


def test_event_items_cannot_be_assigned_or_deleted(event):
    with pytest.raises(TypeError):
        event["type"] = "something_else"
    with pytest.raises(TypeError):
        del event["type"]
    assert event["type"] == "org_sso_toggled"


def test_event_nested_values_are_read_only_too(event):
    actor = event["actor"]
    with pytest.raises(TypeError):
        actor["ip_address"] = "10.0.0.1"
    with pytest.raises(AttributeError):
        event["tags"].append("c")
    assert event["tags"] == ("a", "b")
    deep = event.deep_get("actor")
    with pytest.raises(TypeError):
        deep["email_address"] = "x"
    searched = event.search("actor")
    with pytest.raises(TypeError):
        searched["email_address"] = "x"
    assert event["actor"]["ip_address"] == "192.0.2.7"


def test_event_to_dict_is_a_copy_the_caller_may_change(event):
    copied = event.to_dict()
    copied["actor"]["ip_address"] = "10.0.0.1"
    assert event["actor"]["ip_address"] == "192.0.2.7"


def test_event_get(event):
    assert event.get("type") == "org_sso_toggled"
    assert event.get("enabled") is False
    assert event.get("missing") is None
    assert event.get("missing", "fallback") == "fallback"
    assert "actor" in event
    assert len(event) == 7


def test_event_deep_get(event):
    assert event.deep_get("actor", "ip_address") == "192.0.2.7"
    assert event.deep_get("actor", "missing") is None
    assert event.deep_get("actor", "missing", default="d") == "d"
    # null counts as missing
    assert event.deep_get("actor", "user_agent", default="d") == "d"
    # a step through a non-mapping
    assert event.deep_get("type", "deeper", default="d") == "d"
    assert event.deep_get("nope", "deeper", default=0) == 0
    # falsy values that are not null are returned as they are
    assert event.deep_get("enabled", default="d") is False
    assert event.deep_get("count", default="d") == 0


def test_event_search_with_the_extra_functions(event):
    assert event.search("actor.ip_address") == "192.0.2.7"
    assert event.search("actor.missing") is None
    assert event.search("actor.missing", default="d") == "d"
    assert event.search("tags[1]") == "b"
    assert event.search("email_domain(actor.email_address)") == "example.com"
    assert event.search("email_domain(type)") is None
    assert event.search("lower(actor.email_address)") == "ana@example.com"
    assert event.search("cidr_match(actor.ip_address, '192.0.2.0/24')") is True
    assert event.search("cidr_match(actor.ip_address, '10.0.0.0/8')") is False
    assert event.search("cidr_match(actor.missing, '10.0.0.0/8')") is False
    assert event.search("regex_match(type, 'sso_tog')") is True
    assert event.search("regex_match(type, '^sso')") is False
    assert event.search("in_list(actor.email_address, 'admins')") is True
    assert event.search("in_list(actor.ip_address, 'admins')") is False


def test_event_created_at_is_aware_utc(event):
    assert event.created_at == datetime(2026, 5, 7, 10, 0, 0, 123456, tzinfo=UTC)
    assert event.created_at.utcoffset() == timedelta(0)


# -- the hand-written fast path agrees with the pydantic model ------------------------------

_VALID = {
    "id": "activity_01",
    "created_at": "2026-05-07T10:00:00.000538Z",
    "type": "sso_login_succeeded",
    "organization_id": "org_01",
    "organization_uuid": None,
    "actor": {"type": "user_actor", "email_address": "a@example.com", "ip_address": "192.0.2.1"},
}
_ODD_VALUES = [
    None,
    "",
    "x",
    0,
    1,
    1.5,
    True,
    False,
    [],
    ["x"],
    {},
    {"type": "user_actor"},
    "2026-05-07T10:00:00Z",
    "2026-05-07T10:00:00.123Z",
    "2026-05-07T10:00:00.123456789Z",
    "2026-05-07T10:00:00+02:00",
    "2026-05-07t10:00:00z",
    "2026-05-07 10:00:00+0200",
    "2026-05-07T10:00:00",
    "2026-05-07",
    "2026-13-07T10:00:00Z",
    "2026-05-07T25:00:00Z",
    "2026-05-07T10:00:00.Z",
    "2026-05-07T10:00:00,5Z",
    "x026-05-07T10:00:00Z",
    "2026-05-07T10:00:00.000538+00:00",
    "2026-W19-4T10:00:00.000538Z",
    "2026-05-07T10:00:00:000538Z",
    "2026-05-07T10:00:00Z\n",
]
_FIELDS = [
    ("id",),
    ("created_at",),
    ("type",),
    ("organization_id",),
    ("organization_uuid",),
    ("actor",),
    ("actor", "type"),
    ("actor", "email_address"),
    ("actor", "ip_address"),
    ("actor", "user_id"),
    ("actor", "unknown_field"),
    ("unknown_top",),
]


def _mutated(path: tuple[str, ...], value: object) -> dict:
    data = json.loads(json.dumps(_VALID))
    target = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize("path", _FIELDS, ids=".".join)
def test_fast_path_accepts_and_rejects_exactly_what_the_model_does(path):
    for value in _ODD_VALUES:
        data = _mutated(path, value)
        try:
            expected = _fields(ActivityRecord(data, Activity.model_validate(data).created_at))
        except ValidationError:
            expected = None
        try:
            got = _fields(parse_activity(data))
        except ValidationError:
            got = None
        assert got == expected, (path, value)
        quick = try_parse_activity(data)
        assert quick is None or _fields(quick) == expected, (path, value)


def _fields(record: ActivityRecord) -> tuple:
    moment = record.created_at
    assert moment.tzinfo is UTC
    assert record.epoch == moment.timestamp()
    return (record.raw, moment, record.epoch, record.id, record.type, record.organization_id)


def test_the_fast_path_is_taken_for_the_apis_own_form():
    data = json.loads(json.dumps(_VALID))
    record = try_parse_activity(data)
    assert record is not None
    assert record.raw is data
    assert _fields(record) == _fields(
        ActivityRecord(data, Activity.model_validate(data).created_at)
    )


@pytest.mark.parametrize("value", [None, True, 0, 1.5, "x", [], [_VALID], {}, {"data": [_VALID]}])
def test_the_fast_path_leaves_whatever_is_not_plainly_an_activity_to_the_model(value):
    assert try_parse_activity(value) is None


def test_a_dict_subclass_is_left_unchanged():
    data = defaultdict(lambda: "filled in", _VALID)
    del data["id"]
    with pytest.raises(ValidationError):
        parse_activity(data)
    assert "id" not in data


def test_epoch_is_exact_for_every_microsecond_form():
    rng = random.Random(7)
    for _ in range(2000):
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
            microseconds=rng.randrange(0, 400 * 365 * 86_400 * 1_000_000)
        )
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        record = parse_activity(with_fields(created_at=text))
        assert record.created_at == moment
        assert record.epoch == moment.timestamp()


def test_a_timestamp_before_year_one_in_utc_is_rejected_not_raised(tmp_path):
    from engine.sources.files import Rejected, read_source

    good = {
        "id": "a1",
        "type": "t",
        "actor": {"type": "user_actor"},
        "created_at": "2026-05-04T08:00:00Z",
    }
    path = tmp_path / "feed.jsonl"
    path.write_text(
        json.dumps({**good, "created_at": "0001-01-01T00:00:00+01:00"})
        + "\n"
        + json.dumps(good)
        + "\n",
        encoding="utf-8",
    )
    first, second = list(read_source(str(path)))
    assert isinstance(first, Rejected) and "created_at" in first.reason
    assert second.id == "a1"


def test_format_timestamp_precisions():
    """One helper for every time the engine writes: events and alerts with six digits,
    wall-clock instants people read to the second, the API's query bounds with fractions
    only when there are any; a datetime in any zone or epoch seconds."""
    from datetime import UTC, datetime, timedelta, timezone

    from engine.activity import format_timestamp

    moment = datetime(2026, 5, 4, 9, 30, 5, 250, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(moment) == "2026-05-04T07:30:05.000250Z"
    assert format_timestamp(moment, "seconds") == "2026-05-04T07:30:05Z"
    assert format_timestamp(moment, "auto") == "2026-05-04T07:30:05.000250Z"
    whole = datetime(2026, 5, 4, 7, 30, tzinfo=UTC)
    assert format_timestamp(whole, "auto") == "2026-05-04T07:30:00Z"
    assert format_timestamp(whole) == "2026-05-04T07:30:00.000000Z"
    assert format_timestamp(whole.timestamp() + 0.9, "seconds") == "2026-05-04T07:30:00Z"
