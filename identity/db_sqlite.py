"""SQLite's side of identity.db: the pragmas of every connection, statistics kept fresh, the WAL
checkpointed from a thread of its own, off the request path, and the writers' gate (`WriterGate`):
writers queue on a lock the kernel hands over, not in SQLite's sleeping busy handler."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from identity import config
from identity.names import name_key

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
# The writers' gate: a file beside the database, `<database>-gate`, empty, only ever flock()ed.
GATE_SUFFIX = "-gate"
# A contended gate is tried again after 0.1 ms, then after twice as long each time up to 0.5 ms
# (Linux's timer slack adds some 50 us to each sleep): a waiter takes the gate at most about half
# a millisecond after its holder lets go, at a few thousand tries a second while it waits.
GATE_FIRST_PAUSE = 0.0001
GATE_MAX_PAUSE = 0.0005


def _name_key_or_null(value: Any) -> Any:
    return name_key(value) if isinstance(value, str) else value


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
        # name_key(text) in SQL: SQLite's lower() folds ASCII only (scim.sqljson.folded).
        dbapi_conn.create_function("name_key", 1, _name_key_or_null, deterministic=True)

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


# A pooled connection's open gate file, in its pool record's `info` (cleared when SQLAlchemy reconnects
# the record, after our `close` listener has closed the file).
_GATE_FILE = "identity_writer_gate"


class _GateFile:
    """One pooled connection's own open file description of the gate file (flock() conflicts between
    descriptions, so two connections of one process queue as two processes do)."""

    __slots__ = ("fd", "pid", "depth")

    def __init__(self, path: str) -> None:
        # O_CLOEXEC: a program this process starts does not keep a held gate's description alive.
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.pid = os.getpid()
        # The holding thread's count of gates held (WriterGate._depth) while this one holds it.
        self.depth: list[int] | None = None


class WriterGate:
    """The queue of one SQLite database's writers, in front of BEGIN IMMEDIATE.

    SQLite's busy handler sleeps between tries (1, 2, 5, 10 ... 100 ms): a writer that finds the
    write lock taken sleeps, and often wakes after the holder has committed and taken the lock again
    for its next request (docs/performance.md, "The one-record debit in two statements"). Here a
    writer first takes an exclusive flock() on `<database>-gate` through its connection's own file
    description, and lets go when the connection comes back to its pool, right after its COMMIT or
    ROLLBACK. A free gate costs one non-blocking flock(); a taken one is tried again after short
    sleeps (GATE_FIRST_PAUSE doubling to GATE_MAX_PAUSE), so the waiter takes it within about half a
    millisecond of its holder letting go. The kernel frees the lock of a process that dies, however
    it dies.

    The wait is bounded by the busy timeout (`timeout`, the engine's `sqlite_busy_timeout`), as
    SQLite's own wait is: a holder that keeps its transaction open (a stuck request, a long bulk
    load) makes the others fail after it with sqlite3's "database is locked" error, a transient
    conflict (identity.db.transient_kind, answered 503 with Retry-After), not wait for as long as it
    holds. Nothing was written: the error is raised before BEGIN. (A blocking flock() in a waiter
    thread, the request waiting on an Event with the timeout, measured the same on bench_usage.py
    throughput --batch 1, and needs a thread per wait; the wait before the bound, a blocking
    flock(), measured the same too.)

    The busy timeout stays: writers that do not take the gate (the CLI's raw engines, migrations, a
    sqlite3 shell) still queue through it, so correctness never depends on the gate. A thread that
    holds the gate through one connection and begins a write on another takes no gate there (it
    would wait for itself forever) and meets SQLite's lock as it would without the gate.

    Only session begins and pool events reach it: no listener on the engine's connections, which
    would dispatch an event for every statement (identity.db._begin_sessions).
    """

    def __init__(self, database_path: str, timeout: float) -> None:
        self.path = f"{database_path}{GATE_SUFFIX}"
        self.timeout = timeout
        config.create_private_file(Path(self.path))  # 0600, as the database itself
        self._local = threading.local()
        _GATES.add(self)

    def attach(self, engine: Engine) -> None:
        """Let go of the gate whenever one of `engine`'s connections comes back to the pool (after the
        pool's rollback of a transaction left open), is invalidated, closed or detached."""
        @event.listens_for(engine, "checkin", insert=True)  # before any other listener's work
        def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
            self.leave(record.info)

        @event.listens_for(engine, "close")
        def _on_close(_dbapi_conn: Any, record: Any) -> None:
            self.forget(record.info)

        @event.listens_for(engine, "detach")
        def _on_detach(_dbapi_conn: Any, record: Any) -> None:
            self.forget(record.info)

    def enter(self, info: dict[Any, Any]) -> None:
        """Wait for the gate through the connection whose pool `info` this is, unless this thread
        holds it already (through this connection or another); raise sqlite3.OperationalError
        ("database is locked: ...") if another still holds it after `timeout` seconds."""
        depth = self._depth()
        if depth[0]:
            return
        held = info.get(_GATE_FILE)
        if held is None or held.pid != os.getpid():
            if held is not None:  # a forked child: the description is the parent's; close our copy only
                os.close(held.fd)
            held = info[_GATE_FILE] = _GateFile(self.path)
        try:
            fcntl.flock(held.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._wait(held.fd)
        held.depth = depth
        depth[0] += 1

    def _wait(self, fd: int) -> None:
        """Take the gate through `fd` once its holder lets go, within `timeout` seconds."""
        deadline = time.monotonic() + self.timeout
        pause = GATE_FIRST_PAUSE
        while True:
            time.sleep(pause)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError(
                        f"database is locked: another writer held the writers' gate for more than "
                        f"{self.timeout:g} s (the busy timeout)") from None
            pause = min(pause * 2, GATE_MAX_PAUSE)

    @staticmethod
    def leave(info: dict[Any, Any]) -> None:
        """Let go of the gate if the connection whose pool `info` this is holds it; else do nothing."""
        held = info.get(_GATE_FILE)
        if held is None or held.depth is None:
            return
        if held.pid == os.getpid():
            fcntl.flock(held.fd, fcntl.LOCK_UN)
        held.depth[0] -= 1
        held.depth = None

    @classmethod
    def forget(cls, info: dict[Any, Any]) -> None:
        """Let go of the gate and close the connection's gate file (the connection is going away)."""
        cls.leave(info)
        held = info.pop(_GATE_FILE, None)
        if held is not None:
            os.close(held.fd)

    def holds(self) -> bool:
        """Tell whether this thread holds the gate."""
        return self._depth()[0] > 0

    def _depth(self) -> list[int]:
        depth: list[int] | None = getattr(self._local, "depth", None)
        if depth is None:
            depth = self._local.depth = [0]
        return depth

    def _forked(self) -> None:
        # The forking thread's count came along; the child holds nothing (its descriptions are the
        # parent's, replaced on first use).
        self._local = threading.local()


_GATES: weakref.WeakSet[WriterGate] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for gate in list(_GATES):
        gate._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)
