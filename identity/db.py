"""Engines and sessions. Callers frame the transaction; services never commit.

On SQLite every write transaction starts with BEGIN IMMEDIATE, so that two writers queue on the
database lock instead of failing when a read lock would have to be upgraded; read-only sessions
start a plain deferred BEGIN and, with WAL, never wait for writers. On PostgreSQL the seat
service serialises per org with a row lock (identity.seats).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from identity import config

log = logging.getLogger(__name__)

# A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 5.0
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


def normalize_url(url: str) -> str:
    """Return a SQLAlchemy URL, taking the `postgres://` and `postgresql://` forms as psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def make_engine(url: str, *, begin_on_connections: bool = True, generic_plans: bool = False, **kwargs: Any) -> Engine:
    """Create the engine for `url`, with the SQLite settings this service relies on.

    On SQLite, every transaction of the engine's connections starts with an explicit BEGIN
    IMMEDIATE, unless `begin_on_connections` is False: `Database` begins its sessions'
    transactions itself (BEGIN for its readers), because a listener on the engine's connections
    turns on SQLAlchemy's event dispatch for every statement (see `_begin_sessions`).

    On PostgreSQL, every statement is planned for its own values (`_plan_options`) unless
    `generic_plans` is True (`Database.point_engine`).
    """
    url = normalize_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        engine = create_engine(url, connect_args={"options": _plan_options(url, generic_plans)}, **kwargs)
        _ping_when_idle(engine)
        return engine
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        # Made here, 0600 in a 0700 folder, before SQLite would make it with the umask's mode
        # (0644): the database holds every identity and credential hash. SQLite gives the -wal
        # and -shm files the database file's mode.
        config.create_private_file(Path(os.path.abspath(database)))
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
    _configure_sqlite(engine)
    if begin_on_connections:
        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(_SQLITE_WRITE)
    return engine


def _plan_options(url: str, generic_plans: bool) -> str:
    """The connection's `options`: the URL's own, and (unless `generic_plans`) a plan for every
    statement's own values.

    psycopg prepares a statement after its 5th run, and PostgreSQL then plans it for any values
    (a generic plan) once that looks no dearer. A generic plan knows the average group, not this
    one: `group_id = $1 AND user_id IN (1,000 ids)` went from 6 ms to 1.5 s into a group of
    100,000 members among 10,000 small groups, scanning the group's index instead of probing the
    1,000 keys (docs/performance.md). Statements stay prepared (parsed once); only planning is
    per run, a fraction of a millisecond.
    """
    given = make_url(url).query.get("options") or ""
    own = given if isinstance(given, str) else " ".join(given)
    return own if generic_plans else f"{own} -c plan_cache_mode=force_custom_plan".strip()


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only if it sat idle, instead of on every checkout.

    SQLAlchemy's `pool_pre_ping` costs a round trip per transaction, which on a busy service is
    a third of a SCIM lookup's round trips. A connection in steady use is known to be alive; one
    that sat idle (the server may have restarted, a proxy may have dropped it) is pinged, and a
    dead one is replaced before anybody sees it (the pool retries on DisconnectionError). A
    connection lost while in steady use fails its request and the pool is renewed, as with
    pre-ping when the server goes away mid-transaction.
    """
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["identity_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("identity_idle_since")
        if since is None or time.monotonic() - since <= IDLE_PING_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as error:  # any failure to ping means the connection is unusable
            raise DisconnectionError(f"pooled connection failed its ping: {error}") from error
        if not alive:
            raise DisconnectionError("pooled connection failed its ping")


def _read_snapshots(engine: Engine, read_sessions: sessionmaker[Session]) -> None:
    """On PostgreSQL, run each read transaction as REPEATABLE READ READ ONLY.

    One snapshot per read transaction, as on SQLite: a group's row and its members (which are
    streamed after it), or an export's events and checkpoints, are read as of one moment. READ
    COMMITTED gave each statement its own. psycopg puts both into the BEGIN it sends, so this
    costs no round trip. A read session sets them on its connection when it begins (psycopg has
    not sent BEGIN yet), and the pool puts them back to the server's defaults when the
    connection comes back, so that whoever takes it next writes as usual. Two other ways cost
    more: SQLAlchemy's execution options set and reset them through its dialect on every
    checkout and checkin (0.14 ms of CPU per SCIM lookup), and an engine "begin" listener turns
    on SQLAlchemy's event dispatch for every statement of every connection.
    """
    from psycopg import IsolationLevel

    @event.listens_for(read_sessions, "after_begin")
    def _snapshot(_session: Session, transaction: SessionTransaction, connection: Any) -> None:
        if transaction.nested:  # a SAVEPOINT inside a read transaction that already has them
            return
        dbapi_conn = connection.connection.driver_connection
        dbapi_conn.isolation_level = IsolationLevel.REPEATABLE_READ
        dbapi_conn.read_only = True

    @event.listens_for(engine, "checkin")
    def _back_to_defaults(dbapi_conn: Any, _record: Any) -> None:
        if dbapi_conn is not None and dbapi_conn.read_only:
            dbapi_conn.read_only = False
            dbapi_conn.isolation_level = None  # the server's default


# SQLite's transactions, begun by us (the driver runs in autocommit): a writer takes the write
# lock at once, so that two writers never both read and then fail to upgrade; a reader takes a
# snapshot at its first read.
_SQLITE_WRITE = "BEGIN IMMEDIATE"
_SQLITE_READ = "BEGIN"


def _begin_sessions(sessions: sessionmaker[Session], statement: str) -> None:
    """Begin every transaction of `sessions` on SQLite with `statement`.

    A session listener rather than one on the engine's connections: SQLAlchemy turns on its
    event dispatch for every statement of every connection of an engine that has a connection
    listener, which cost 278 Python calls and 0.06 ms of CPU per SCIM lookup (8% of it, measured
    in process, runs alternated).
    """
    @event.listens_for(sessions, "after_begin")
    def _begin(_session: Session, transaction: SessionTransaction, connection: Any) -> None:
        if not transaction.nested:  # a SAVEPOINT's begin comes inside the transaction begun here
            connection.exec_driver_sql(statement)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
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


class Database:
    """The engine and the two session factories of one database."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, begin_on_connections=False, **engine_kwargs)
        # The gateway's key check, on every LLM request: one SELECT whose joins are all on unique
        # keys, so the plan cannot depend on the values. Planned for its own values every time,
        # that SELECT cost PostgreSQL 1.6 ms of CPU per check (its plan is an 8-table join) and
        # 0.1 ms once PostgreSQL reuses a generic plan: 655 -> 1,730 checks/s (docs/performance.md).
        # Its own pool, so that a connection's plan setting never has to change (a round trip).
        # Its connections run in autocommit: each check is one statement, its own snapshot, and a
        # connection comes back with no transaction to roll back.
        # PostgreSQL's default plan cache suits nothing else here: with it everywhere, the SCIM
        # list page fell from 110 to 47 requests/s and batched usage to a third.
        self.point_engine = self.engine if self.dialect != "postgresql" else make_engine(
            self.url, generic_plans=True, isolation_level="AUTOCOMMIT", pool_reset_on_return=None, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # What makes a read session one is its begin: BEGIN (deferred) on SQLite, REPEATABLE READ
        # READ ONLY on PostgreSQL (_read_snapshots).
        self.read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Reads made only of lookups by identifying keys (an IdP's `userName eq` and the like, whose
        # every statement finds rows through a unique or near-unique index): read sessions whose
        # plans PostgreSQL may reuse, on a pool of their own (docs/performance.md).
        self.lookup_engine = self.engine if self.dialect != "postgresql" else make_engine(
            self.url, generic_plans=True, **engine_kwargs)
        self.lookup_sessions = self.read_sessions if self.lookup_engine is self.engine else sessionmaker(
            self.lookup_engine, expire_on_commit=False)
        if self.dialect == "postgresql":
            _read_snapshots(self.engine, self.read_sessions)
            _read_snapshots(self.lookup_engine, self.lookup_sessions)
        else:
            _begin_sessions(self.sessions, _SQLITE_WRITE)
            _begin_sessions(self.read_sessions, _SQLITE_READ)
        path = make_url(self.url).database if self.dialect == "sqlite" else None
        self.checkpointer = WalCheckpointer(os.path.abspath(path)) if path and path != ":memory:" else None

    def start_background_work(self) -> None:
        """Run what a serving process runs beside its requests: on SQLite, the WAL checkpointer
        (from each process's first write transaction on)."""
        if self.checkpointer is not None:
            self.checkpointer.enable()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Run a unit of work: commit when the block ends, roll back on any exception."""
        if self.checkpointer is not None:
            self.checkpointer.ensure_running()
        with self.sessions.begin() as session:
            yield session

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a write transaction, outside the domain services: bulk loads,
        maintenance, tests. Use this, not `engine.begin()`, which on SQLite runs in autocommit
        (this engine's connections do not begin transactions themselves; its sessions do)."""
        if self.checkpointer is not None:
            self.checkpointer.ensure_running()
        with self.engine.begin() as conn:
            if self.dialect == "sqlite":
                conn.exec_driver_sql(_SQLITE_WRITE)
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """Run a read-only unit of work."""
        with self.read_sessions.begin() as session:
            yield session

    @contextmanager
    def looking_up(self) -> Iterator[Session]:
        """Run a read-only unit of work whose statements find rows by identifying keys only, so that
        no plan of theirs can depend on the values (the same as `reading` on SQLite)."""
        with self.lookup_sessions.begin() as session:
            yield session

    def analyze(self) -> None:
        """Gather the query planner's statistics now (SQLite; PostgreSQL's autovacuum does its own)."""
        if self.dialect != "sqlite":
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f"PRAGMA analysis_limit={SQLITE_ANALYSIS_LIMIT}")
            conn.exec_driver_sql("ANALYZE")
            conn.commit()

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        for engine in {self.engine, self.point_engine, self.lookup_engine}:
            engine.dispose()
