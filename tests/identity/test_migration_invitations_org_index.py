"""Migration 0026: `ix_invitations_org_id` (org_id alone, from 0001) goes, as 0025's index on
(org_id, email_key) leads with org_id and serves every read of an org's invitations. Both databases:
the index is gone at head, back at 0025; a database upgraded from 0025 and a fresh one end with the
same indexes; and the reads of invitations by org still read an index (EXPLAIN)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect

from audit import Actor
from identity import directory, invitations
from identity.db import Database
from identity.migrate import downgrade, upgrade
from identity.orgs import NewOrg

ORG_INDEX = "ix_invitations_org_id"
KEPT = "ix_invitations_org_email_key"


def _indexes(db_url: str) -> dict[str, tuple[str, ...]]:
    """The invitations table's indexes, by name, with their columns."""
    database = Database(db_url)
    try:
        return {index["name"]: tuple(index["column_names"])
                for index in inspect(database.engine).get_indexes("invitations")}
    finally:
        database.dispose()


def test_0026_drops_the_org_index_and_an_upgrade_from_0025_ends_as_a_fresh_database(db_url: str) -> None:
    fresh = _indexes(db_url)
    assert ORG_INDEX not in fresh and fresh[KEPT] == ("org_id", "email_key"), fresh
    downgrade(db_url, "0025")
    assert _indexes(db_url)[ORG_INDEX] == ("org_id",)
    upgrade(db_url, "head")
    assert _indexes(db_url) == fresh


def _statements_by_org(db: Database, system: Actor, org_id: str) -> list[tuple[str, Any]]:
    """The statements (and parameters) that read an org's invitations: the list (all, by status), the
    pending count, the expiry of those due."""
    sent: list[tuple[str, Any]] = []

    def collect(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if "FROM invitations" in statement and statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))
    event.listen(db.engine, "before_cursor_execute", collect)
    try:
        with db.transaction() as session:
            directory.list_invitations(session, system, org_id)
            directory.list_invitations(session, system, org_id, status="pending")
            invitations.pending_count(session, org_id)
            invitations.expire_due(session, org_id, system)
    finally:
        event.remove(db.engine, "before_cursor_execute", collect)
    assert len(sent) == 4, sent
    return sent


def test_the_reads_of_an_orgs_invitations_still_read_an_index(db: Database, system: Actor, acme: NewOrg) -> None:
    """SQLite's plans as they are; PostgreSQL's with sequential scans off (for a few rows a scan is
    cheapest): each reads the index on (org_id, email_key), by org_id."""
    with db.transaction() as session:
        for i in range(20):
            invitations.invite(session, system, acme.org.id, email=f"person{i}@acme.test")
    for statement, parameters in _statements_by_org(db, system, acme.org.id):
        with db.engine.connect() as conn:
            if db.dialect == "sqlite":
                plan = " | ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}",
                                                                               parameters))
                assert f"USING INDEX {KEPT} (org_id=?)" in plan, (statement, plan)
                continue
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = " | ".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
        assert KEPT in plan and "org_id" in plan.split("Index Cond")[1], (statement, plan)
