"""What a database failure means to the caller: a transient conflict safe to retry (a deadlock, a
serialization failure, a lock not available, SQLite's lock past its busy timeout, a connection the
server ended before the transaction began) or a COMMIT that lost its connection, whose outcome nobody
here can know (CommitUnknown). identity.db raises and marks them; every door answers them
(identity.web.transient)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError

# PostgreSQL's answers that abort a transaction for another's sake (SQLSTATE -> its name).
TRANSIENT_SQLSTATES = {"40P01": "deadlock_detected", "40001": "serialization_failure",
                       "55P03": "lock_not_available"}
# PostgreSQL's answers that end the connection: the server shutting down or restarting, or a backend
# ended by another (pg_terminate_backend, a failover's). Class 08 (connection exceptions) as well.
DISCONNECT_SQLSTATES = {"57P01": "admin_shutdown", "57P02": "crash_shutdown", "57P03": "cannot_connect_now"}
# SQLite's (SQLITE_BUSY once the busy timeout is spent, SQLITE_LOCKED), as its driver words them.
SQLITE_LOCKED = ("database is locked", "database table is locked")


def transient_kind(error: BaseException) -> str | None:
    """Name the transient conflict `error` is (`40P01 deadlock_detected`, `sqlite database is locked`),
    or return None when it is anything else.

    A transient conflict is the database refusing a statement for another transaction's sake: a
    deadlock, a serialization failure, a lock not available, SQLite's lock held past the busy
    timeout. The transaction is rolled back, so nothing of the request was written and the client
    may send it again. Nothing else is one: a connection refused, a unique violation, a syntax error.

    The service answers it (a 503 with Retry-After, identity.web.transient) and never re-runs the
    request itself: some requests commit more than one transaction (a SAML sign-in uses up its
    assertion in one and signs the member in with the next; a credential's last-used time is saved
    in one of its own), and a blind re-run could find its own first commit and refuse itself as a
    replay. The client knows whether its request may be sent again; the service does not.
    """
    # SQLAlchemy's wrapping of the driver's error, or the driver's own: identity.driver_reads runs
    # its reads (the key check, the SCIM token, the IdPs' lookups) on the driver's cursor.
    driver_error = error.orig if isinstance(error, DBAPIError) else error
    sqlstate = getattr(driver_error, "sqlstate", None)  # psycopg 3's errors
    if isinstance(sqlstate, str) and sqlstate in TRANSIENT_SQLSTATES:
        return f"{sqlstate} {TRANSIENT_SQLSTATES[sqlstate]}"
    lost = _lost_connection(error, driver_error, sqlstate)
    if lost is not None:
        return lost
    message = str(driver_error)
    if isinstance(driver_error, sqlite3.OperationalError) and message.startswith(SQLITE_LOCKED):
        return f"sqlite {message}"
    return None


def _lost_connection(error: BaseException, driver_error: BaseException | None, sqlstate: object) -> str | None:
    """Name the lost connection `error` is, or None.

    A connection the server ended (a restart, a failover, pg_terminate_backend) fails the first
    statement sent on it, so the request's transaction never began on the server: it changed
    nothing, and the same request on a new connection succeeds. The pools already replace it:
    a disconnect seen by any of the database's pools renews them all (identity.db_pools). A ping
    before every checkout (`pool_pre_ping`) would cost a round trip per transaction to spare this
    one answer per process after a restart.

    A connection lost by a write transaction's COMMIT is not one: the server may have committed
    (CommitUnknown, raised in its place by `Database.transaction` and the other writers).
    """
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return f"connection lost: {type(driver_error).__name__}"
    if isinstance(sqlstate, str) and (sqlstate in DISCONNECT_SQLSTATES or sqlstate.startswith("08")):
        return f"{sqlstate} {DISCONNECT_SQLSTATES.get(sqlstate, 'connection_exception')}"
    status = getattr(getattr(driver_error, "pgconn", None), "status", None)  # psycopg's connection, as it failed
    if getattr(status, "name", None) == "BAD":
        return "connection lost"
    return None


# The note a driver's error raised by COMMIT carries when the connection was lost by it (`noted_at_commit`).
LOST_AT_COMMIT = "identity.db: the connection was lost by COMMIT"


# How to learn whether a change whose COMMIT was lost was made, unless its writer knows better (`outcome_known`).
READ_IT_BACK = "read back what it changes before running it again"


class CommitUnknown(Exception):
    """The connection was lost while COMMIT was on its way: the server may have committed or not,
    and nobody here can tell which. Unlike a connection lost before COMMIT (`transient_kind`), this
    is never "nothing changed": an IdP told so sends its POST /Users again and meets a 409 for the
    member it was told was never made. Each door answers it as a 500 that says the change may have
    been made and to read it back before sending it again (identity.web.transient); the `identity`
    command as one line and its own exit status, with `check`: how to tell (identity.web.cli)."""

    def __init__(self, kind: str, check: str = READ_IT_BACK) -> None:
        super().__init__(f"{kind}: the transaction may have been committed")
        self.kind, self.check = kind, check


def commit_unknown(error: BaseException, check: str = READ_IT_BACK) -> CommitUnknown | None:
    """The CommitUnknown that `error` is, when it is a COMMIT that lost its connection; else None (a
    deadlock or a unique violation at COMMIT rolled the transaction back: its outcome is known)."""
    driver_error = error.orig if isinstance(error, DBAPIError) else error
    if LOST_AT_COMMIT not in (getattr(driver_error, "__notes__", None) or ()):
        return None
    return CommitUnknown(f"connection lost at COMMIT: {type(driver_error).__name__}", check)


@contextmanager
def outcome_known(check: str = READ_IT_BACK) -> Iterator[None]:
    """Raise CommitUnknown for a COMMIT of the block's that lost its connection (`commit_unknown`),
    `check` saying how to tell whether it was made: every writer of identity.db, and the migrations
    (identity.migrate), whose one transaction alembic commits on an engine of identity.db's."""
    try:
        yield
    except Exception as error:
        unknown = commit_unknown(error, check)
        if unknown is None:
            raise
        raise unknown from error


def noted_at_commit(commit: Callable[[], None], dbapi_connection: Any) -> None:
    """Run `commit`, noting on the error it raises when its connection is lost with it (LOST_AT_COMMIT):
    psycopg's connection is then `broken`. SQLAlchemy's wrapping of the error (DBAPIError, `orig`)
    names no statement, as for a failed connect, so COMMIT is told here, where it is the one sent."""
    try:
        commit()
    except Exception as error:
        if getattr(dbapi_connection, "broken", False) or getattr(dbapi_connection, "closed", False):
            error.add_note(LOST_AT_COMMIT)
        raise


def is_transient(error: BaseException) -> bool:
    """Tell whether `error` is a transient conflict, safe for the client to retry (`transient_kind`)."""
    return transient_kind(error) is not None
