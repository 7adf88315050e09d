"""SQLite's WAL is checkpointed by a thread of the serving process, not by the commit that fills it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

import identity.db_sqlite
from identity.db import Database
from identity.db_sqlite import SQLITE_AUTOCHECKPOINT_PAGES, SQLITE_CHECKPOINT_BYTES
from identity.web.app import create_app


@pytest.fixture
def db(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    """A fresh, migrated SQLite database: the WAL and its checkpoints are SQLite's (PostgreSQL
    checkpoints by itself), so these tests run on SQLite only."""
    path = tmp_path / "identity.db"
    shutil.copyfile(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


# Comfortably past the checkpointer's threshold, far below the connections' own automatic one.
PAYLOAD_BYTES = 2 * SQLITE_CHECKPOINT_BYTES


def _file_size(db: Database) -> int:
    assert db.checkpointer is not None
    return Path(db.checkpointer.path).stat().st_size


def _write_payload(db: Database) -> None:
    with db.transaction() as session:
        session.execute(text("CREATE TABLE IF NOT EXISTS wal_payload (n INTEGER PRIMARY KEY, data BLOB)"))
        for _ in range(PAYLOAD_BYTES // 4096):
            session.execute(text("INSERT INTO wal_payload (data) VALUES (randomblob(4000))"))


def _wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_pooled_connections_checkpoint_by_themselves_only_past_the_bound(db: Database) -> None:
    with db.reading() as session:
        assert session.scalar(text("PRAGMA wal_autocheckpoint")) == SQLITE_AUTOCHECKPOINT_PAGES
    assert SQLITE_AUTOCHECKPOINT_PAGES * 4096 > 10 * PAYLOAD_BYTES


def test_without_the_thread_a_commit_leaves_its_pages_in_the_wal(db: Database) -> None:
    assert db.checkpointer is not None and not db.checkpointer.running
    before = _file_size(db)
    _write_payload(db)
    time.sleep(1.0)  # several of the checkpointer's rounds, had it been running
    assert _file_size(db) == before  # the new pages are in the WAL only


def test_the_serving_app_runs_the_thread_and_it_moves_the_wal_into_the_database(db: Database) -> None:
    create_app({"DATABASE": db, "SECRET_KEY": "test", "TESTING": True})
    assert db.checkpointer is not None and not db.checkpointer.running  # no thread before the first write
    before = _file_size(db)
    _write_payload(db)
    assert db.checkpointer.running
    # The commit returned with its pages in the WAL; the thread copies them into the file (which
    # grows by less than the payload where the pages reuse free ones).
    assert _wait_for(lambda: _file_size(db) >= before + PAYLOAD_BYTES // 2)
    with db.reading() as session:
        assert session.scalar(text("SELECT count(*) FROM wal_payload")) == PAYLOAD_BYTES // 4096
    db.checkpointer.stop()
    assert not db.checkpointer.running


def test_a_round_checkpoints_only_a_wal_that_changed_since_it_was_all_copied(db: Database) -> None:
    assert db.checkpointer is not None
    conn = sqlite3.connect(db.checkpointer.path, isolation_level=None)
    try:
        assert not db.checkpointer.checkpoint(conn)  # a small WAL is left to grow
        _write_payload(db)
        assert db.checkpointer.checkpoint(conn)
        assert not db.checkpointer.checkpoint(conn)  # nothing new: no checkpoint every round
        with db.transaction() as session:
            session.execute(text("INSERT INTO wal_payload (data) VALUES (randomblob(10))"))
        assert db.checkpointer.checkpoint(conn)
    finally:
        conn.close()


def test_a_forked_worker_starts_its_own_thread_with_its_first_write(db: Database) -> None:
    """A gunicorn worker forked from a master that loaded the app (`--preload`) checkpoints too."""
    assert db.checkpointer is not None
    db.start_background_work()
    with db.transaction() as session:
        session.execute(text("SELECT 1"))
    assert db.checkpointer.running
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: threads do not survive a fork
        try:
            inherited = db.checkpointer.running
            with db.transaction() as session:
                session.execute(text("SELECT 1"))
            os.write(write, bytes([int(inherited), int(db.checkpointer.running)]))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 2) == bytes([0, 1])
    assert db.checkpointer.running  # the parent's thread is untouched
    db.checkpointer.stop()
    with db.transaction() as session:  # stopped means stopped: a write does not restart it
        session.execute(text("SELECT 1"))
    assert not db.checkpointer.running


def test_processes_that_do_not_serve_start_no_thread(db: Database) -> None:
    """The CLI's writes rely on the connections' own bound."""
    assert db.checkpointer is not None
    with db.transaction() as session:
        session.execute(text("SELECT 1"))
    assert not db.checkpointer.running


def test_a_fork_waits_for_a_checkpoint_in_progress(db: Database) -> None:
    """A child must not start with SQLite's mutexes held by a checkpointer thread it does not have."""
    assert db.checkpointer is not None
    _write_payload(db)
    conn = sqlite3.connect(db.checkpointer.path, isolation_level=None)
    try:
        identity.db_sqlite._SQLITE_CALLS.acquire()  # as a checkpointer thread holds it inside SQLite
        threading.Timer(0.5, identity.db_sqlite._SQLITE_CALLS.release).start()  # its checkpoint ends
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        waited = time.monotonic() - started
        os.waitpid(pid, 0)
        assert waited >= 0.4  # fork() waited for the checkpoint to leave SQLite
        assert db.checkpointer.checkpoint(conn)  # and the lock is free again afterwards
    finally:
        conn.close()


def test_a_database_file_that_went_away_is_not_made_anew(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'gone.db'}")
    (tmp_path / "gone.db").unlink()  # made private by Database (identity.db.make_engine), then gone
    try:
        assert database.checkpointer is not None
        database.start_background_work()
        database.checkpointer.ensure_running()  # the file was never made: the thread gives up
        assert _wait_for(lambda: not database.checkpointer.running)
        assert not (tmp_path / "gone.db").exists()
    finally:
        database.dispose()


def test_in_memory_databases_have_no_checkpointer() -> None:
    database = Database("sqlite://")
    try:
        assert database.checkpointer is None
        database.start_background_work()
    finally:
        database.dispose()
