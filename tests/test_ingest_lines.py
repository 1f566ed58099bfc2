"""Reading JSON Lines: each line becomes one activity or one rejected record with its line
number, in input order, whatever else the file holds (a byte-order mark, blank lines,
API pages, values that are not objects, broken JSON)."""

from __future__ import annotations

import gzip
import json

import pytest
from pydantic import ValidationError

from engine.activity import ActivityRecord, describe_validation_error, parse_activity
from engine.sources.files import Rejected, read_source

GOOD = {
    "id": "activity_01",
    "created_at": "2026-05-07T10:00:00.000538Z",
    "organization_id": None,
    "actor": {"type": "user_actor", "email_address": "ana@example.com"},
    "type": "sso_login_succeeded",
    "extra": {"nested": [1, None]},
}
BOM = b"\xef\xbb\xbf"


def _good(**changes):
    return {**GOOD, **changes}


def _model_reason(data) -> str:
    with pytest.raises(ValidationError) as info:
        parse_activity(data)
    return describe_validation_error(info.value)


def _read(tmp_path, data: bytes) -> list[ActivityRecord | Rejected]:
    path = tmp_path / "feed.jsonl"
    path.write_bytes(data)
    return list(read_source(str(path)))


def _summary(records) -> list[tuple]:
    return [
        ("activity", r.id, r.raw) if isinstance(r, ActivityRecord) else ("rejected", r.line)
        for r in records
    ]


def test_activities_are_the_decoded_objects_in_file_order(tmp_path):
    lines = [json.dumps(_good(id=f"a{i}")) for i in range(3)]
    records = _read(tmp_path, "\n".join(lines).encode())  # no final newline
    assert [r.id for r in records] == ["a0", "a1", "a2"]
    for line, record in zip(lines, records, strict=True):
        assert json.dumps(record.raw) == line  # same keys, same order, same values
        assert record.created_at == parse_activity(json.loads(line)).created_at
        assert record.epoch == record.created_at.timestamp()


def test_every_kind_of_line_keeps_its_place_and_number(tmp_path):
    invalid = _good(id="")
    page = {"data": [_good(id="p1"), _good(id="p2", type="")], "has_more": False}
    lines = [
        json.dumps(_good(id="a1")),
        "",
        "   \t",
        json.dumps(invalid),
        "{not json",
        "[1, 2]",
        json.dumps(page),
        json.dumps(_good(id="a2", data=[1, 2])),  # an activity with a `data` field
        json.dumps(_good(id="a3", created_at="2026-05-07T12:00:00.123456789+02:00")),
    ]
    records = _read(tmp_path, ("\r\n".join(lines) + "\r\n").encode())
    assert _summary(records) == [
        ("activity", "a1", _good(id="a1")),
        ("rejected", 4),
        ("rejected", 5),
        ("rejected", 6),
        ("activity", "p1", _good(id="p1")),
        ("rejected", 7),
        ("activity", "a2", _good(id="a2", data=[1, 2])),
        ("activity", "a3", _good(id="a3", created_at="2026-05-07T12:00:00.123456789+02:00")),
    ]
    assert records[1].reason == _model_reason(invalid)
    assert records[1].text == json.dumps(invalid)
    assert records[2].reason.startswith("invalid JSON: ")
    assert records[2].text == "{not json"
    assert records[3].reason == "an activity must be a JSON object, not list"
    assert records[5].reason == _model_reason(_good(id="p2", type=""))
    assert records[5].text == json.dumps(_good(id="p2", type=""))


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        (json.dumps(GOOD), ("activity", "activity_01", GOOD)),
        (json.dumps(_good(id="")), ("rejected", 1)),
        ("{not json", ("rejected", 1)),
        (json.dumps({"data": [GOOD]}), ("activity", "activity_01", GOOD)),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_a_byte_order_mark_before_the_first_line_is_ignored(tmp_path, first, expected, compress):
    data = BOM + (first + "\n" + json.dumps(_good(id="next"))).encode()
    records = _read(tmp_path, gzip.compress(data) if compress else data)
    assert _summary(records) == [expected, ("activity", "next", _good(id="next"))]
    if isinstance(records[0], Rejected):
        assert records[0].text == first  # without the mark


def test_a_byte_order_mark_alone_is_an_empty_file(tmp_path):
    assert _read(tmp_path, BOM) == []
    assert _read(tmp_path, BOM + b"\n\n") == []


def test_a_byte_order_mark_after_the_first_line_is_not_json(tmp_path):
    data = json.dumps(GOOD).encode() + b"\n" + BOM + json.dumps(GOOD).encode()
    assert _summary(_read(tmp_path, data)) == [("activity", "activity_01", GOOD), ("rejected", 2)]


def test_a_line_that_is_not_utf8_is_rejected_and_reading_goes_on(tmp_path):
    data = json.dumps(GOOD).encode() + b'\n{"id": "\xff"}\n' + json.dumps(GOOD).encode()
    records = _read(tmp_path, data)
    assert _summary(records)[1] == ("rejected", 2)
    assert records[1].reason.startswith("invalid JSON: ")
    assert isinstance(records[2], ActivityRecord)


@pytest.mark.parametrize(
    "changes",
    [
        {"actor": {"type": "user_actor", "user_agent": None, "provider": {"name": "x"}}},
        {"actor": {"type": "user_actor", "ip_address": 7}},
        {"actor": {"type": 7}},
        {"organization_uuid": 7},
        {"created_at": "2026-05-07T10:00:00.000538"},
        {"created_at": "2026-W19-4T10:00:00.000538Z"},
    ],
)
def test_lines_only_the_model_can_judge_get_its_verdict(tmp_path, changes):
    data = _good(**changes)
    records = _read(tmp_path, json.dumps(data).encode())
    assert len(records) == 1
    try:
        expected = parse_activity(json.loads(json.dumps(data)))
    except ValidationError as exc:
        assert isinstance(records[0], Rejected)
        assert records[0].reason == describe_validation_error(exc)
    else:
        assert isinstance(records[0], ActivityRecord)
        assert records[0].raw == data
        assert records[0].created_at == expected.created_at
