"""Engines and sessions. Callers frame the transaction; services never commit.

On SQLite every write transaction starts with BEGIN IMMEDIATE, so that two writers queue on the
database lock instead of failing when a read lock would have to be upgraded; read-only sessions
start a plain deferred BEGIN and, with WAL, never wait for writers. On PostgreSQL the seat
service serialises per org with a row lock (identity.seats).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

READ_ONLY = "identity_read_only"
# A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 5.0
# How often each pooled SQLite connection runs `PRAGMA optimize` (statistics for the planner).
SQLITE_OPTIMIZE_SECONDS = 600.0
# Rows ANALYZE samples per index on SQLite: enough for the planner, fast at any table size.
SQLITE_ANALYSIS_LIMIT = 1000


def normalize_url(url: str) -> str:
    """Return a SQLAlchemy URL, taking the `postgres://` and `postgresql://` forms as psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the engine for `url`, with the SQLite settings this service relies on."""
    url = normalize_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        engine = create_engine(url, **kwargs)
        _ping_when_idle(engine)
        return engine
    database = make_url(url).database
    if database and database != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(database)), exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
    _configure_sqlite(engine)
    return engine


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


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
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

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class Database:
    """The engine and the two session factories of one database."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Run a unit of work: commit when the block ends, roll back on any exception."""
        with self.sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """Run a read-only unit of work."""
        with self.read_sessions.begin() as session:
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
        self.engine.dispose()
