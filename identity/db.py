"""Engines and sessions. Callers frame the transaction; services never commit.
SQLite's connection settings, WAL checkpointer and writers' gate are in identity.db_sqlite.

On SQLite every write transaction starts with BEGIN IMMEDIATE, so that two writers queue on the
database lock instead of failing when a read lock would have to be upgraded; read-only sessions
start a plain deferred BEGIN and, with WAL, never wait for writers. On a database file, the
`Database`'s writers first pass its `WriterGate` (a flock() beside the database), so that they wait
in the kernel and wake when the writer before them lets go, not in SQLite's sleeping busy handler.
On PostgreSQL the seat service serialises per org with a row lock (identity.seats).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from identity import config
from identity.db_failures import CommitUnknown as CommitUnknown
from identity.db_failures import commit_unknown as commit_unknown
from identity.db_failures import is_transient as is_transient
from identity.db_failures import noted_at_commit, outcome_known
from identity.db_failures import transient_kind as transient_kind
from identity.db_health import BoundedCheck
from identity.db_pools import renew_all, renewed_together
from identity.db_sqlite import SQLITE_ANALYSIS_LIMIT, WalCheckpointer, WriterGate, configure_sqlite

log = logging.getLogger(__name__)

# A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 5.0
# libpq's connect_timeout unless DATABASE_URL sets its own: without one, a host that accepts the
# connection and never answers (a hung server, a path that drops the answers) held every request,
# and /healthz, until gunicorn killed the worker.
CONNECT_TIMEOUT_SECONDS = 5
# The health check's statement_timeout on PostgreSQL: a load balancer gives up long before this.
HEALTH_CHECK_TIMEOUT_MS = 2000
# How long a SQLite connection waits for another's write lock before it fails with "database is
# locked" (sqlite3's `timeout`): a write transaction holds it for milliseconds, a big bulk load longer.
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0


def _note_commit_errors(engine: Engine) -> None:
    """Have the engine's dialect note the COMMITs that lose their connection (`noted_at_commit`). On the dialect,
    which this engine alone has, not as a listener of the engine's "commit" event: any listener on an
    engine's connections turns on SQLAlchemy's event dispatch for every statement (see `_begin_sessions`)."""
    do_commit = engine.dialect.do_commit

    def noting(dbapi_connection: Any) -> None:
        noted_at_commit(lambda: do_commit(dbapi_connection), dbapi_connection)

    engine.dialect.do_commit = noting  # type: ignore[method-assign]


def normalize_url(url: str) -> str:
    """Return a SQLAlchemy URL, taking the `postgres://` and `postgresql://` forms as psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def make_engine(url: str, *, begin_on_connections: bool = True, generic_plans: bool = False,
                sqlite_busy_timeout: float = SQLITE_BUSY_TIMEOUT_SECONDS, **kwargs: Any) -> Engine:
    """Create the engine for `url`, with the SQLite settings this service relies on.

    On SQLite, every transaction of the engine's connections starts with an explicit BEGIN
    IMMEDIATE, unless `begin_on_connections` is False: `Database` begins its sessions'
    transactions itself (BEGIN for its readers), because a listener on the engine's connections
    turns on SQLAlchemy's event dispatch for every statement (see `_begin_sessions`).

    On PostgreSQL, every statement is planned for its own values (`_plan_options`) unless
    `generic_plans` is True (`Database.point_engine`), and a connection that does not open within
    CONNECT_TIMEOUT_SECONDS fails (unless the URL's `connect_timeout` says otherwise). On SQLite, a
    connection waits `sqlite_busy_timeout` seconds for another's write lock (a test waits less).

    Every engine hides its statements' parameters from the errors it raises: an error nobody
    handles is logged with its message, and the parameters are tokens, links and key hashes.
    """
    url = normalize_url(url)
    kwargs["hide_parameters"] = True
    if make_url(url).get_backend_name() != "sqlite":
        connect_args: dict[str, Any] = {"options": _plan_options(url, generic_plans)}
        if "connect_timeout" not in make_url(url).query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        _ping_when_idle(engine)
        _note_commit_errors(engine)
        return engine
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        # Made here, 0600 in a 0700 folder, before SQLite would make it with the umask's mode
        # (0644): the database holds every identity and credential hash. SQLite gives the -wal
        # and -shm files the database file's mode.
        config.create_private_file(Path(os.path.abspath(database)))
    engine = create_engine(url, connect_args={"timeout": sqlite_busy_timeout, "check_same_thread": False}, **kwargs)
    configure_sqlite(engine, sqlite_busy_timeout)
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
        failure: Exception | None = None
        since = record.info.get("identity_idle_since")
        if since is None or time.monotonic() - since <= IDLE_PING_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as error:  # any failure to ping means the connection is unusable
            alive, failure = False, error
        if not alive:  # the server may have restarted: the database's other pools are renewed too
            renew_all(engine)
            raise DisconnectionError("pooled connection failed its ping" + (f": {failure}" if failure else "")) \
                from failure


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


def _begin_sessions(sessions: sessionmaker[Session], statement: str, gate: WriterGate | None = None) -> None:
    """Begin every transaction of `sessions` on SQLite with `statement`, once through `gate` if given.

    A session listener rather than one on the engine's connections: SQLAlchemy turns on its
    event dispatch for every statement of every connection of an engine that has a connection
    listener, which cost 278 Python calls and 0.06 ms of CPU per SCIM lookup (8% of it, measured
    in process, runs alternated).
    """
    @event.listens_for(sessions, "after_begin")
    def _begin(_session: Session, transaction: SessionTransaction, connection: Any) -> None:
        if not transaction.nested:  # a SAVEPOINT's begin comes inside the transaction begun here
            if gate is not None:  # let go of when the connection is back in its pool (WriterGate.attach)
                gate.enter(connection.connection.info)
            connection.exec_driver_sql(statement)


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
        # Sessions of single reads by key outside a transaction (`point_read`): no BEGIN or COMMIT.
        self.point_sessions = sessionmaker(self.point_engine, expire_on_commit=False)
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
            renewed_together(self.engine, self.point_engine, self.lookup_engine)  # one restart ends them all
            _read_snapshots(self.engine, self.read_sessions)
            _read_snapshots(self.lookup_engine, self.lookup_sessions)
        path = make_url(self.url).database if self.dialect == "sqlite" else None
        self.checkpointer = WalCheckpointer(os.path.abspath(path)) if path and path != ":memory:" else None
        # The writers' queue: on a database file only (an in-memory one, or a `file:` URI, has no
        # file of its own beside which to keep it); not on PostgreSQL, whose writers wait on row locks.
        on_file = bool(path) and path != ":memory:" and not str(path).startswith("file:")
        busy_timeout = engine_kwargs.get("sqlite_busy_timeout", SQLITE_BUSY_TIMEOUT_SECONDS)
        self.gate = WriterGate(os.path.abspath(str(path)), busy_timeout) if on_file else None
        self.health_check = BoundedCheck()
        if self.gate is not None:
            self.gate.attach(self.engine)
        if self.dialect != "postgresql":
            _begin_sessions(self.sessions, _SQLITE_WRITE, self.gate)
            _begin_sessions(self.read_sessions, _SQLITE_READ)

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
        """Run a unit of work: commit when the block ends, roll back on any exception. A connection
        lost by its COMMIT raises CommitUnknown: it may have been committed."""
        if self.checkpointer is not None:
            self.checkpointer.ensure_running()
        with outcome_known(), self.sessions.begin() as session:
            yield session

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a write transaction, outside the domain services: bulk loads,
        maintenance, tests. Use this, not `engine.begin()`, which on SQLite runs in autocommit
        (this engine's connections do not begin transactions themselves; its sessions do)."""
        if self.checkpointer is not None:
            self.checkpointer.ensure_running()
        with outcome_known(), self.engine.begin() as conn:
            if self.gate is not None:
                self.gate.enter(conn.connection.info)
            if self.dialect == "sqlite":
                conn.exec_driver_sql(_SQLITE_WRITE)
            yield conn

    @contextmanager
    def keyed_write(self) -> Iterator[Connection]:
        """A connection in a write transaction whose every statement finds its rows by a unique key
        and runs on the driver's cursor (identity.usage_quick): on PostgreSQL on the lookups' pool,
        whose plans PostgreSQL may reuse; on SQLite begun IMMEDIATE, as every writer. Committed when
        the block ends (CommitUnknown when its COMMIT loses the connection); a block that raises leaves
        its transaction open, and the connection goes back to its pool, which rolls it back (or discards
        it, when the server dropped it).

        The driver's own BEGIN and COMMIT: SQLAlchemy's transaction around statements it does not
        run cost a fifth of the quick debit's CPU."""
        if self.checkpointer is not None:
            self.checkpointer.ensure_running()
        with outcome_known(), self.lookup_engine.connect() as conn:
            driver: Any = conn.connection.driver_connection
            if self.gate is not None:
                self.gate.enter(conn.connection.info)
            if self.dialect == "sqlite":
                driver.execute(_SQLITE_WRITE)
            yield conn
            noted_at_commit(driver.commit, driver)

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

    @contextmanager
    def point_read(self) -> Iterator[Session]:
        """Read a row or two by a unique key, each statement its own snapshot, with no transaction
        around them: on PostgreSQL on the point engine (autocommit, plans it may reuse); on SQLite
        without the BEGIN the other sessions send (its driver runs in autocommit). For a
        credential checked before a write transaction of its own: one round trip, not three."""
        with self.point_sessions() as session:
            yield session

    @contextmanager
    def lookup_connection(self) -> Iterator[Connection]:
        """A connection for reads each of which is one statement by a unique key, outside any
        transaction (each statement its own snapshot): on PostgreSQL the point engine's (autocommit,
        plans it may reuse), on SQLite the driver's autocommit. No session, no BEGIN, no COMMIT:
        for scim.lookup_front, which reads the token, then the user with its groups in one statement."""
        with self.point_engine.connect() as conn:
            yield conn

    def answers(self) -> None:
        """Raise unless the database answers a trivial query now (the health check). On PostgreSQL
        it is bounded by HEALTH_CHECK_DEADLINE_SECONDS, whatever the server does (identity.db_health),
        and the server's part by HEALTH_CHECK_TIMEOUT_MS of statement time. SQLite's is a local file
        read that never waits for writers (WAL): no thread, no deadline."""
        if self.dialect == "postgresql":
            self.health_check.run(self._answers)
        else:
            self._answers()

    def _answers(self) -> None:
        with self.reading() as session:
            if self.dialect == "postgresql":
                session.execute(text(f"SET LOCAL statement_timeout = {HEALTH_CHECK_TIMEOUT_MS}"))
            session.execute(text("SELECT 1"))

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
