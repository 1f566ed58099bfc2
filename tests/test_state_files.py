"""Issue 18, "state files": a damaged, empty or overwritten state database is reported in
one line with the way out (exit 2, no traceback) by every command that opens it;
`detect state check` and `detect state rebuild`; a full disk reported as a full disk;
the state, its WAL, its lock and the quarantine created 0600."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from engine.cli import main
from engine.delivery.outbox import Outbox
from engine.errors import StateCorruptError, StateWriteError
from engine.state.files import open_private
from engine.state.sqlite import SqliteStore, read_summary
from tests.delivery.conftest import make_alert


def healthy(path: Path, alerts: int = 30) -> None:
    store = SqliteStore(path)
    for index in range(alerts):
        store.save_alert(make_alert(index).to_state(), notify=True)
        store.put("ns", f"key{index}", {"n": index})
    store.set_meta("checkpoint", {"cursor": "act_42"})
    store.commit()
    store.close()
    Outbox(path).close()


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2 + 100])
    elif how == "random":
        path.write_bytes(os.urandom(len(data)))
    elif how == "pages":  # the header intact, every later page overwritten
        path.write_bytes(data[:4096] + os.urandom(len(data) - 4096))


COMMANDS = [
    ["status"],
    ["alerts", "list"],
    ["replay", "{input}"],
]


@pytest.mark.parametrize("how", ["empty", "truncated", "random", "pages"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_reports_a_damaged_state_in_one_line(tmp_path, capsys, how, command):
    path = tmp_path / "state.db"
    healthy(path)
    damage(path, how)
    given = tmp_path / "in.jsonl"
    given.write_text("")
    argv = [a.replace("{input}", str(given)) for a in command] + ["--state", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "Traceback" not in err[0] and str(path) in err[0]
    assert "detect state rebuild" in err[0]


def test_an_empty_file_is_not_a_first_run(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"")
    with pytest.raises(StateCorruptError, match=r"empty \(0 bytes\).*lookback"):
        SqliteStore(path)
    with pytest.raises(StateCorruptError):
        Outbox(path)
    with pytest.raises(StateCorruptError):
        read_summary(path)
    assert path.stat().st_size == 0  # left as it was found


def test_check_and_rebuild_keep_the_checkpoint_and_the_outbox(tmp_path, capsys):
    path = tmp_path / "state.db"
    healthy(path, alerts=3000)
    assert main(["state", "check", "--state", str(path)]) == 0
    # Damage a page in the middle of the file (the alerts' bodies), not the schema.
    data = bytearray(path.read_bytes())
    middle = len(data) // 4096 // 2 * 4096
    data[middle : middle + 4096] = os.urandom(4096)
    path.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["state", "check", "--state", str(path)]) == 2
    assert "detect state rebuild" in capsys.readouterr().err
    assert main(["state", "rebuild", "--state", str(path)]) == 0
    out = capsys.readouterr().out
    assert "rebuilt" in out and ".corrupt-" in out
    kept = list(tmp_path.glob("state.db.corrupt-*"))
    assert kept and stat.S_IMODE(kept[0].stat().st_mode) == 0o600
    assert main(["state", "check", "--state", str(path)]) == 0
    meta, kinds = read_summary(path)
    assert meta["checkpoint"] == {"cursor": "act_42"}
    assert 2000 < kinds["detection"] < 3000  # what the damaged page held is gone
    store = SqliteStore(path)  # opens, migrates and folds as any run would
    assert store.get("ns", "key1") == {"n": 1}
    store.close()


def test_rebuild_of_an_unreadable_file_starts_afresh_and_says_so(tmp_path, capsys):
    path = tmp_path / "state.db"
    healthy(path)
    damage(path, "random")
    assert main(["state", "rebuild", "--state", str(path)]) == 0
    captured = capsys.readouterr()
    assert "no checkpoint could be read" in captured.err
    assert main(["state", "check", "--state", str(path)]) == 0
    SqliteStore(path).close()


class FullDisk:
    """A connection whose writes fail as SQLite's do on a full disk: the statement fails
    and SQLite ends the transaction itself, so a later ROLLBACK finds none."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __getattr__(self, name):
        return getattr(self._db, name)

    def _fail(self):
        self._db.execute("ROLLBACK")
        raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql, *args):
        if sql == "COMMIT":
            self._fail()
        return self._db.execute(sql, *args)


def test_a_full_disk_is_reported_as_a_full_disk(tmp_path, capsys):
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    store._db = FullDisk(store._db)
    store.save_alert(make_alert(1).to_state(), notify=True)
    with pytest.raises(StateWriteError, match="the disk is full") as caught:
        store.commit()
    assert "cannot rollback" not in str(caught.value)
    store._db = store._db._db
    store._lock.close()


def test_a_full_disk_in_the_outbox_is_reported_as_a_full_disk(tmp_path):
    path = tmp_path / "state.db"
    outbox = Outbox(path)
    outbox._db = FullDisk(outbox._db)
    with pytest.raises(StateWriteError, match="the disk is full"), outbox._tx():
        pass


def test_state_wal_lock_and_quarantine_files_are_private(tmp_path):
    path = tmp_path / "state.db"
    old = os.umask(0o022)
    try:
        store = SqliteStore(path)
        store.save_alert(make_alert(1).to_state(), notify=True)
        store.commit()
        outbox = Outbox(path)
        names = ["state.db", "state.db-wal", "state.db-shm", "state.db.lock"]
        for name in names:
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
        outbox.close()
        store.close()
        with open_private(tmp_path / "quarantine.jsonl") as file:
            file.write("{}\n")
        assert stat.S_IMODE((tmp_path / "quarantine.jsonl").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_file_left_0644_by_an_earlier_version_is_narrowed(tmp_path):
    path = tmp_path / "state.db"
    SqliteStore(path).close()
    path.chmod(0o644)
    SqliteStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_replay_writes_its_quarantine_0600(tmp_path, capsys):
    given = tmp_path / "in.jsonl"
    given.write_text('{"not": "an activity"}\n')
    quarantine = tmp_path / "quarantine.jsonl"
    old = os.umask(0o022)
    try:
        main(["replay", str(given), "--quarantine", str(quarantine)])
    finally:
        os.umask(old)
    assert quarantine.read_text().strip()
    assert stat.S_IMODE(quarantine.stat().st_mode) == 0o600
