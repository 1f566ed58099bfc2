"""The state database's schema version: old files upgrade in place, newer ones are
refused with one line and exit 2, before anything is written to them."""

from __future__ import annotations

import sqlite3

import pytest

from engine.delivery.outbox import Outbox
from engine.errors import StateVersionError
from engine.state.schema import SCHEMA_VERSION
from engine.state.sqlite import SqliteStore
from tests.conftest import run_detect

# A state file as `detect` wrote it before the version was kept: no user_version, the
# deliveries table without its digest column.
UNVERSIONED = """
CREATE TABLE state (namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    expires REAL, PRIMARY KEY (namespace, key));
CREATE TABLE alerts (alert_id TEXT PRIMARY KEY, rule_id TEXT NOT NULL, kind TEXT NOT NULL,
    severity TEXT NOT NULL, opened_at TEXT NOT NULL, body TEXT NOT NULL,
    notify INTEGER NOT NULL DEFAULT 0);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE deliveries (delivery_id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL,
    destination TEXT NOT NULL, purpose TEXT NOT NULL DEFAULT 'opened', status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, queued_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL, last_attempt_at REAL, finished_at REAL,
    http_status INTEGER, reason TEXT, notice TEXT, summary_due INTEGER NOT NULL DEFAULT 0);
INSERT INTO state VALUES ('ns', 'k', '"kept"', NULL);
INSERT INTO meta VALUES ('watermark', '"2026-01-01T00:00:00.000000Z"');
"""


def _version(path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def test_a_new_file_gets_the_current_version(tmp_path):
    path = tmp_path / "state.db"
    SqliteStore(path).close()
    assert _version(path) == SCHEMA_VERSION


def test_an_unversioned_file_upgrades_in_place_and_keeps_its_rows(tmp_path):
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(UNVERSIONED)
    db.close()
    store = SqliteStore(path)
    assert store.get("ns", "k") == "kept"
    assert store.get_meta("watermark") == "2026-01-01T00:00:00.000000Z"
    store.close()
    assert _version(path) == SCHEMA_VERSION
    outbox = Outbox(path, create=False)
    outbox.close()
    db = sqlite3.connect(path)
    columns = {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert "digest_id" in columns and "journal" in tables


def _newer(path) -> None:
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()


def test_a_newer_file_is_refused_by_the_store_and_the_outbox(tmp_path):
    path = tmp_path / "state.db"
    _newer(path)
    with pytest.raises(StateVersionError, match="newer than this detect knows"):
        SqliteStore(path)
    with pytest.raises(StateVersionError):
        Outbox(path, create=False)
    assert _version(path) == SCHEMA_VERSION + 1


@pytest.mark.parametrize("command", [("status",), ("alerts", "list"), ("replay", "-")])
def test_commands_refuse_a_newer_file_in_one_line_with_exit_2(tmp_path, command):
    path = tmp_path / "state.db"
    _newer(path)
    done = run_detect(*command, "--state", str(path), cwd=tmp_path, stdin="")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "Traceback" not in done.stderr
