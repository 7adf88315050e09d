"""Count the SQL statements a piece of work sends: on PostgreSQL each one is a round trip.

The tests that use this pin the statement lists of the hot paths (a SAML sign-in, a SCIM create),
so that a change adding a query to them fails here instead of showing up later in a benchmark.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from identity.db import Database


def _kind(statement: str) -> str:
    """Name a statement by its verb and table: `SELECT users`, `INSERT audit_events`, and a
    data-modifying WITH by all its parts: `UPDATE audit_heads + INSERT audit_events`."""
    if re.match(r"WITH\s", statement, re.IGNORECASE):
        *ctes, main = _with_parts(statement)
        return " + ".join([*(_kind(cte) for cte in ctes), _kind(main)])
    words = statement.split()
    verb = words[0].upper()
    if verb == "SELECT":
        found = _outer_from(statement)
    elif verb in ("INSERT", "DELETE"):
        found = re.search(r"\b(?:INTO|FROM)\s+(\w+)", statement, re.IGNORECASE)
    else:
        found = re.search(r"^\w+\s+(\w+)", statement)
    return f"{verb} {found.group(1) if found else '?'}"


CTE_NAME = re.compile(r"\s*,?\s*\w+\s+AS\s+(?:NOT\s+)?(?:MATERIALIZED\s+)?\(", re.IGNORECASE)


def _with_parts(statement: str) -> list[str]:
    """Split `WITH a AS (...), b AS (...) main` into the statements of a and b, then main."""
    parts, at = [], len("WITH")
    while named := CTE_NAME.match(statement, at):
        start = at = named.end()
        depth = 1
        while depth:
            depth += {"(": 1, ")": -1}.get(statement[at], 0)
            at += 1
        parts.append(statement[start:at - 1].strip())
    return [*parts, statement[at:].strip()]


def _outer_from(statement: str) -> re.Match[str] | None:
    """The table a SELECT reads from: its own FROM, not one of a subquery in its column list
    (`SELECT orgs.*, (SELECT teams.id FROM teams ...) FROM orgs` reads orgs); from a derived table
    (`FROM (SELECT ... FROM users UNION ALL ...)`), the first table inside it."""
    for found in re.finditer(r"\bFROM\s+(\w+)", statement, re.IGNORECASE):
        prefix = statement[:found.start()]
        if prefix.count("(") == prefix.count(")"):
            return found
    return re.search(r"\bFROM\s+(\w+)", statement, re.IGNORECASE)


def audit_at_commit(db: Database) -> list[str]:
    """The audit chain's statements at commit: the head locked, then the events and the head's move
    (one statement on PostgreSQL)."""
    if db.dialect == "postgresql":
        return ["SELECT audit_heads", "UPDATE audit_heads + INSERT audit_events"]
    return ["SELECT audit_heads", "UPDATE audit_heads", "INSERT audit_events"]


def new_member_rows(db: Database, seat: tuple[str, ...] = ("INSERT seat_charges", "UPDATE orgs")) -> list[str]:
    """A new member's rows (its `seat`'s (a seat bought: the ledger row, then the org's counters),
    user, its one email's row, both grants): one statement on PostgreSQL, with all but the grants in
    data-modifying WITHs (identity.users.INSERT_MEMBER); one each on SQLite, the seat's first."""
    if db.dialect == "postgresql":
        return [" + ".join(["INSERT users", "INSERT user_emails", *seat, "INSERT role_grants"])]
    return [*seat, "INSERT users", "INSERT user_emails", "INSERT role_grants"]


SERVICE_SAVEPOINT = re.compile(r"\s*SAVEPOINT\s+(?!sa_savepoint_)\w+\s*$", re.IGNORECASE)


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """Collect `VERB table` for every statement sent while the block runs (transaction control left
    out, but for a savepoint a service sets by name, `SAVEPOINT name`: a round trip its code chose,
    not SQLAlchemy's `sa_savepoint_N` of a nested transaction)."""
    sent: list[str] = []

    def collect(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if SERVICE_SAVEPOINT.match(statement) or not statement.lstrip().upper().startswith(
                ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
            sent.append(_kind(statement.strip()))

    engines = {db.engine, db.point_engine, db.lookup_engine}  # the key check's and the lookups' on PostgreSQL
    for engine in engines:
        event.listen(engine, "before_cursor_execute", collect)
    try:
        yield sent
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", collect)
