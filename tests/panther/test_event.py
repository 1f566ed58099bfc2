"""The event Panther rules receive behaves as panther_core's PantherEvent.

Expected values were taken from panther_core 0.16 (panther-analysis-tool 1.11) on the same
inputs; where a behaviour is a Panther quirk, the test says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from engine.activity import Event
from engine.panther.event import ImmutableList, PantherEvent, PantherMapping, plain

DATA = {
    "type": "claude_user_role_updated",
    "actor": {"email_address": "ana@example.com", "ip_address": None, "Mixed_Case": 1},
    "updates": [{"type": "a", "value": 1}, {"type": "b"}, {"other": True}],
    "tags": ["x", "y"],
    "nested": [[{"k": 1}], [{"k": 2}, {"k": 1}]],
    "empty": [],
    "zero": 0,
}


@pytest.fixture
def event() -> PantherEvent:
    return PantherEvent(json.loads(json.dumps(DATA)))


def test_is_an_engine_event_and_a_read_only_mapping(event: PantherEvent) -> None:
    assert isinstance(event, Event)
    assert isinstance(event, Mapping)
    with pytest.raises(TypeError):
        event["type"] = "x"  # type: ignore[index]
    assert not hasattr(event, "__setitem__")


def test_item_access_get_and_in_fall_back_to_any_case(event: PantherEvent) -> None:
    assert event["type"] == event["TYPE"] == event.get("Type") == "claude_user_role_updated"
    assert "TyPe" in event
    assert event.get("missing", "default") == "default"
    with pytest.raises(KeyError):
        event["missing"]
    assert event["actor"]["mixed_case"] == 1


def test_a_present_null_is_returned_by_get_but_defaulted_by_deep_get(event: PantherEvent) -> None:
    assert event["actor"].get("ip_address", "d") is None
    assert event.deep_get("actor", "ip_address", default="d") == "d"


def test_deep_get_walks_mappings_and_defaults_elsewhere(event: PantherEvent) -> None:
    assert event.deep_get("actor", "email_address") == "ana@example.com"
    assert event.deep_get("ACTOR", "Email_Address") == "ana@example.com"
    assert event.deep_get("tags", "0") is None  # lists are not walked
    assert event.deep_get("type", "x", default=7) == 7
    assert event.deep_get("nope", "deeper", default="d") == "d"
    assert event.deep_get("zero") == 0


def test_nested_values_are_read_only_views_not_dicts_or_lists(event: PantherEvent) -> None:
    actor = event.get("actor")
    tags = event.get("tags")
    assert isinstance(actor, PantherMapping) and not isinstance(actor, dict)
    assert isinstance(tags, ImmutableList) and isinstance(tags, Sequence)
    assert not isinstance(tags, list)  # as in Panther: `isinstance(x, list)` is False
    assert tags == ["x", "y"] and tags == ("x", "y") and tags != ["y", "x"]
    assert list(tags) == ["x", "y"] and tags[0] == "x" and len(tags) == 2
    assert actor.deep_get("email_address") == "ana@example.com"
    update = event["updates"][0]
    assert isinstance(update, PantherMapping) and update["TYPE"] == "a"
    with pytest.raises(TypeError):
        hash(tags)


def test_deep_walk_collects_through_lists(event: PantherEvent) -> None:
    assert event.deep_walk("updates", "type") == ["a", "b"]
    assert event.deep_walk("updates", "type", return_val="first") == "a"
    assert event.deep_walk("updates", "type", return_val="last") == "b"
    assert event.deep_walk("updates", "value") == 1  # one value found: the value itself
    assert event.deep_walk("updates", "missing", default="d") == "d"
    assert event.deep_walk("nested", "k") == [1, 2]  # distinct, in order of first sight
    assert event.deep_walk("empty", default="d") == "d"
    assert event.deep_walk("actor", "email_address") == "ana@example.com"
    assert event.deep_walk("updates", "type", return_val="bogus") == "all"  # Panther's quirk


def test_deep_walk_is_case_sensitive_as_panthers(event: PantherEvent) -> None:
    assert event.deep_walk("UPDATES", "type", default="d") == "d"


def test_values_returned_by_deep_walk_are_read_only(event: PantherEvent) -> None:
    tags = event.deep_walk("tags")
    assert tags == ["x", "y"] and not isinstance(tags, list)


def test_views_serialise_back_to_plain_json(event: PantherEvent) -> None:
    value = {"actor": event["actor"], "tags": event["tags"], "n": event.deep_walk("nested")}
    assert plain(value) == {
        "actor": DATA["actor"],
        "tags": DATA["tags"],
        "n": DATA["nested"],
    }
    copy = event.to_dict()
    copy["type"] = "changed"
    assert event["type"] == "claude_user_role_updated"


def test_live_events_carry_panthers_p_fields_without_changing_the_activity() -> None:
    raw = {
        "id": "a1",
        "type": "sso_login_failed",
        "actor": {
            "type": "unauthenticated_user_actor",
            "unauthenticated_email_address": "ana@example.com",
            "ip_address": "198.51.100.7",
        },
    }
    moment = datetime(2026, 5, 4, 8, 0, 1, 500, tzinfo=UTC)
    event = PantherEvent.live(raw, moment)
    assert event["p_log_type"] == "Anthropic.Activity"
    assert event["p_any_ip_addresses"] == ["198.51.100.7"]
    assert event["p_any_emails"] == ["ana@example.com"]
    assert event["p_event_time"] == "2026-05-04 08:00:01.000500"
    assert event.event_time_epoch() == int(moment.timestamp())
    assert "p_log_type" not in raw


def test_event_time_epoch_reads_p_event_time_only() -> None:
    assert PantherEvent({"p_event_time": "2026-05-04 08:00:00"}).event_time_epoch() == 1777881600
    assert PantherEvent({}).event_time_epoch() == 0
    assert PantherEvent({"p_event_time": "not a time"}).event_time_epoch() == 0
    # A test's Log has no p_event_time: 0, as under panther_analysis_tool, even though
    # the test event knows its created_at.
    moment = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
    assert PantherEvent({"created_at": "2026-05-04T08:00:00Z"}, moment).event_time_epoch() == 0


def test_nested_values_print_as_panthers(event: PantherEvent) -> None:
    """Rules put nested values in titles and match on their text (str(audience)), so the
    text is panther_core's, class names included."""
    assert str(event["actor"]) == (
        "ImmutableCaseInsensitiveDict({'email_address': 'ana@example.com',"
        " 'ip_address': None, 'Mixed_Case': 1})"
    )
    assert repr(event["tags"]) == "ImmutableList(('x', 'y'))"
    assert f"{event['empty']}" == "ImmutableList(())"
    assert str(event["nested"]) == "ImmutableList(([{'k': 1}], [{'k': 2}, {'k': 1}]))"
    assert str(event["updates"][1]) == "ImmutableCaseInsensitiveDict({'type': 'b'})"


def test_a_slice_is_a_plain_tuple_as_panthers(event: PantherEvent) -> None:
    head = event["updates"][:1]
    assert type(head) is tuple and head == ({"type": "a", "value": 1},)
    assert head != [{"type": "a", "value": 1}]  # a tuple, so not equal to a list
    head[0]["type"] = "changed"  # a copy: the activity is not changed through it
    assert event["updates"][0]["type"] == "a"


def test_udm_and_lookup_without_a_data_model() -> None:
    event = PantherEvent(
        {
            "p_udm": {"source_ip": "10.0.0.1"},
            "actor": {"ip_address": "1.2.3.4"},
            "_mocked_lookup_data_": {"table": {"key": "value"}},
        }
    )
    assert event.udm("source_ip") == "10.0.0.1"
    assert event.udm("actor", "ip_address") == "1.2.3.4"
    assert event.udm("nothing", default="d") == "d"
    assert event.lookup("table", "key") == "value"


LIVE = {
    "id": "a1",
    "created_at": "2026-05-04T08:00:01.000500Z",
    "type": "sso_login_failed",
    "Type_Again": "shadow",
    "P_Log_Type": "upper-case, present in the activity",
    "actor": {"type": "user_actor", "email_address": "ana@example.com", "ip_address": "1.2.3.4"},
    "updates": [{"type": "a"}],
}
PROBES = [
    "type",
    "TYPE",
    "type_again",
    "p_log_type",
    "P_LOG_TYPE",
    "p_event_time",
    "p_any_emails",
    "P_Any_Ip_Addresses",
    "p_missing",
    "missing",
    "actor",
    "updates",
    1,
]


def _live_and_eager() -> tuple[PantherEvent, PantherEvent]:
    from engine.panther.event import with_p_fields

    moment = datetime(2026, 5, 4, 8, 0, 1, 500, tzinfo=UTC)
    raw = json.loads(json.dumps(LIVE))
    return PantherEvent.live(raw, moment), PantherEvent(with_p_fields(raw, moment), moment)


@pytest.mark.parametrize("probe", PROBES)
def test_a_live_event_adds_its_p_fields_lazily_with_the_same_answers(probe) -> None:
    """Whatever is asked first, a live event answers as the eagerly built one."""
    for first in [None, *PROBES]:
        live, eager = _live_and_eager()
        if first is not None:
            assert live.get(first) == eager.get(first)
        assert live.get(probe, "d") == eager.get(probe, "d")
        assert (probe in live) == (probe in eager)
        assert live.deep_get(probe, "type") == eager.deep_get(probe, "type")
        if isinstance(probe, str):
            assert live.deep_walk(probe) == eager.deep_walk(probe)
        if probe in eager:
            assert live[probe] == eager[probe]
        else:
            with pytest.raises(KeyError):
                live[probe]


def test_a_live_event_is_whole_when_seen_whole() -> None:
    for view in (
        lambda e: list(e),
        len,
        lambda e: dict(e.items()),
        lambda e: e.to_dict(),
        lambda e: e.copy(),
        lambda e: dict(e.raw_view()),
        lambda e: plain({"event": e}),
        repr,
        lambda e: e.event_time_epoch(),
        lambda e: e.deep_get(),
        lambda e: e.search("p_log_type"),
        lambda e: e.udm("p_any_emails"),
    ):
        live, eager = _live_and_eager()
        assert view(live) == view(eager)
    live, eager = _live_and_eager()
    assert live == eager
    assert "p_log_type" not in LIVE


def test_reading_the_activity_own_keys_does_not_copy_it() -> None:
    live, _ = _live_and_eager()
    raw = live._data
    assert live.get("type") == "sso_login_failed"
    assert live.deep_get("actor", "ip_address") == "1.2.3.4"
    assert live.get("TYPE") == "sso_login_failed"  # any case, still the activity's key
    assert live.get("missing") is None
    assert live._data is raw
    assert live.get("P_LOG_TYPE") == "upper-case, present in the activity"  # first wins
    assert live._data is not raw and "p_log_type" not in raw
    assert live.get("p_log_type") == "Anthropic.Activity"  # the exact key comes first
