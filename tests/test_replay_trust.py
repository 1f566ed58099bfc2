"""Replays you can trust (issue 18): an input that breaks half-way, duplicate ids,
input that goes back in time past the reorder buffer, and a series of replays against
one state file giving the alerts of one replay."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from engine.activity import parse_activity
from engine.feedgen import generate, write_jsonl
from engine.resources import bundled_rules_dir
from engine.rule_formats import load_rules
from engine.runs.replay import ReplayOptions, replay, summary
from engine.sources.files import ReadReport, read_sources
from engine.sources.reorder import reorder
from engine.state.sqlite import SqliteStore
from tests.conftest import run_detect


@pytest.fixture(scope="module")
def rules():
    return load_rules([bundled_rules_dir()])


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    path = tmp_path_factory.mktemp("feed") / "feed.jsonl"
    write_jsonl(path, generate(4000, seed=3))
    return path.read_text().splitlines(keepends=True)


def _write(path: Path, lines: list[str]) -> str:
    path.write_text("".join(lines))
    return str(path)


def _replay(paths, rules, **options):
    out, err = io.StringIO(), io.StringIO()
    options.setdefault("quarantine", None)
    stats = replay(paths, rules, ReplayOptions(format="jsonl", **options), out=out, err=err)
    return stats, out.getvalue(), err.getvalue()


def _truncated(tmp_path: Path, lines: list[str]) -> tuple[str, int]:
    """A gzipped feed cut at two thirds, and how many lines of it can be read."""
    whole = gzip.compress("".join(lines).encode())
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(whole[: len(whole) * 2 // 3])
    readable = sum(1 for _ in read_sources([str(broken)], ReadReport()))
    assert 0 < readable < len(lines)
    return str(broken), readable


@pytest.mark.parametrize("processes", [1, 2])
def test_a_truncated_gz_keeps_what_was_read_and_the_files_after_it(
    rules, lines, tmp_path, processes
):
    first, rest = lines[:2000], lines[2000:]
    broken, readable = _truncated(tmp_path, first)
    after = _write(tmp_path / "after.jsonl", rest)
    prefix = _write(tmp_path / "prefix.jsonl", first[:readable])
    stats, out, err = _replay([broken, after], rules, processes=processes)
    expected, expected_out, _ = _replay([prefix, after], rules, processes=processes)
    assert out == expected_out and stats.alerts == expected.alerts > 0
    assert stats.activities == readable + len(rest)
    (error,) = stats.read_errors
    assert (error.source, error.line, error.records) == (broken, readable, readable)
    assert f"error: {broken}: cannot read past line {readable} ({readable} records" in err
    assert "Compressed file ended" in err
    assert "1 input cut short" in summary(stats, len(rules.rules))


def test_the_command_exits_3_after_a_broken_input(rules, lines, tmp_path):
    broken, readable = _truncated(tmp_path, lines)
    result = run_detect(
        "replay", broken, "--format", "jsonl", "--no-quarantine", "--processes", "1", cwd=tmp_path
    )
    assert result.returncode == 3
    assert f"cannot read past line {readable} ({readable} records read" in result.stderr
    assert f"{readable} activities read" in result.stderr
    assert result.stdout.count("\n") > 0


@pytest.mark.parametrize("processes", [1, 2])
def test_overlapping_exports_are_deduplicated_and_counted(rules, lines, tmp_path, processes):
    whole = _write(tmp_path / "whole.jsonl", lines)
    early = _write(tmp_path / "early.jsonl", lines[:2500])
    late = _write(tmp_path / "late.jsonl", lines[1500:])
    stats, out, _ = _replay([early, late, early], rules, processes=processes)
    one, one_out, _ = _replay([whole], rules, processes=processes)
    assert out == one_out
    assert stats.duplicates == 1000 + 2500
    assert stats.activities == one.activities == len(lines)
    assert "3500 duplicates dropped" in summary(stats, len(rules.rules))
    assert "duplicates" not in summary(one, len(rules.rules))


def test_a_newest_first_file_is_counted_and_sort_suggested(rules, lines, tmp_path):
    backwards = _write(tmp_path / "newest_first.jsonl", lines[::-1])
    stats, _, err = _replay([backwards], rules, reorder_capacity=1000)
    # All but the buffer's worth, less the few that tie in time with the last released.
    assert len(lines) - 1000 - 5 <= stats.backwards <= len(lines) - 1000
    assert f"warning: {stats.backwards} activities came earlier in time" in err
    assert "replay with --sort" in err
    assert f"{stats.backwards} out of order past the reorder buffer" in summary(
        stats, len(rules.rules)
    )
    sorted_stats, sorted_out, sorted_err = _replay([backwards], rules, sort=True)
    in_order, in_order_out, _ = _replay([_write(tmp_path / "f.jsonl", lines)], rules)
    assert sorted_stats.backwards == 0 and "warning" not in sorted_err
    assert sorted_out == in_order_out and in_order.backwards == 0


def test_reorder_counts_only_what_comes_after_a_later_activity_was_released(lines):
    records = [parse_activity(json.loads(line)) for line in lines[:50]]
    report = ReadReport()
    # Disorder within the buffer costs nothing; one past it is counted once.
    shuffled = [*records[:10], records[12], records[10], records[11], *records[13:]]
    assert list(reorder(shuffled, 5, report)) == records and report.backwards == 0
    late = [*records[:30], *records[31:], records[30]]
    assert len(list(reorder(late, 5, report))) == 50 and report.backwards == 1


def _chunked(rules, lines, tmp_path, processes, final_every_time=False):
    size = len(lines) // 10
    chunks = [lines[i * size : (i + 1) * size if i < 9 else None] for i in range(10)]
    state = tmp_path / f"state{processes}{final_every_time}.db"
    out, opened = [], 0
    for number, chunk in enumerate(chunks):
        path = _write(tmp_path / f"chunk{number}.jsonl", chunk)
        store = SqliteStore(state)
        try:
            keep_open = number < 9 and not final_every_time
            sink = io.StringIO()
            options = ReplayOptions(
                format="jsonl", quarantine=None, processes=processes, keep_open=keep_open
            )
            stats = replay([path], rules, options, out=sink, err=io.StringIO(), store=store)
        finally:
            store.close()
        opened += stats.alerts
        out.extend(sink.getvalue().splitlines())
    return sorted(out), opened


@pytest.mark.parametrize("processes", [1, 2])
def test_ten_chunked_replays_against_one_state_equal_one_replay(rules, tmp_path, processes):
    feed = tmp_path / "feed.jsonl"
    write_jsonl(feed, generate(20_000, seed=3))
    lines = feed.read_text().splitlines(keepends=True)
    one, one_out, _ = _replay([str(feed)], rules, processes=processes)
    chunked, opened = _chunked(rules, lines, tmp_path, processes)
    assert chunked == sorted(one_out.splitlines())  # ids and content
    assert opened == one.alerts
    kinds = {json.loads(line)["rule_id"] for line in chunked}
    for rule in (
        "anthropic.keys.api_key_created_by_non_user",  # single, deduplicated
        "anthropic.data.mass_content_views",  # threshold
        "anthropic.auth.admin_login_new_address",  # new value
        "anthropic.auth.login_after_failures",  # sequence
    ):
        assert rule in kinds
    # Closing every window at each chunk's end (what `--final` does) splits them.
    split, _ = _chunked(rules, lines, tmp_path, processes, final_every_time=True)
    assert split != chunked


def test_the_command_keeps_windows_open_until_final(rules, lines, tmp_path):
    first = _write(tmp_path / "a.jsonl", lines[:2000])
    second = _write(tmp_path / "b.jsonl", lines[2000:])
    whole = _write(tmp_path / "whole.jsonl", lines)
    state = str(tmp_path / "state.db")
    common = ("--format", "jsonl", "--no-quarantine", "--state", state)
    a = run_detect("replay", first, *common, cwd=tmp_path)
    b = run_detect("replay", second, *common, "--final", cwd=tmp_path)
    one = run_detect("replay", whole, "--format", "jsonl", "--no-quarantine", cwd=tmp_path)
    assert (a.returncode, b.returncode) == (0, 0)
    assert "alerts kept open" in a.stderr and "still open in" in a.stderr
    assert "kept open" not in b.stderr
    assert sorted((a.stdout + b.stdout).splitlines()) == sorted(one.stdout.splitlines())
