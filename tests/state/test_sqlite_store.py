"""What only the SQLite state store promises: its journal and folds, atomic commits, WAL
mode, the read cache and the one-writer lock. The contract every store keeps (durability,
pending writes, purge, alerts, correlation across restarts) is tests/state/."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from engine.errors import StateInUseError
from engine.state.sqlite import FOLD_EVERY, SqliteStore


def crash(store: SqliteStore) -> None:
    """The process dies: the operating system closes its files (and releases its lock);
    nothing more is written."""
    store._db.close()
    store._lock.close()


def peek(path, sql: str, *args):
    """Read the database through a second, independent connection."""
    other = sqlite3.connect(str(path))
    try:
        return other.execute(sql, args).fetchall()
    finally:
        other.close()


def test_nothing_is_visible_to_other_connections_before_commit(tmp_path):
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    store.put("ns", "key", {"v": 1})
    store.set_meta("checkpoint", "c1")
    store.save_alert(
        {"alert_id": "al_1", "rule_id": "r", "kind": "detection", "severity": "low"}, notify=True
    )
    assert peek(path, "SELECT * FROM state") == []
    assert peek(path, "SELECT * FROM meta") == []
    assert peek(path, "SELECT * FROM alerts") == []
    store.commit()
    # State changes land in the journal first, the state table at the next fold.
    (journal,) = peek(path, "SELECT changes FROM journal")
    assert json.loads(journal[0]) == [["ns", "key", {"v": 1}, None, False]]
    assert peek(path, "SELECT key, value FROM meta") == [("checkpoint", '"c1"')]
    assert peek(path, "SELECT alert_id, notify FROM alerts") == [("al_1", 1)]
    store.close()
    assert peek(path, "SELECT namespace, key, value FROM state") == [("ns", "key", '{"v":1}')]
    assert peek(path, "SELECT * FROM journal") == []


def test_the_journal_folds_into_the_table_each_key_once(tmp_path):
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    for n in range(FOLD_EVERY - 1):
        store.put("ns", "busy", n, expires=float(n))
        store.put("ns", f"once{n}", n)
        store.commit()
    assert len(peek(path, "SELECT seq FROM journal")) == FOLD_EVERY - 1
    assert peek(path, "SELECT * FROM state") == []
    store.delete("ns", "once0")
    store.commit()  # the FOLD_EVERY-th commit folds
    assert peek(path, "SELECT * FROM journal") == []
    rows = dict(peek(path, "SELECT key, value FROM state"))
    assert rows["busy"] == str(FOLD_EVERY - 2)
    assert "once0" not in rows and len(rows) == FOLD_EVERY - 1
    assert store.get("ns", "busy") == FOLD_EVERY - 2
    assert store.get("ns", "once0") is None
    store.close()


def test_a_crash_between_folds_loses_no_committed_change(tmp_path):
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    store.put("ns", "kept", {"v": 1}, expires=5.0)
    store.put("ns", "dropped", 1)
    store.commit()
    store.delete("ns", "dropped")
    store.put("ns", "kept", {"v": 2}, expires=6.0)
    store.commit()
    store.put("ns", "uncommitted", 1)
    crash(store)  # the process dies: no close(), no fold

    reopened = SqliteStore(path)
    assert reopened.get("ns", "kept") == {"v": 2}
    assert reopened.get("ns", "dropped") is None
    assert reopened.get("ns", "uncommitted") is None
    assert peek(path, "SELECT * FROM journal") == []  # folded on open
    assert peek(path, "SELECT key, value, expires FROM state") == [("kept", '{"v":2}', 6.0)]
    reopened.close()


def test_a_failing_commit_writes_nothing(tmp_path):
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    store.put("ns", "key", {"v": 1})
    store.set_meta("checkpoint", "c1")
    # an outbox row without rule_id fails inside the transaction, after the state rows
    store.save_alert({"alert_id": "al_broken"}, notify=True)
    with pytest.raises(KeyError):
        store.commit()
    assert peek(path, "SELECT * FROM state") == []
    assert peek(path, "SELECT * FROM meta") == []
    assert peek(path, "SELECT * FROM alerts") == []


def test_wal_mode_is_on(tmp_path):
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    store.put("ns", "k", 1)
    store.commit()
    assert peek(path, "PRAGMA journal_mode") == [("wal",)]
    assert (tmp_path / "state.db-wal").exists()
    store.close()


def test_a_small_read_cache_still_returns_every_value(tmp_path):
    store = SqliteStore(tmp_path / "state.db", cache_size=10)
    for n in range(50):
        store.put("ns", f"k{n}", n)
        if n == 20:
            store.commit()  # some in the journal, some still pending
    store.delete("ns", "k3")
    assert [store.get("ns", f"k{n}") for n in range(50)] == [
        None if n == 3 else n for n in range(50)
    ]
    store.close()
    reopened = SqliteStore(tmp_path / "state.db", cache_size=10)
    assert [reopened.get("ns", f"k{n}") for n in range(50)] == [
        None if n == 3 else n for n in range(50)
    ]
    assert len(reopened._values) <= 10
    reopened.close()


def test_a_large_commit_is_journaled_in_several_rows(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.state.sqlite.JOURNAL_ROW", 3)
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    for n in range(10):
        store.put("ns", f"k{n}", {"n": n})
    store.delete("ns", "k4")
    store.commit()
    assert len(peek(path, "SELECT seq FROM journal")) == 4
    crash(store)  # a crash before any fold

    reopened = SqliteStore(path)
    assert [reopened.get("ns", f"k{n}") for n in range(10)] == [
        None if n == 4 else {"n": n} for n in range(10)
    ]
    reopened.close()


def test_a_failed_fold_keeps_the_journal_and_a_reopened_store_folds_it(tmp_path, monkeypatch):
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    store.put("ns", "a", 1)
    store.commit()

    def broken(changes):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "_write_state", broken)
    monkeypatch.setattr("engine.state.sqlite.FOLD_EVERY", 1)
    store.put("ns", "b", 2)
    store.commit()  # durable in the journal; the fold fails and is left for later
    assert len(peek(path, "SELECT seq FROM journal")) == 2
    assert store.get("ns", "a") == 1 and store.get("ns", "b") == 2
    crash(store)

    reopened = SqliteStore(path)
    assert peek(path, "SELECT * FROM journal") == []
    assert dict(peek(path, "SELECT key, value FROM state")) == {"a": "1", "b": "2"}
    reopened.close()


def test_items_prefer_pending_over_journal_over_table(tmp_path):
    store = SqliteStore(tmp_path / "state.db")
    for key in ("table", "journal", "pending", "gone"):
        store.put("ns", key, "in table")
    store.close()
    store = SqliteStore(tmp_path / "state.db")
    store.put("ns", "journal", "in journal")
    store.put("ns", "pending", "in journal")
    store.delete("ns", "gone")
    store.commit()
    store.put("ns", "pending", "pending")
    store.put("ns", "new", "pending")
    assert dict(store.items("ns")) == {
        "table": "in table",
        "journal": "in journal",
        "pending": "pending",
        "new": "pending",
    }
    store.close()


def test_a_second_writer_on_the_same_state_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    with pytest.raises(StateInUseError, match=r"state\.db is in use by process \d+"):
        SqliteStore(path)
    store.close()
    SqliteStore(path).close()  # free again once the first is closed


def test_another_process_cannot_write_a_state_database_in_use(tmp_path):
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    code = (
        "import sys\nfrom engine.state.sqlite import SqliteStore\n"
        "from engine.errors import StateInUseError\n"
        "try:\n    SqliteStore(sys.argv[1])\nexcept StateInUseError as e:\n    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    assert f"in use by process {os.getpid()}" in done.stdout
    store.close()


def test_detect_replay_on_a_state_in_use_says_so_and_fails(tmp_path):
    from tests.conftest import run_detect

    path = tmp_path / "state.db"
    feed = tmp_path / "feed.jsonl"
    feed.write_text("", encoding="utf-8")
    store = SqliteStore(path)
    done = run_detect("replay", str(feed), "--state", str(path), cwd=tmp_path)
    store.close()
    assert done.returncode == 1
    assert "error:" in done.stderr and "is in use by process" in done.stderr
    assert "Traceback" not in done.stderr


def test_idle_folds_only_what_is_committed_and_only_what_the_time_allows(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.state.sqlite.IDLE_FOLD", 3)
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    seen = {"v": 1}
    store.put("ns", "a", seen)
    store.put("ns", "b", "x")
    store.commit()
    assert store.idle(1.0) == 0.0  # two keys wait: not worth a fold
    store.put("ns", "c", 3)
    store.commit()
    seen["v"] = 2  # changed on its way to being put again...
    store.put("ns", "a", seen)
    assert store.idle(1.0) == 0.0  # ...so nothing is folded while that is pending
    store.commit()
    assert store.idle(1e-6) == 0.0  # three keys take longer than a microsecond
    assert peek(path, "SELECT key FROM state") == []
    assert store.idle(1.0) > 0.0
    assert peek(path, "SELECT * FROM journal") == []
    assert dict(peek(path, "SELECT key, value FROM state")) == {
        "a": '{"v":2}',
        "b": '"x"',
        "c": "3",
    }
    store.close()


def test_a_failed_idle_fold_is_retried_later_not_raised(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.state.sqlite.IDLE_FOLD", 1)
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    store.put("ns", "a", 1)
    store.commit()
    real = store._write_state

    def broken(changes):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_write_state", broken)
    store.idle(1.0)  # logged, not raised: the journal still holds the change
    assert len(peek(path, "SELECT seq FROM journal")) == 1
    monkeypatch.setattr(store, "_write_state", real)
    store.close()
    assert dict(peek(path, "SELECT key, value FROM state")) == {"a": "1"}
