"""`detect replay`: every input form, rejected records with their line numbers, the
quarantine file, exit codes, output formats and `--sort`."""

from __future__ import annotations

import gc
import gzip
import json
import warnings

import pytest

from tests.conftest import at, run_detect, write_jsonl

ONE_ALERT_EACH = """
id: t.login
name: Login
severity: low
match:
  type: login
title: "Login {id}"
dedup:
  key: "{id}"
"""


@pytest.fixture
def rules(rules_dir):
    rules_dir.write("login.yml", ONE_ALERT_EACH)
    return rules_dir.path


@pytest.fixture
def three(make_activity):
    return [make_activity(created_at=at(minutes=m)) for m in range(3)]


def alert_titles(out: str) -> list[str]:
    return [json.loads(line)["title"] for line in out.splitlines()]


EXPECTED = ["Login activity_0001", "Login activity_0002", "Login activity_0003"]


def replay_jsonl(cli, rules, *paths: str, extra=()) -> tuple[int, str, str]:
    return cli("replay", *paths, "--rules", str(rules), "--format", "jsonl", *extra)


def test_jsonl(cli, rules, three, tmp_path):
    feed = write_jsonl(tmp_path / "feed.jsonl", three)
    code, out, err = replay_jsonl(cli, rules, str(feed))
    assert code == 0
    assert alert_titles(out) == EXPECTED
    assert "3 activities read · 0 rejected" in err


def test_json_array_pretty_printed(cli, rules, three, tmp_path):
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps(three, indent=2))
    assert feed.read_text().count("\n") > 20
    code, out, _ = replay_jsonl(cli, rules, str(feed))
    assert code == 0
    assert alert_titles(out) == EXPECTED


def test_json_array_with_a_bad_element_reports_its_line(cli, rules, three, tmp_path):
    bad = {**three[1], "created_at": "2026-05-07T10:01:00"}
    text = "[\n" + ",\n".join(json.dumps(x, indent=2) for x in (three[0], bad, three[2])) + "\n]\n"
    feed = tmp_path / "feed.json"
    feed.write_text(text)
    bad_line = text.splitlines().index('  "id": "activity_0002",')  # 0-based line after "{"
    code, out, err = replay_jsonl(cli, rules, str(feed), extra=("--no-quarantine",))
    assert code == 0
    assert alert_titles(out) == [EXPECTED[0], EXPECTED[2]]
    assert f"rejected {feed}:{bad_line}: created_at:" in err


def test_api_page_object_pretty_printed(cli, rules, three, tmp_path):
    feed = tmp_path / "page.json"
    feed.write_text(json.dumps({"data": three, "has_more": False, "next_page": None}, indent=2))
    code, out, err = replay_jsonl(cli, rules, str(feed))
    assert code == 0
    assert alert_titles(out) == EXPECTED
    assert "0 rejected" in err


def test_api_page_object_on_one_line(cli, rules, three, tmp_path):
    feed = tmp_path / "page.json"
    feed.write_text(json.dumps({"data": three, "has_more": False}))
    code, out, err = replay_jsonl(cli, rules, str(feed), extra=("--no-quarantine",))
    assert code == 0
    assert alert_titles(out) == EXPECTED
    assert "0 rejected" in err


def test_gzipped_jsonl(cli, rules, three, tmp_path):
    feed = tmp_path / "feed.jsonl.gz"
    feed.write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in three).encode()))
    code, out, _ = replay_jsonl(cli, rules, str(feed))
    assert code == 0
    assert alert_titles(out) == EXPECTED


def test_gzip_is_recognised_by_content_not_name(cli, rules, three, tmp_path):
    feed = tmp_path / "export.json"
    feed.write_bytes(gzip.compress(json.dumps(three, indent=1).encode()))
    code, out, _ = replay_jsonl(cli, rules, str(feed))
    assert code == 0
    assert alert_titles(out) == EXPECTED


def test_several_files_in_one_replay(cli, rules, three, tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", three[:2])
    b = tmp_path / "b.json"
    b.write_text(json.dumps([three[2]]))
    code, out, err = replay_jsonl(cli, rules, str(a), str(b))
    assert code == 0
    assert alert_titles(out) == EXPECTED
    assert "3 activities read · 0 rejected" in err


def test_stdin(rules, three, tmp_path):
    text = "".join(json.dumps(x) + "\n" for x in three)
    result = run_detect(
        "replay", "-", "--rules", str(rules), "--format", "jsonl", cwd=tmp_path, stdin=text
    )
    assert result.returncode == 0, result.stderr
    assert alert_titles(result.stdout) == EXPECTED
    assert "3 activities read" in result.stderr


def test_a_thousand_lines_with_one_malformed_and_one_invalid(cli, rules, make_activity, tmp_path):
    lines = [json.dumps(make_activity(created_at=at(i))) for i in range(1000)]
    lines[249] = '{"id": "activity_0250", "created_at": '  # line 250: not JSON
    invalid = json.loads(lines[699])
    invalid["created_at"] = "2026-05-07T10:11:39"  # line 700: no time zone
    lines[699] = json.dumps(invalid)
    feed = tmp_path / "big.jsonl"
    feed.write_text("\n".join(lines) + "\n")
    quarantine = tmp_path / "out" / "quarantine.jsonl"
    code, out, err = replay_jsonl(cli, rules, str(feed), extra=("--quarantine", str(quarantine)))
    assert code == 0
    titles = alert_titles(out)
    assert len(titles) == 998
    assert "Login activity_0250" not in titles
    assert "Login activity_0700" not in titles
    assert titles[0] == "Login activity_0001"
    assert titles[-1] == "Login activity_1000"
    assert f"rejected {feed}:250: invalid JSON: EOF while parsing a value at column 37" in err
    assert f"rejected {feed}:700: created_at: " in err
    assert "998 activities read · 2 rejected" in err
    assert f"2 rejected record(s) written to {quarantine}" in err
    records = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert [(r["source"], r["line"]) for r in records] == [(str(feed), 250), (str(feed), 700)]
    assert records[0]["reason"].startswith("invalid JSON")
    assert records[0]["raw"] == lines[249].strip()
    assert records[1]["reason"].startswith("created_at: ")
    assert "2026-05-07T10:11:39" in records[1]["reason"]
    assert records[1]["raw"] == lines[699]


def test_default_quarantine_goes_to_the_working_directory(cli, rules, three, tmp_path):
    feed = tmp_path / "feed.jsonl"
    feed.write_text("not json\n" + "".join(json.dumps(x) + "\n" for x in three))
    code, out, _ = replay_jsonl(cli, rules, str(feed))
    assert code == 0
    assert alert_titles(out) == EXPECTED
    quarantined = (tmp_path / ".detect" / "quarantine.jsonl").read_text().splitlines()
    assert [json.loads(r)["line"] for r in quarantined] == [1]


def test_a_malformed_first_line_does_not_lose_the_rest(cli, rules, three, tmp_path):
    feed = tmp_path / "feed.jsonl"
    feed.write_text('{"id": "truncated\n' + "".join(json.dumps(x) + "\n" for x in three))
    code, out, err = replay_jsonl(cli, rules, str(feed), extra=("--no-quarantine",))
    assert code == 0
    assert alert_titles(out) == EXPECTED
    assert f"rejected {feed}:1: invalid JSON" in err


def test_an_unreadable_path_exits_1(cli, rules, tmp_path):
    missing = tmp_path / "nope.jsonl"
    code, out, err = replay_jsonl(cli, rules, str(missing))
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {missing}: cannot open:")


def test_a_directory_is_unreadable_too(rules, tmp_path):
    result = run_detect("replay", str(tmp_path), "--rules", str(rules), cwd=tmp_path)
    assert result.returncode == 1
    assert f"error: {tmp_path}: cannot open" in result.stderr


def test_invalid_rules_exit_2(cli, rules_dir, three, tmp_path):
    rules_dir.write("bad.yml", "id: t.bad\nname: Bad\nseverity: urgent\nmatch: {type: login}\n")
    feed = write_jsonl(tmp_path / "feed.jsonl", three)
    code, out, err = replay_jsonl(cli, rules_dir.path, str(feed))
    assert (code, out) == (2, "")
    assert "[severity]" in err


def test_jsonl_format_is_one_json_alert_per_line(cli, rules, three, tmp_path):
    feed = write_jsonl(tmp_path / "feed.jsonl", three)
    code, out, _ = replay_jsonl(cli, rules, str(feed))
    assert code == 0
    assert out.endswith("\n")
    lines = out.split("\n")[:-1]
    assert len(lines) == 3
    for line in lines:
        alert = json.loads(line)
        assert alert["schema"] == "detect.alert/v1"
        assert "\n" not in line


def test_text_format(cli, rules, three, tmp_path):
    feed = write_jsonl(tmp_path / "feed.jsonl", three[:1])
    code, out, _ = cli("replay", str(feed), "--rules", str(rules))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "[LOW] Login activity_0001"
    assert lines[1] == "    rule     t.login · 1 event · 2026-05-07T10:00:00.000000Z"
    assert lines[2] == "    who      ana@example.com  ip 192.0.2.7  actor user_01"
    assert "\033[" not in out


SESSION_RULE = """
id: t.session
name: Session
severity: medium
match:
  type: login
dedup:
  key: "{actor.user_id}"
  window: 1h
"""


def test_sort_handles_a_newest_first_file(cli, rules_dir, make_activity, tmp_path):
    rules_dir.write("session.yml", SESSION_RULE)
    oldest_first = [make_activity(created_at=at(minutes=30 * i)) for i in range(5)]
    feed = write_jsonl(tmp_path / "newest_first.jsonl", list(reversed(oldest_first)))
    code, out, _ = cli(
        "replay",
        str(feed),
        "--rules",
        str(rules_dir.path),
        "--format",
        "jsonl",
        "--sort",
        "--reorder",
        "1",
    )
    assert code == 0
    alerts = [json.loads(line) for line in out.splitlines()]
    assert [(a["first_event_at"], a["event_count"]) for a in alerts] == [
        ("2026-05-07T10:00:00.000000Z", 2),
        ("2026-05-07T11:00:00.000000Z", 2),
        ("2026-05-07T12:00:00.000000Z", 1),
    ]
    assert [e["id"] for e in alerts[0]["events"]] == ["activity_0001", "activity_0002"]
    sorted_feed = write_jsonl(tmp_path / "oldest_first.jsonl", oldest_first)
    _, expected, _ = cli(
        "replay", str(sorted_feed), "--rules", str(rules_dir.path), "--format", "jsonl"
    )
    assert out == expected


def test_a_utf8_byte_order_mark_is_ignored(cli, rules, three, tmp_path):
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_text("".join(json.dumps(x) + "\n" for x in three), encoding="utf-8-sig")
    array = tmp_path / "bom.json"
    array.write_text(json.dumps(three, indent=2), encoding="utf-8-sig")
    for feed in (jsonl, array):
        code, out, err = replay_jsonl(cli, rules, str(feed), extra=("--no-quarantine",))
        assert code == 0
        assert alert_titles(out) == EXPECTED
        assert "0 rejected" in err


@pytest.mark.parametrize("kind", ["gzip", "array"])
def test_reading_closes_every_file(three, tmp_path, kind):
    from engine.sources.files import read_source

    path = tmp_path / "feed"
    if kind == "gzip":
        path.write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in three).encode()))
    else:
        path.write_text(json.dumps(three))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        count = sum(1 for _ in read_source(str(path)))
        gc.collect()
    assert count == 3
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
