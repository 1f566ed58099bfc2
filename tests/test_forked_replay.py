"""Replaying on two processes gives what one process gives: alerts, state, outbox, stats."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from engine.activity import parse_activity
from engine.errors import InputError
from engine.feedgen import generate, write_jsonl
from engine.pipeline import Pipeline
from engine.resources import bundled_rules_dir
from engine.rule_formats import load_rules
from engine.runs.forked import EvaluatorFailed, ForwardedRecord, run_forked
from engine.runs.replay import ReplayOptions, replay
from engine.sources.files import read_source
from engine.sources.reorder import reorder
from engine.state.sqlite import SqliteStore
from engine.state.store import MemoryStore
from tests.conftest import at, run_detect
from tests.conftest import write_jsonl as write_raws

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def _replay(tmp_path: Path, paths: list[str], rules: Any, processes: int, name: str) -> dict:
    """Replay into a fresh SQLite state; what it printed, counted, quarantined and stored."""
    out, err = io.StringIO(), io.StringIO()
    folder = tmp_path / name
    folder.mkdir()
    store = SqliteStore(folder / "state.db")
    options = ReplayOptions(
        format="jsonl", quarantine=folder / "quarantine.jsonl", processes=processes
    )
    stats = replay(paths, rules, options, out=out, err=err, store=store)
    store.close()
    with sqlite3.connect(folder / "state.db") as db:
        state = db.execute("SELECT namespace, key, value FROM state ORDER BY 1, 2").fetchall()
        outbox = db.execute("SELECT alert_id, body, notify FROM alerts ORDER BY 1").fetchall()
    quarantine = folder / "quarantine.jsonl"
    return {
        "alerts": out.getvalue().splitlines(),
        "stats": stats,
        "state": state,
        "outbox": outbox,
        "quarantine": quarantine.read_text() if quarantine.exists() else "",
        "reported": err.getvalue().replace(str(folder), "FOLDER"),
    }


def test_the_shipped_pack_on_a_disordered_feed_gives_the_same_everything(tmp_path):
    raws = list(generate(30_000, seed=5))
    shuffled = random.Random(5)
    for index in range(0, len(raws) - 40, 40):  # local disorder, for the reorder buffer
        chunk = raws[index : index + 40]
        shuffled.shuffle(chunk)
        raws[index : index + 40] = chunk
    feed = tmp_path / "feed.jsonl"
    write_jsonl(feed, raws)
    rules = load_rules([bundled_rules_dir()])
    one = _replay(tmp_path, [str(feed)], rules, 1, "one")
    two = _replay(tmp_path, [str(feed)], load_rules([bundled_rules_dir()]), 2, "two")
    assert len(one["alerts"]) > 10  # the feed's attacks raise alerts of many kinds
    assert len({json.loads(a)["rule_id"] for a in one["alerts"]}) > 5
    assert two["alerts"] == one["alerts"]
    assert two["stats"] == one["stats"]
    assert two["state"] == one["state"]
    assert two["outbox"] == one["outbox"]


FRAGILE_PY = """
def rule(event):
    return 1 / event.get("divisor", 1) > 0   # ZeroDivisionError when divisor is 0


def dedup(event):
    if event.get("flag") == "no-key":
        raise ValueError("no key for this one")
    return event.deep_get("actor", "user_id")
"""


def _failing_rules(rules_dir):
    """A rule of each kind of failure: `rule()`, a threshold's `dedup()`, a
    `learn_from: all` path, a `learn:` path; and a list the last one teaches."""
    rules_dir.add_list("admins", ["static@example.com"])
    rules_dir.write("fragile.py", FRAGILE_PY)
    rules_dir.write(
        "fragile.yml",
        """
        id: t.fragile
        name: fragile
        severity: low
        match: {type: login}
        python: fragile.py
        threshold: {count: 3, window: 10m}
        """,
    )
    rules_dir.write(
        "novel.yml",
        """
        id: t.novel
        name: new role for a person
        severity: low
        match: {type: role_updated}
        new_value: {of: "lower(role)", per: actor.user_id, forget: 1d, learn_from: all}
        """,
    )
    rules_dir.write(
        "teach.yml",
        """
        id: t.teach
        name: teacher
        severity: info
        alert: false
        match: {type: role_updated}
        learn: [{list: admins, add: "lower(role)"}]
        """,
    )
    rules_dir.write(
        "watch.yml",
        """
        id: t.watch
        name: listed role signed in
        severity: high
        match: {type: login, role: {in_list: admins}}
        dedup: {key: "{id}"}
        """,
    )
    return rules_dir


def test_failures_rejects_and_learned_lists_cross_over_alike(tmp_path, rules_dir, make_activity):
    raws: list[Any] = []
    for minute in range(40):
        raws.append(make_activity("login", created_at=at(minutes=minute), role="admin"))
        if minute % 7 == 0:
            raws.append(make_activity("login", created_at=at(minutes=minute), divisor=0))
        if minute % 9 == 0:
            raws.append(make_activity("login", created_at=at(minutes=minute), flag="no-key"))
        if minute % 11 == 0:
            raws.append(make_activity("role_updated", created_at=at(minutes=minute), role=7))
        if minute == 20:
            raws.append(make_activity("role_updated", created_at=at(minutes=minute), role="ADMIN"))
    feed = tmp_path / "feed.jsonl"
    lines = [json.dumps(r) for r in raws]
    lines[5:5] = ["{not json", json.dumps({"id": "x", "type": "login"})]  # two rejects
    feed.write_text("\n".join(lines) + "\n")
    folder = _failing_rules(rules_dir)
    one = _replay(tmp_path, [str(feed)], folder.load(), 1, "one")
    two = _replay(tmp_path, [str(feed)], folder.load(), 2, "two")
    kinds = {(json.loads(a)["kind"], json.loads(a)["rule_id"]) for a in one["alerts"]}
    assert {
        ("rule_error", "t.fragile"),  # rule() and dedup()
        ("rule_error", "t.novel"),  # the learn_from path
        ("rule_error", "t.teach"),  # the learn path
        ("detection", "t.watch"),  # "admin" learned at minute 20
        ("detection", "t.fragile"),
    } <= kinds
    assert one["stats"].rejected == 2 and one["stats"].rule_errors > 0
    for key in ("alerts", "stats", "state", "outbox", "quarantine", "reported"):
        assert two[key] == one[key], key


def test_an_unreadable_input_fails_as_it_does_in_one_process(tmp_path):
    rules = load_rules([bundled_rules_dir()])
    missing = str(tmp_path / "nowhere.jsonl")
    with pytest.raises(InputError) as one:
        replay([missing], rules, ReplayOptions(quarantine=None), out=io.StringIO())
    with pytest.raises(InputError) as two:
        replay([missing], rules, ReplayOptions(quarantine=None, processes=2), out=io.StringIO())
    assert str(two.value) == str(one.value)


def _feed(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "feed.jsonl"
    write_jsonl(path, generate(count, seed=2))
    return path


def test_a_child_that_dies_is_reported_not_taken_for_the_end(tmp_path):
    feed = _feed(tmp_path, 3000)
    pipeline = Pipeline(load_rules([bundled_rules_dir()]), MemoryStore())

    def records():
        for number, record in enumerate(reorder(read_source(str(feed)))):
            if number == 2000:
                os.kill(os.getpid(), 9)
            yield record

    with pytest.raises(EvaluatorFailed, match="killed by signal 9"):
        run_forked(pipeline, records)


def test_when_this_side_fails_the_child_is_stopped_not_waited_for(tmp_path, rules_dir):
    feed = _feed(tmp_path, 20_000)  # far more than the pipe holds
    rules_dir.write("all.yml", "id: t.all\nname: all\nseverity: info\nmatch: {id: {exists: true}}")

    def sink(change):
        raise RuntimeError("the sink broke")

    pipeline = Pipeline(rules_dir.load(), MemoryStore(), [sink])
    before = _children()
    with pytest.raises(RuntimeError, match="the sink broke"):
        run_forked(pipeline, lambda: reorder(read_source(str(feed))))
    # Reaped: no child left behind, not even a zombie (other tests' servers, started by
    # fixtures of this same process, may be children too: only new ones count).
    assert _children() <= before


def _children() -> set[int]:
    """This process's children, zombies included (Linux)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        found.update(int(pid) for pid in (task / "children").read_text().split())
    return found


def test_the_childs_result_and_memory_come_back(tmp_path):
    feed = _feed(tmp_path, 500)
    pipeline = Pipeline(load_rules([bundled_rules_dir()]), MemoryStore())
    report = run_forked(pipeline, lambda: reorder(read_source(str(feed))), lambda: {"x": 1})
    assert report.result == {"x": 1}
    assert report.peak_rss_mb > 10
    assert pipeline.stats.activities == 500


def test_a_forwarded_record_reads_as_the_record_it_came_from(make_activity):
    raw = make_activity("login", created_at="2026-05-07T10:00:00.123456Z", organization_id="o1")
    record = parse_activity(raw)
    text = json.dumps(raw).encode()
    forwarded = ForwardedRecord(record.epoch, record.id, text)
    assert forwarded.raw == raw
    assert forwarded.created_at == record.created_at
    assert (forwarded.type, forwarded.organization_id) == ("login", "o1")
    assert forwarded.raw is forwarded.raw  # decoded once


def _replay_jsonl(tmp_path, rules_dir, source, processes, stdin=None):
    """`detect replay SOURCE --format jsonl` in a process of its own."""
    return run_detect(
        *("replay", source, "--rules", str(rules_dir.path), "--processes", str(processes)),
        *("--format", "jsonl", "--no-quarantine"),
        cwd=tmp_path,
        stdin=stdin,
    )


def test_the_cli_replays_stdin_on_two_processes_and_keeps_what_rules_print(
    tmp_path, rules_dir, make_activity
):
    rules_dir.write(
        "loud.py",
        'def rule(event):\n    if event.get("flag"):\n'
        '        print("rule saw", event["id"], end=";")\n    return True\n',
    )
    rules_dir.write(
        "loud.yml",
        "id: t.loud\nname: loud\nseverity: low\nmatch: {type: login}\npython: loud.py\n"
        'dedup: {key: "{id}"}\n',
    )
    raws = [make_activity(created_at=at(minutes=m), flag=m == 3) for m in range(6)]
    text = "".join(json.dumps(r) + "\n" for r in raws)
    runs = {n: _replay_jsonl(tmp_path, rules_dir, "-", n, stdin=text) for n in (1, 2)}
    for done in runs.values():
        assert done.returncode == 0, done.stderr
        assert done.stderr.count("rule saw activity_0004") == 1  # kept, on stderr
        assert "rule saw" not in done.stdout
    alerts = {n: [json.loads(line) for line in d.stdout.splitlines()] for n, d in runs.items()}
    assert len(alerts[1]) == 6 and alerts[2] == alerts[1]
    assert runs[2].stderr == runs[1].stderr


def test_what_rules_print_never_mixes_into_jsonl_output(tmp_path, rules_dir, make_activity):
    rules_dir.write(
        "chatty.py", 'def rule(event):\n    print("checked", event["id"])\n    return True\n'
    )
    rules_dir.write(
        "chatty.yml",
        "id: t.chatty\nname: chatty\nseverity: low\nmatch: {type: login}\npython: chatty.py\n"
        'dedup: {key: "{id}", window: 1m}\n',
    )
    raws = [make_activity(created_at=at(minutes=m)) for m in range(3000)]  # alerts close as it runs
    write_raws(tmp_path / "feed.jsonl", raws)
    done = _replay_jsonl(tmp_path, rules_dir, "feed.jsonl", 2)
    assert done.returncode == 0, done.stderr
    alerts = [json.loads(line) for line in done.stdout.splitlines()]  # every line an alert
    printed = [line for line in done.stderr.splitlines() if line.startswith("checked ")]
    assert len(printed) == len(alerts) == 3000
    one = _replay_jsonl(tmp_path, rules_dir, "feed.jsonl", 1)
    assert done.stdout == one.stdout and done.stderr == one.stderr


def test_an_array_activity_goes_across_as_read_even_when_it_would_not_re_encode(
    tmp_path, rules_dir, make_activity
):
    rules_dir.write("all.yml", "id: t.all\nname: all\nseverity: low\nmatch: {type: login}\n")
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps([make_activity(note="\ud800")]))  # a lone surrogate
    outputs = []
    for processes in (1, 2):
        out = io.StringIO()
        options = ReplayOptions(format="jsonl", quarantine=None, processes=processes)
        stats = replay([str(feed)], rules_dir.load(), options, out=out, err=io.StringIO())
        outputs.append((stats, out.getvalue()))
    assert outputs[1] == outputs[0] and outputs[0][0].alerts == 1


def test_what_was_evaluated_before_an_input_failed_is_kept_as_with_one_process(tmp_path):
    # A missing input stops a replay before anything is evaluated (above); one that
    # breaks half-way is reported, and what was read of it is kept, on either side.
    feed = _feed(tmp_path, 1700)  # not a whole number of batches
    broken = tmp_path / "broken.jsonl.gz"
    whole = gzip.compress(feed.read_bytes())
    broken.write_bytes(whole[: len(whole) * 2 // 3])
    states, errors = [], []
    for processes in (1, 2):
        path = tmp_path / f"state{processes}.db"
        store = SqliteStore(path)
        options = ReplayOptions(quarantine=None, processes=processes, reorder_capacity=50)
        stats = replay([str(broken)], load_rules([bundled_rules_dir()]), options,
                       out=io.StringIO(), err=io.StringIO(), store=store)  # fmt: skip
        store.close()
        errors.append(stats.read_errors)
        with sqlite3.connect(path) as db:
            states.append(db.execute("SELECT * FROM state ORDER BY 1, 2").fetchall())
    assert states[1] == states[0] and len(states[0]) > 100
    assert errors[1] == errors[0] and errors[0][0].source == str(broken)


class _Odd(Exception):
    def __init__(self, path, why):  # pickles, but does not unpickle
        super().__init__(f"{path}: {why}")


def test_a_child_exception_that_cannot_cross_is_reported_by_name(tmp_path):
    pipeline = Pipeline(load_rules([bundled_rules_dir()]), MemoryStore())

    def records():
        raise _Odd("feed.jsonl", "odd")
        yield

    with pytest.raises(EvaluatorFailed, match=r"_Odd: feed\.jsonl: odd"):
        run_forked(pipeline, records)


def test_a_failure_reading_from_the_child_is_raised_not_waited_on(tmp_path, monkeypatch):
    import engine.runs.forked as forked

    feed = _feed(tmp_path, 3000)
    reads = iter(range(100))
    real = forked._Receiver._read

    def failing(self):
        if next(reads) == 2:
            raise MemoryError
        return real(self)

    monkeypatch.setattr(forked._Receiver, "_read", failing)
    pipeline = Pipeline(load_rules([bundled_rules_dir()]), MemoryStore())
    with pytest.raises(EvaluatorFailed, match="reading from the evaluating process failed"):
        run_forked(pipeline, lambda: reorder(read_source(str(feed))))


def test_the_child_lets_go_of_the_state_lock(tmp_path):
    store = SqliteStore(tmp_path / "state.db")
    pipeline = Pipeline(load_rules([bundled_rules_dir()]), store)
    fd = store._lock.fileno()

    def lock_closed_here() -> bool:
        try:
            os.fstat(fd)
        except OSError:
            return True
        return False

    report = run_forked(pipeline, lambda: iter(()), lock_closed_here)
    assert report.result is True
    os.fstat(fd)  # still open here
    store.close()


def test_hooks_run_and_fail_as_with_one_process(tmp_path, rules_dir, make_activity, monkeypatch):
    """Hooks render in the correlating process when an alert needs them: as often as with
    one process, their failures reported alike, their prints in the same place."""
    rules_dir.write(
        "hooks.py",
        "def rule(event):\n    return True\n\n"
        "def title(event):\n    print('title for', event['id'], event.get('note'))\n"
        "    if event.get('bad'):\n        raise ValueError('no title for ' + event['id'])\n"
        "    return 'hello ' + event['id']\n\n"
        "def dedup(event):\n    print('dedup for', event['id'], event.get('note'))\n"
        "    return 'odd' if int(event['id'][-1]) % 2 else 'even'\n",
    )
    rules_dir.write(
        "hooks.yml",
        "id: t.hooks\nname: hooks\nseverity: low\nmatch: {type: login}\npython: hooks.py\n"
        "threshold: {count: 2, window: 10m}\ndedup: {window: 1m}\n",
    )
    raws = [
        make_activity(created_at=at(minutes=m), bad=m % 7 == 0, note="r\u00f4le" * (m == 9))
        for m in range(60)
    ]
    write_raws(tmp_path / "feed.jsonl", raws)
    monkeypatch.setenv("PYTHONIOENCODING", "ascii")  # the print of "rôle" fails in title()
    outputs = [_replay_jsonl(tmp_path, rules_dir, "feed.jsonl", n) for n in (1, 2)]
    assert outputs[0].returncode == 0, outputs[0].stderr
    assert outputs[1].stdout == outputs[0].stdout  # the alerts, in the same order
    assert outputs[1].stderr == outputs[0].stderr  # and the prints, kept off the JSON Lines
    assert any(line.startswith("title for") for line in outputs[0].stderr.splitlines())
    kinds = {json.loads(line)["kind"] for line in outputs[0].stdout.splitlines()}
    assert kinds == {"detection", "rule_error"}


def test_outputs_that_do_not_pickle_cross_as_json():
    from engine.detection.rule import Rendered
    from engine.runs.forked import _plain

    odd = Rendered("t", "k", "low", {"keys": {"a": 1}.keys(), "n": 1}, None, "")
    plain = _plain(odd)
    assert plain.context == {"keys": "dict_keys(['a'])", "n": 1}
    assert plain.title == "t"
    assert _plain(plain) is plain


def test_a_finish_value_that_does_not_pickle_is_reported(tmp_path):
    pipeline = Pipeline(load_rules([bundled_rules_dir()]), MemoryStore())
    with pytest.raises(EvaluatorFailed, match="generator"):
        run_forked(pipeline, lambda: iter(()), lambda: (x for x in ()))


def test_what_rules_write_anywhere_comes_out_where_one_process_writes_it(
    tmp_path, rules_dir, make_activity, monkeypatch
):
    rules_dir.write(
        "loud.py",
        "import sys\n\ndef rule(event):\n    print('rule', event['id'], file=sys.stderr)\n"
        "    return True\n\ndef title(event):\n    print('title', event['id'])\n"
        "    return 'loud'\n",
    )
    rules_dir.write(
        "loud.yml",
        "id: t.loud\nname: loud\nseverity: low\nmatch: {type: login}\npython: loud.py\n"
        'dedup: {key: "{id}", window: 1m}\n',
    )
    rules_dir.write(
        "z_counted.py",
        "def rule(event):\n    return True\n\n"
        "def dedup(event):\n    print('dedup', event['id'])\n    return 'all'\n",
    )
    rules_dir.write(
        "z_counted.yml",
        "id: t.counted\nname: counted\nseverity: low\nmatch: {type: login}\n"
        "python: z_counted.py\nthreshold: {count: 3, window: 10m}\n",
    )
    lines = [json.dumps(make_activity(created_at=at(minutes=m))) for m in range(40)]
    lines[10:10] = ["not json", "{}"]  # rejected, reported on stderr between the rules' lines
    (tmp_path / "feed.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("PYTHONIOENCODING", "utf-8-sig")  # a byte-order mark, once
    one, two = (_replay_jsonl(tmp_path, rules_dir, "feed.jsonl", n) for n in (1, 2))
    assert one.returncode == two.returncode == 0, one.stderr
    assert "title activity_0003" in one.stderr and "dedup activity_0003" in one.stderr
    assert all(line.lstrip("\ufeff").startswith("{") for line in one.stdout.splitlines())
    assert "rule activity_0003" in one.stderr and "rejected" in one.stderr
    assert (two.stdout, two.stderr) == (one.stdout, one.stderr)


def test_a_rule_that_exits_is_a_rule_error_and_the_stream_goes_on(
    tmp_path, rules_dir, make_activity
):
    rules_dir.write(
        "quits.py",
        "import sys\n\ndef rule(event):\n    print('rule saw', event['id'])\n"
        "    if event.get('last'):\n        sys.exit(3)\n    return False\n",
    )
    rules_dir.write(
        "quits.yml",
        "id: t.quits\nname: quits\nseverity: low\nmatch: {type: login}\npython: quits.py\n",
    )
    raws = [make_activity(created_at=at(minutes=m), last=m == 2) for m in range(3)]
    write_raws(tmp_path / "feed.jsonl", raws)
    one, two = (_replay_jsonl(tmp_path, rules_dir, "feed.jsonl", n) for n in (1, 2))
    assert one.returncode == two.returncode == 0, one.stderr
    assert two.stdout == one.stdout and one.stderr.count("rule saw") == 3
    assert '"kind":"rule_error"' in one.stdout and "SystemExit" in one.stdout
