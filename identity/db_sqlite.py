"""SQLite's side of identity.db: the pragmas of every connection, statistics kept fresh, and the WAL
checkpointed from a thread of its own, off the request path."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

log = logging.getLogger("identity.db")

# How often each pooled SQLite connection runs `PRAGMA optimize` (statistics for the planner).
SQLITE_OPTIMIZE_SECONDS = 600.0
# Rows ANALYZE samples per index on SQLite: enough for the planner, fast at any table size.
SQLITE_ANALYSIS_LIMIT = 1000
# WAL pages (4 KiB each) after which a committing connection checkpoints by itself. The app's
# background checkpointer (WalCheckpointer) keeps the WAL far below this; the bound only matters
# where it does not run (the CLI) or falls behind.
SQLITE_AUTOCHECKPOINT_PAGES = 10_000
# How often the background checkpointer looks at the WAL, and the size from which it checkpoints.
SQLITE_CHECKPOINT_SECONDS = 0.25
SQLITE_CHECKPOINT_BYTES = 1024 * 1024
# What the WAL file is truncated to when it is reset, after one large transaction made it larger.
SQLITE_WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024



def configure_sqlite(engine: Engine, busy_timeout: float) -> None:
    """Set the pragmas every connection needs (WAL, foreign keys, the busy timeout of `busy_timeout`
    seconds) and keep the planner's statistics fresh on checkin."""
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
        # The WAL file is reused from its start after a checkpoint, never shrunk, unless limited.
        cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_SIZE_LIMIT_BYTES}")
        cursor.close()

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_conn: Any, record: Any) -> None:
        # SQLite plans without statistics until ANALYZE has run, and then prefers walking the list
        # order's index over an index that finds the one matching row (an `externalId eq` or email
        # lookup read every user). SQLite's advice for long-lived connections is to run
        # `PRAGMA optimize` now and then: it analyzes only the tables whose statistics are
        # missing or stale and costs nothing otherwise.
        now = time.monotonic()
        last = record.info.setdefault("identity_optimized_at", now)
        if now - last < SQLITE_OPTIMIZE_SECONDS:
            return
        record.info["identity_optimized_at"] = now
        try:
            dbapi_conn.execute(f"PRAGMA analysis_limit={SQLITE_ANALYSIS_LIMIT}")
            dbapi_conn.execute("PRAGMA optimize")
        except Exception:  # statistics are an optimisation; a busy database must not fail a request
            log.warning("PRAGMA optimize failed", exc_info=True)


# Held by the checkpointer threads while they are inside SQLite, and by a forking thread across
# fork(): a child never starts with one of SQLite's mutexes held by a thread it does not have.
_SQLITE_CALLS = threading.Lock()
os.register_at_fork(before=_SQLITE_CALLS.acquire, after_in_parent=_SQLITE_CALLS.release,
                    after_in_child=_SQLITE_CALLS.release)


class WalCheckpointer:
    """Checkpoints an SQLite database's WAL from a thread of its own, off the request path.

    With SQLite's default, the connection whose commit takes the WAL past 1,000 pages copies
    them into the database file before its commit returns. A commit that writes many pages at
    once (a SCIM PATCH adding 1,000 members to a group writes 3,000 to 5,500 WAL pages) then
    pays for the checkpoint itself, on the IdP's clock. Here a daemon thread runs PASSIVE
    checkpoints whenever the WAL has grown past SQLITE_CHECKPOINT_BYTES: they never wait for, or
    block, readers and writers, and sqlite3 releases the GIL while one runs, so the copy proceeds
    beside the requests. (The first commit after a complete checkpoint still syncs the WAL's
    header, which can wait on the disk: see the README's Performance section.) Connections keep
    an automatic checkpoint at SQLITE_AUTOCHECKPOINT_PAGES as the bound should this thread stop
    or fall behind.

    `enable` only marks it wanted; the thread starts with the first write transaction of each
    process, so a gunicorn master that loaded the app (`--preload`) runs none and each worker
    runs its own (a thread does not survive a fork).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.wanted = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._done: tuple[int, int] | None = None  # the WAL's (size, mtime) when all of it was copied

    @property
    def running(self) -> bool:
        return self._pid == os.getpid() and self._thread is not None and self._thread.is_alive()

    def enable(self) -> None:
        """Have a thread run in every process that writes, from its next write on."""
        self.wanted = True

    def ensure_running(self) -> None:
        """Start the thread in this process when it is wanted and not running here yet."""
        if not self.wanted or self._pid == os.getpid():
            return
        with self._lock:
            if not self.wanted or self.running:
                return
            self._stopping = threading.Event()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, args=(self._stopping,), name="sqlite-wal-checkpointer",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (at most one checkpoint's time); it starts no more."""
        with self._lock:
            self.wanted = False
            self._stopping.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=30)

    def _run(self, stopping: threading.Event) -> None:
        try:
            with _SQLITE_CALLS:  # mode=rw: a database file that went away is not made anew, empty
                conn = sqlite3.connect(f"{Path(self.path).as_uri()}?mode=rw", uri=True, timeout=30,
                                       isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            log.warning("the WAL checkpointer cannot open the database; commits checkpoint by themselves",
                        exc_info=True)
            return
        try:
            while not stopping.wait(SQLITE_CHECKPOINT_SECONDS):
                self.checkpoint(conn)
        finally:
            with _SQLITE_CALLS:
                conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> bool:
        """Checkpoint now if the WAL has grown past SQLITE_CHECKPOINT_BYTES and changed since it was
        last wholly checkpointed; tell whether it did."""
        try:
            wal = os.stat(f"{self.path}-wal")
            seen = (wal.st_size, wal.st_mtime_ns)  # a checkpoint writes the database, not the WAL
            if wal.st_size < SQLITE_CHECKPOINT_BYTES or seen == self._done:
                return False
            with _SQLITE_CALLS:
                _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self._done = seen if frames == copied else None
            return True
        except (OSError, sqlite3.Error):  # no WAL yet, or the database is busy: the next round retries
            log.debug("WAL checkpoint skipped", exc_info=True)
            return False
