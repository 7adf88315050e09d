"""Pooled PostgreSQL connections: pinged when they sat idle, not on every checkout."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, text

import identity.db
import identity.db_sqlite
from identity.db import Database


def _backend_pid(database: Database) -> int:
    with database.reading() as session:
        return int(session.scalar(text("SELECT pg_backend_pid()")))


@pytest.mark.postgres_only("the idle ping is set up for PostgreSQL's pool; SQLite has no server to lose")
def test_a_connection_killed_while_idle_is_replaced_before_use(db: Database, monkeypatch) -> None:
    first = _backend_pid(db)  # the pool now holds this connection
    other = Database(db.url)
    try:
        with other.transaction() as session:
            assert session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}) is True
    finally:
        other.dispose()
    monkeypatch.setattr(identity.db, "IDLE_PING_SECONDS", 0.0)  # everything counts as idle now
    second = _backend_pid(db)  # no error: the ping found the dead connection and the pool replaced it
    assert second != first


@pytest.mark.postgres_only("the idle ping is set up for PostgreSQL's pool; SQLite has no server to lose")
def test_a_failed_idle_ping_renews_the_databases_other_pools(db: Database, monkeypatch) -> None:
    """The lookups' pool, in steady use (never pinged), still held a connection the restart ended."""
    with db.lookup_engine.connect() as conn:
        looked_up = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
    first = _backend_pid(db)
    with Database(db.url).engine.connect() as conn:  # a restart: the server ends both
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"),
                     {"pids": [first, looked_up]})
        conn.commit()
    monkeypatch.setattr(identity.db, "IDLE_PING_SECONDS", 0.0)
    assert _backend_pid(db) != first  # its ping failed: replaced before use
    monkeypatch.setattr(identity.db, "IDLE_PING_SECONDS", 3600.0)  # the lookups' connection is not pinged
    with db.lookup_engine.connect() as conn:  # yet renewed with the rest: no error
        assert int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one()) != looked_up


@pytest.mark.postgres_only("the idle ping is set up for PostgreSQL's pool; SQLite has no server to lose")
def test_a_connection_in_steady_use_is_not_pinged(db: Database, monkeypatch) -> None:
    _backend_pid(db)
    pings: list[object] = []
    original = db.engine.dialect.do_ping
    monkeypatch.setattr(db.engine.dialect, "do_ping", lambda conn: pings.append(conn) or original(conn))
    for _ in range(5):
        _backend_pid(db)
    assert pings == []
    monkeypatch.setattr(identity.db, "IDLE_PING_SECONDS", 0.0)
    _backend_pid(db)
    assert len(pings) == 1


def _seed_users(database: Database, org_id: str, count: int) -> None:
    import datetime as dt
    import uuid

    from sqlalchemy import insert

    from identity.emails import rows_for
    from identity.models import User, UserEmail

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    users = [{"id": str(uuid.uuid4()), "org_id": org_id, "user_name": f"u{i}@plan.test",
              "user_name_key": f"u{i}@plan.test", "email": f"u{i}@plan.test",
              "external_id": f"ext-{i}", "active": True, "has_seat": False, "source": "scim", "attributes": {},
              "created_at": now + dt.timedelta(seconds=i), "updated_at": now, "version": 1} for i in range(count)]
    with database.begin() as conn:
        conn.execute(insert(User.__table__), users)
        conn.execute(insert(UserEmail.__table__),
                     [row for u in users for row in rows_for(org_id, u["id"], u["attributes"], u["email"])])


def _plan(database: Database, org_id: str, scim_filter: str) -> str:
    from scim import listing

    stmt = listing.users_page(org_id, listing.read_query({"filter": scim_filter}))
    with database.engine.connect() as conn:
        compiled = stmt.compile(conn, compile_kwargs={"literal_binds": True})
        return " | ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))


@pytest.mark.sqlite_only("PostgreSQL's autovacuum keeps its own statistics; Database.analyze is for SQLite")
def test_sqlite_lookups_by_external_id_and_email_use_their_index_once_analyzed(db: Database, acme) -> None:
    """Without statistics SQLite walks every user in list order; `identity serve` analyzes at start."""
    _seed_users(db, acme.org.id, 3000)
    db.analyze()
    assert "ix_users_org_live_external_id" in _plan(db, acme.org.id, 'externalId eq "ext-1500"')
    assert "ix_user_emails_value" in _plan(db, acme.org.id, 'emails[type eq "work"].value eq "U1500@plan.test"')


@pytest.mark.sqlite_only("PRAGMA optimize on checkin is SQLite's; PostgreSQL's autovacuum does this itself")
def test_pooled_sqlite_connections_refresh_statistics_now_and_then(db: Database, acme, monkeypatch) -> None:

    def analyzed() -> bool:
        with db.reading() as session:
            return bool(session.scalar(text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")))

    _seed_users(db, acme.org.id, 500)
    assert not analyzed()
    monkeypatch.setattr(identity.db_sqlite, "SQLITE_OPTIMIZE_SECONDS", 0.0)
    with db.reading() as session:  # a query that would benefit, then the connection goes back to the pool
        session.execute(text("SELECT id FROM users WHERE org_id = :o AND external_id = 'ext-1'"), {"o": acme.org.id})
    with db.reading() as session:
        session.execute(text("SELECT 1"))
    assert analyzed()


def test_a_read_transaction_sees_one_snapshot(db: Database, acme, system) -> None:
    """Reads in one transaction agree with each other on both databases: a group's row and its
    streamed members, an export and its checkpoints (PostgreSQL reads in REPEATABLE READ)."""
    from identity.models import User
    from tests.factories import provision

    count = select(func.count()).select_from(User)
    with db.reading() as session:
        before = session.scalar(count)
        provision(db, system, acme.org.id, "later@acme.test")  # committed by another transaction
        assert session.scalar(count) == before
    with db.reading() as session:
        assert session.scalar(count) == before + 1


@pytest.mark.postgres_only("transaction characteristics set on the connection are psycopg's")
def test_reads_are_snapshots_and_writes_after_them_are_not(db: Database) -> None:
    """A read transaction is REPEATABLE READ READ ONLY; the same pooled connection's next write
    transaction, through the service or through the engine, is the server's default again."""
    def characteristics(session_or_conn: Any) -> tuple[str, str]:
        return (session_or_conn.scalar(text("SHOW transaction_isolation")),
                session_or_conn.scalar(text("SHOW transaction_read_only")))

    for _ in range(2):  # alternate on one pooled connection
        with db.reading() as session:
            assert characteristics(session) == ("repeatable read", "on")
            with pytest.raises(Exception, match="read-only transaction"):
                session.execute(text("CREATE TEMP TABLE nope (x int)"))
        with db.transaction() as session:
            assert characteristics(session) == ("read committed", "off")
        with db.reading() as session:
            assert characteristics(session) == ("repeatable read", "on")
        with db.begin() as conn:
            assert characteristics(conn) == ("read committed", "off")
    assert db.engine.pool.checkedout() == 0


@pytest.mark.sqlite_only("BEGIN IMMEDIATE and the driver's autocommit are SQLite's")
def test_sqlite_writers_take_the_write_lock_at_begin_and_readers_do_not(db: Database) -> None:
    """The service's write transactions begin IMMEDIATE (two writers never both read and then
    fail to upgrade), its reads begin DEFERRED, and `Database.begin` is one transaction too."""
    import sqlite3

    from identity.models import Org

    other = sqlite3.connect(db.checkpointer.path if db.checkpointer else "", timeout=0, isolation_level=None)

    def other_can_write() -> bool:
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            assert "locked" in str(error)
            return False
        other.execute("ROLLBACK")
        return True

    try:
        with db.transaction() as session:
            session.execute(select(func.count()).select_from(Org))  # a read: the lock is already held
            assert not other_can_write()
        with db.transaction() as session, session.begin_nested():  # a SAVEPOINT first: still one BEGIN
            session.execute(select(func.count()).select_from(Org))
            assert not other_can_write()
        with db.reading() as session:
            session.execute(select(func.count()).select_from(Org))
            assert session.connection().connection.driver_connection.in_transaction
            assert other_can_write()
        with db.begin() as conn:
            conn.execute(text("CREATE TABLE scratch_rows (x INTEGER)"))
            assert not other_can_write()
        with pytest.raises(ZeroDivisionError), db.begin() as conn:
            conn.execute(text("INSERT INTO scratch_rows VALUES (1)"))
            raise ZeroDivisionError  # the insert above is rolled back with the block
        with db.reading() as session:
            assert session.scalar(text("SELECT count(*) FROM scratch_rows")) == 0
    finally:
        other.close()


@pytest.mark.sqlite_only("the query shape on SQLite; tests/scim/test_lookup_plans.py has PostgreSQL's plans")
def test_sqlite_lookups_use_their_index_before_any_analyze(db: Database, acme) -> None:
    """A lookup's rows are read behind a MATERIALIZED CTE (scim.listing), so even without statistics
    SQLite cannot trade the filter's index for a walk of the org in list order."""
    _seed_users(db, acme.org.id, 3000)
    for scim_filter, index in (('userName eq "U1500@plan.test"', "uq_users_org_user_name"),
                               ('externalId eq "ext-1500"', "ix_users_org_live_external_id"),
                               ('emails[type eq "work"].value eq "U1500@plan.test"', "ix_user_emails_value")):
        plan = _plan(db, acme.org.id, scim_filter)
        assert index in plan and "ix_users_org_created" not in plan, plan


@pytest.mark.postgres_only("plan_cache_mode is PostgreSQL's")
def test_every_statement_is_planned_for_its_own_values(db: Database) -> None:
    """No generic plans: one planned for the average group scanned a 100,000-member group's index
    for each PATCH after the fifth (1.5 s instead of 6 ms, docs/performance.md)."""
    with db.reading() as session:
        assert session.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
    other = Database(db.url + "?options=-c%20work_mem%3D8MB")
    try:
        with other.reading() as session:
            assert session.scalar(text("SHOW work_mem")) == "8MB"
            assert session.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
    finally:
        other.dispose()
