"""A transient database conflict (a PostgreSQL deadlock, serialization failure or lock not available;
SQLite's lock held past the busy timeout) is a 503 with `Retry-After: 1` in each door's own format,
logged as one warning naming its kind and the request id, never a 500 (identity.db.transient_kind,
identity.web.transient). Nothing was written, and the same request sent again goes through.

The conflicts are real: a deadlock PostgreSQL detects between a request and the test's own
transaction, SQLite's write lock held by another connection.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from werkzeug.test import TestResponse

from audit import Actor
from audit.models import AuditHead
from identity import sessions
from identity.db import Database, is_transient, transient_kind
from identity.models import SessionMethod, Team, User
from identity.orgs import NewOrg
from identity.web import cookies
from identity.web.app import create_app
from identity.web.transient import CODE
from saml import links
from scim.errors import ERROR_SCHEMA
from tests.factories import counts, in_thread, wait_for_a_lock_wait
from tests.identity.test_wallet_usage import World, use, world  # noqa: F401  (world: the fixture)
from tests.saml.conftest import link_form
from tests.scim.client import Scim, scim_for

SECRET_KEY = "test-secret-key-32-characters-min"  # the `app` fixture's


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """The test database, whose SQLite connections wait 0.3 s for another's write lock, not 30."""
    database = Database(db_url, sqlite_busy_timeout=0.3)
    yield database
    database.dispose()


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme", included_seats=10)


@contextmanager
def sqlite_write_lock(db: Database) -> Iterator[None]:
    """Hold SQLite's write lock from a connection of the test's own (BEGIN IMMEDIATE), as a long writer does."""
    conn = sqlite3.connect(str(make_url(db.url).database), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def given_name(db: Database, user_id: str) -> str | None:
    with db.reading() as session:
        return session.get_one(User, user_id).given_name


def team_name(db: Database, team_id: str) -> str:
    with db.reading() as session:
        return session.get_one(Team, team_id).name


def warnings_of(logged: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in logged.records if r.name == "identity.http" and r.levelno >= logging.WARNING]


def assert_retry_warning(logged: pytest.LogCaptureFixture, response: TestResponse, kind: str) -> None:
    """One warning naming the conflict's kind and the request id, no traceback, no "unhandled error"."""
    [record] = warnings_of(logged)
    assert record.levelno == logging.WARNING and kind in record.getMessage(), record.getMessage()
    assert record.exc_info is None and record.request_id == response.headers["X-Request-Id"]  # type: ignore[attr-defined]


def assert_scim_503(response: TestResponse) -> None:
    """RFC 7644 section 3.12: SCIM's error JSON, `status` a string; the request may be sent again."""
    assert response.status_code == 503, response.data
    assert response.content_type == "application/scim+json"
    assert response.headers["Retry-After"] == "1"
    body = response.get_json()
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == "503" and "scimType" not in body
    assert "changed nothing" in body["detail"] and "again" in body["detail"]


def assert_problem_503(response: TestResponse) -> None:
    assert response.status_code == 503, response.data
    assert response.content_type == "application/problem+json" and response.headers["Retry-After"] == "1"
    body = response.get_json()
    assert body["status"] == 503 and body["code"] == CODE and "changed nothing" in body["detail"]
    assert body["request_id"] == response.headers["X-Request-Id"]


def assert_page_503(response: TestResponse) -> None:
    assert response.status_code == 503 and response.mimetype == "text/html", response.data
    assert response.headers["Retry-After"] == "1"
    page = response.get_data(as_text=True)
    assert "try again" in page and "nothing was changed" in page and "Traceback" not in page
    assert response.headers["X-Request-Id"] in page


# --- PostgreSQL: a real deadlock between a request and another transaction ---

@pytest.mark.postgres_only("a deadlock that PostgreSQL's detector breaks; SQLite runs one writer at a time")
def test_a_scim_patch_that_deadlocks_is_a_503_to_retry_and_wrote_nothing(
        db: Database, scim: Scim, logged: pytest.LogCaptureFixture) -> None:
    """A SCIM PATCH of a member locks the member's row (identity.user_profile.LOCK_LIVE_USER), writes
    it, and at commit locks its org's audit chain head (audit.log). The test holds the head, waits
    for the PATCH to queue behind it, then asks for the member's row: each waits for the other, and
    PostgreSQL's detector, which runs first in the PATCH's backend (the default deadlock_timeout of
    1 s; the test's is 30 s), aborts the PATCH's transaction."""
    user = scim.create_user("racing@acme.test", name={"givenName": "Before"})
    before = counts(db)
    logged.clear()
    answers: list[TestResponse] = []
    errors: list[BaseException] = []
    change = [{"op": "replace", "path": "name.givenName", "value": "After"}]
    with db.engine.connect() as conn:
        conn.execute(text("SET LOCAL deadlock_timeout = '30s'"))
        conn.execute(select(AuditHead.seq).where(AuditHead.org_id == scim.org_id).with_for_update())
        patcher = in_thread(lambda: answers.append(scim.patch(f"/Users/{user['id']}", change)), errors)
        wait_for_a_lock_wait(db, "the PATCH")  # for the audit head, holding the member's row
        conn.execute(select(User.id).where(User.id == user["id"]).with_for_update())  # the deadlock
        conn.rollback()
    patcher.join(30)
    assert not patcher.is_alive() and errors == []
    [answer] = answers
    assert_scim_503(answer)
    assert_retry_warning(logged, answer, "40P01 deadlock_detected")
    assert counts(db) == before and given_name(db, user["id"]) == "Before"
    again = scim.patch(f"/Users/{user['id']}", change)
    assert again.status_code == 200, again.get_json()
    assert given_name(db, user["id"]) == "After"


@pytest.mark.postgres_only("a deadlock that PostgreSQL's detector breaks; SQLite runs one writer at a time")
def test_an_admin_api_rename_that_deadlocks_is_problem_json_503(
        db: Database, client: FlaskClient, acme: NewOrg, world: World,  # noqa: F811
        logged: pytest.LogCaptureFixture) -> None:
    """The same deadlock through the admin API: a team's rename writes the team's row, then locks the
    audit head at commit; the test holds the head, then asks for the team's row."""
    before = counts(db)
    logged.clear()
    answers: list[TestResponse] = []
    errors: list[BaseException] = []
    path = f"/api/v1/orgs/{acme.org.slug}/teams/{acme.default_team_id}"

    def rename() -> None:
        answers.append(client.patch(path, headers=world.owner, json={"name": "Renamed"}))

    with db.engine.connect() as conn:
        conn.execute(text("SET LOCAL deadlock_timeout = '30s'"))
        conn.execute(select(AuditHead.seq).where(AuditHead.org_id == acme.org.id).with_for_update())
        renamer = in_thread(rename, errors)
        wait_for_a_lock_wait(db, "the rename")  # for the audit head, holding the team's row
        conn.execute(select(Team.id).where(Team.id == acme.default_team_id).with_for_update())
        conn.rollback()
    renamer.join(30)
    assert not renamer.is_alive() and errors == []
    [answer] = answers
    assert_problem_503(answer)
    assert_retry_warning(logged, answer, "40P01 deadlock_detected")
    assert counts(db) == before and team_name(db, acme.default_team_id) != "Renamed"
    again = client.patch(path, headers=world.owner, json={"name": "Renamed"})
    assert again.status_code == 200, again.get_json()
    assert team_name(db, acme.default_team_id) == "Renamed"


@pytest.fixture
def lock_timeout_client(db_url: str) -> Iterator[FlaskClient]:
    """A client of an app whose PostgreSQL sessions give up waiting for a lock after 300 ms (an
    operator's `lock_timeout` in DATABASE_URL's options), for the answers served in front of Flask."""
    database = Database(f"{db_url}?options=-c%20lock_timeout%3D300")
    app = create_app({"DATABASE": database, "DATABASE_URL": database.url, "SECRET_KEY": SECRET_KEY,
                      "BASE_URL": "http://localhost", "TESTING": True})
    yield app.test_client()
    database.dispose()


@contextmanager
def table_locked(db: Database, table: str) -> Iterator[None]:
    """Hold an ACCESS EXCLUSIVE lock on `table` (a migration's ALTER TABLE does) for the block."""
    with db.engine.connect() as conn:
        conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        yield
        conn.rollback()


@pytest.mark.postgres_only("PostgreSQL's lock_timeout (55P03) on a table a migration holds")
def test_the_key_check_in_front_of_flask_answers_a_lock_timeout_503(
        db: Database, lock_timeout_client: FlaskClient, world: World,  # noqa: F811
        logged: pytest.LogCaptureFixture) -> None:
    def check() -> TestResponse:
        return lock_timeout_client.post("/api/v1/keys/verify", json={"key": world.member_key}, headers=world.gateway)

    assert check().status_code == 200
    logged.clear()
    with table_locked(db, "api_keys"):
        answer = check()
    assert_problem_503(answer)
    assert_retry_warning(logged, answer, "55P03 lock_not_available")
    assert check().status_code == 200


@pytest.mark.postgres_only("PostgreSQL's lock_timeout (55P03) on a table a migration holds")
def test_the_scim_lookup_in_front_of_flask_answers_a_lock_timeout_503(
        db: Database, lock_timeout_client: FlaskClient, system: Actor, logged: pytest.LogCaptureFixture) -> None:
    scim = scim_for(db, lock_timeout_client, system, "Acme")
    scim.create_user("found@acme.test")
    lookup = '/Users?filter=userName eq "found@acme.test"'
    assert scim.get(lookup).status_code == 200  # the token's last-used time saved: the next is the front's
    logged.clear()
    with table_locked(db, "users"):
        answer = scim.get(lookup)
    assert_scim_503(answer)
    assert_retry_warning(logged, answer, "55P03 lock_not_available")
    assert scim.get(lookup).get_json()["totalResults"] == 1


# --- SQLite: the write lock held by another connection past the busy timeout ---

@pytest.mark.sqlite_only("SQLite's one write lock; PostgreSQL's conflicts are the deadlock tests above")
def test_a_scim_write_while_another_holds_sqlites_lock_is_a_scim_503(
        db: Database, scim: Scim, logged: pytest.LogCaptureFixture) -> None:
    user = scim.create_user("locked@acme.test", name={"givenName": "Before"})
    before = counts(db)
    logged.clear()
    change = [{"op": "replace", "path": "name.givenName", "value": "After"}]
    with sqlite_write_lock(db):
        answer = scim.patch(f"/Users/{user['id']}", change)
    assert_scim_503(answer)
    assert_retry_warning(logged, answer, "sqlite database is locked")
    assert counts(db) == before and given_name(db, user["id"]) == "Before"
    assert scim.patch(f"/Users/{user['id']}", change).status_code == 200
    assert given_name(db, user["id"]) == "After"


@pytest.mark.sqlite_only("SQLite's one write lock")
def test_a_bulk_operation_that_meets_sqlites_lock_is_that_operations_503(
        db: Database, scim: Scim, logged: pytest.LogCaptureFixture) -> None:
    """/Bulk runs each operation in its own transaction (RFC 7644 section 3.7): a conflict is the
    operation's own 503 in the BulkResponse, not a 503 for the whole request, whose earlier
    operations may have committed."""
    assert scim.get("/Users").status_code == 200  # the token's last-used time saved: not written under the lock
    before = counts(db)
    logged.clear()
    operations = [{"method": "POST", "path": "/Users", "bulkId": f"u{n}", "data": {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": f"bulk{n}@acme.test"}}
        for n in (1, 2)]
    with sqlite_write_lock(db):
        answer = scim.post("/Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                                     "Operations": operations})
    assert answer.status_code == 200, answer.get_json()
    results = answer.get_json()["Operations"]
    assert [r["status"] for r in results] == ["503", "503"]
    assert "changed nothing" in results[0]["response"]["detail"]
    assert len(warnings_of(logged)) == 2 and counts(db) == before


@pytest.mark.sqlite_only("SQLite's one write lock")
def test_admin_api_and_usage_writes_while_sqlite_is_locked_are_problem_json_503(
        db: Database, client: FlaskClient, acme: NewOrg, world: World,  # noqa: F811
        logged: pytest.LogCaptureFixture) -> None:
    before = counts(db)
    logged.clear()
    with sqlite_write_lock(db):
        team = client.post(f"/api/v1/orgs/{acme.org.slug}/teams", headers=world.owner, json={"name": "Locked"})
        debit = use(client, world, 1, "locked-1")
    assert_problem_503(team)
    assert_problem_503(debit)
    assert len(warnings_of(logged)) == 2 and counts(db) == before
    assert client.post(f"/api/v1/orgs/{acme.org.slug}/teams", headers=world.owner,
                       json={"name": "Locked"}).status_code == 201
    assert use(client, world, 1, "locked-1").status_code in (200, 429)  # the same request id, not a duplicate
    assert counts(db)["teams"] == before["teams"] + 1


class UnboundedWait(BaseException):
    """Not an Exception, so that the app's error handlers let it through to fail the test."""


@contextmanager
def writers_gate_held(db: Database) -> Iterator[None]:
    """Hold the writers' gate (identity.db_sqlite.WriterGate) through a file description of the test's
    own, as a writer of another process that keeps its transaction open does; fail the test, not hang
    it, should a request wait for it without bound (the alarm interrupts the wait)."""
    assert db.gate is not None
    fd = os.open(db.gate.path, os.O_RDWR)

    def expire(_signum: int, _frame: object) -> None:
        raise UnboundedWait("a writer still waits on the writers' gate")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(10)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.close(fd)


@pytest.mark.sqlite_only("SQLite's writers' gate")
def test_writes_while_another_holds_the_writers_gate_are_503_after_the_busy_timeout(
        db: Database, client: FlaskClient, acme: NewOrg, world: World, system: Actor,  # noqa: F811
        logged: pytest.LogCaptureFixture) -> None:
    """The gate's wait is bounded by the busy timeout (0.3 s here) as SQLite's is: an admin API write
    (a session), a usage debit (identity.usage_quick's keyed write) and a SCIM PATCH are each a 503
    to retry, having written nothing, and go through once the gate is let go of."""
    scim = scim_for(db, client, system, "Gated", included_seats=10)
    user = scim.create_user("someone@gated.test", name={"givenName": "Before"})
    before = counts(db)
    logged.clear()
    change = [{"op": "replace", "path": "name.givenName", "value": "After"}]
    with writers_gate_held(db):
        started = time.monotonic()
        team = client.post(f"/api/v1/orgs/{acme.org.slug}/teams", headers=world.owner, json={"name": "Gated"})
        debit = use(client, world, 1, "gated-1")
        patched = scim.patch(f"/Users/{user['id']}", change)
        waited = time.monotonic() - started
    assert_problem_503(team)
    assert_problem_503(debit)
    assert_scim_503(patched)
    assert 0.9 <= waited < 5  # three writers, each failed after the busy timeout
    assert len(warnings_of(logged)) == 3 and "sqlite database is locked" in warnings_of(logged)[0].getMessage()
    assert counts(db) == before and given_name(db, user["id"]) == "Before"
    assert client.post(f"/api/v1/orgs/{acme.org.slug}/teams", headers=world.owner,
                       json={"name": "Gated"}).status_code == 201
    assert use(client, world, 1, "gated-1").status_code in (200, 429)
    assert scim.patch(f"/Users/{user['id']}", change).status_code == 200
    assert given_name(db, user["id"]) == "After"


@pytest.mark.sqlite_only("SQLite's one write lock")
def test_a_console_page_while_sqlite_is_locked_is_a_503_page(
        db: Database, client: FlaskClient, acme: NewOrg, logged: pytest.LogCaptureFixture) -> None:
    """A console page touches its session (a write) before it shows anything (console.common.signed_in_caller)."""
    with db.transaction() as session:
        token = sessions.create_session(session, session.get_one(User, acme.owner.id),
                                        method=SessionMethod.LOGIN_LINK, lifetime=sessions.Lifetime())
    client.set_cookie(cookies.COOKIE, cookies.cookie_value(SECRET_KEY, token))
    logged.clear()
    with sqlite_write_lock(db):
        answer = client.get("/console/teams")
    assert_page_503(answer)
    assert_retry_warning(logged, answer, "sqlite database is locked")
    assert client.get("/console/teams").status_code == 200


@pytest.mark.sqlite_only("SQLite's one write lock")
def test_a_sign_in_link_used_while_sqlite_is_locked_is_a_503_page_and_stays_unused(
        db: Database, app: Flask, acme: NewOrg, system: Actor, logged: pytest.LogCaptureFixture) -> None:
    with db.transaction() as session:
        token = links.issue_sign_in_link(session, system, acme.org.id, "owner@acme.test")
    client = app.test_client()
    form = link_form(client, token)
    logged.clear()
    with sqlite_write_lock(db):
        answer = client.post(f"/login/link/{token}", data=form)
    assert_page_503(answer)
    assert_retry_warning(logged, answer, "sqlite database is locked")
    assert client.post(f"/login/link/{token}", data=form).status_code == 303  # the link was not used up


# --- The classification ---

def _pg_error(error: psycopg.Error) -> OperationalError:
    return OperationalError("UPDATE users ...", {}, error)


@pytest.mark.parametrize("error,kind", [
    (_pg_error(psycopg.errors.DeadlockDetected("deadlock detected")), "40P01 deadlock_detected"),
    (_pg_error(psycopg.errors.SerializationFailure("could not serialize access")), "40001 serialization_failure"),
    (_pg_error(psycopg.errors.LockNotAvailable("could not obtain lock")), "55P03 lock_not_available"),
    (OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked")), "sqlite database is locked"),
    (OperationalError("INSERT", {}, sqlite3.OperationalError("database table is locked")),
     "sqlite database table is locked"),
    # The driver's own, as identity.driver_reads' reads on the driver's cursor raise them.
    (psycopg.errors.DeadlockDetected("deadlock detected"), "40P01 deadlock_detected"),
    (sqlite3.OperationalError("database is locked"), "sqlite database is locked"),
])
def test_transient_kinds(error: DBAPIError, kind: str) -> None:
    assert is_transient(error) and transient_kind(error) == kind


@pytest.mark.parametrize("error", [
    IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("duplicate key")),
    OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: users")),
    OperationalError("SELECT", {}, psycopg.errors.QueryCanceled("canceling statement due to statement timeout")),
    RuntimeError("database is locked"),
    psycopg.errors.UniqueViolation("duplicate key"),
])
def test_other_errors_are_not_transient(error: BaseException) -> None:
    assert not is_transient(error)


def _raised(work: Any) -> BaseException:
    try:
        work()
    except BaseException as error:  # noqa: BLE001 - the error is the test's subject
        return error
    raise AssertionError("nothing was raised")


@pytest.mark.postgres_only("PostgreSQL's own errors, raised by the server")
def test_postgresql_errors_as_raised(db: Database, acme: NewOrg) -> None:
    """A lock not available (NOWAIT) is transient; a unique violation and a connection refused are not."""
    with db.engine.connect() as holder, db.engine.connect() as other:
        holder.execute(select(User.id).where(User.id == acme.owner.id).with_for_update())
        nowait = _raised(lambda: other.execute(select(User.id).where(User.id == acme.owner.id)
                                               .with_for_update(nowait=True)))
    assert transient_kind(nowait) == "55P03 lock_not_available"
    with db.engine.connect() as conn:
        unique = _raised(lambda: conn.execute(text("INSERT INTO audit_heads SELECT * FROM audit_heads LIMIT 1")))
    assert isinstance(unique, IntegrityError) and not is_transient(unique)
    refused = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 2})
    error = _raised(refused.connect)
    assert isinstance(error, OperationalError) and not is_transient(error)


@pytest.mark.sqlite_only("SQLite's own errors, raised by its driver")
def test_sqlite_errors_as_raised(db: Database, acme: NewOrg) -> None:
    def write() -> None:
        with db.begin():
            pass

    with sqlite_write_lock(db):
        locked = _raised(write)
    assert transient_kind(locked) == "sqlite database is locked"
    with db.begin() as conn:
        unique = _raised(lambda: conn.execute(text("INSERT INTO audit_heads SELECT * FROM audit_heads LIMIT 1")))
    assert isinstance(unique, IntegrityError) and not is_transient(unique)
