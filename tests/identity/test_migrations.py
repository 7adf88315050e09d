"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import warnings

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

import saml.models  # noqa: F401
from identity.db import Database
from identity.models import METADATAS


def _tables() -> list:
    """Every table the migrations build: the domain's metadata (with SAML's) and the audit log's."""
    return [table for metadata in METADATAS for table in metadata.tables.values()]


def _index_names(db: Database) -> set[str]:
    query = ("SELECT name FROM sqlite_master WHERE type = 'index'" if db.dialect == "sqlite"
             else "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    with db.reading() as session:
        return set(session.scalars(text(query)))


def test_every_model_index_exists_after_migrating(db: Database) -> None:
    expected = {index.name for table in _tables() for index in table.indexes}
    assert expected - _index_names(db) == set()


def test_no_drift_between_models_and_migrations(db: Database) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # expression indexes cannot be reflected; checked above
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), list(METADATAS))
    diff = [d for d in diff if not (d[0] in ("add_index", "remove_index") and _is_expression(d[1]))]
    # SQLite reflects a foreign key added by ALTER TABLE without its name: compare what it links.
    added = {_fk_shape(d[1]) for d in diff if d[0] == "add_fk"}
    removed = {_fk_shape(d[1]) for d in diff if d[0] == "remove_fk"}
    assert added == removed
    assert [d for d in diff if d[0] not in ("add_fk", "remove_fk")] == []


def _fk_shape(fk) -> tuple:
    return (fk.table.name, tuple(c.name for c in fk.columns), fk.referred_table.name,
            tuple(e.column.name for e in fk.elements))


def _is_expression(index) -> bool:
    return any(not hasattr(c, "name") or c.name is None for c in index.expressions) or \
        index.name in {i.name for t in _tables() for i in t.indexes
                       if any(not hasattr(e, "key") for e in i.expressions)}


def test_user_emails_are_backfilled_from_existing_users(db_url: str) -> None:
    """0010 fills user_emails from what each user shows: its emails array, else its email column."""
    import datetime as dt
    import json as jsonlib

    from identity.migrate import downgrade, upgrade

    downgrade(db_url, "0009")  # back to the schema before 0010, with two users in it
    scratch = Database(db_url)
    with scratch.begin() as conn:
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        _insert_org(conn, now)
        for uid, email, attributes in (
            ("u1", "first@x.test", {"emails": [{"value": "First@X.test", "type": "work", "primary": True},
                                               {"value": "home@x.test", "type": "home"}]}),
            ("u2", "Legacy@Old.org", {}),
        ):
            conn.execute(text("INSERT INTO users (id, org_id, user_name, email, active, has_seat, source, attributes, "
                              "created_at, updated_at, version) VALUES (:id, 'o1', :id, :email, true, false, 'scim', "
                              ":attributes, :t, :t, 1)"),
                         {"id": uid, "email": email, "attributes": jsonlib.dumps(attributes), "t": now})
    scratch.dispose()
    upgrade(db_url)
    with Database(db_url).engine.connect() as conn:
        rows = conn.execute(text('SELECT user_id, value, type, "primary" FROM user_emails '
                                 "ORDER BY user_id, value")).all()
    assert [tuple(r) for r in rows] == [("u1", "first@x.test", "work", True), ("u1", "home@x.test", "home", False),
                                        ("u2", "legacy@old.org", "work", True)]


def _insert_org(conn, now) -> None:
    conn.execute(text("INSERT INTO orgs (id, slug, name, created_at, included_seats, seat_price_cents, "
                      "cycle_start, cycle_end, purchased_seats, seats_used, default_role, group_sync, "
                      "idp_may_grant_owner, require_sso, audit_retention_days) VALUES ('o1', 'o', 'O', :t, 3, "
                      "1000, :t, :t, 0, 0, 'member', 'mirror', false, false, 365)"), {"t": now})


def test_memberships_survive_the_change_of_their_key(db_url: str) -> None:
    """0012 keys memberships by (user, group) and indexes them by group; the rows stay as they were."""
    import datetime as dt

    from sqlalchemy import inspect

    from identity.migrate import downgrade, upgrade

    downgrade(db_url, "0011")
    scratch = Database(db_url)
    assert inspect(scratch.engine).get_pk_constraint("idp_group_members")["constrained_columns"] == \
        ["group_id", "user_id"]
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with scratch.begin() as conn:
        _insert_org(conn, now)
        for uid in ("u1", "u2"):
            conn.execute(text("INSERT INTO users (id, org_id, user_name, email, active, has_seat, source, attributes, "
                              "created_at, updated_at, version) VALUES (:id, 'o1', :id, :id, true, false, 'scim', "
                              "'{}', :t, :t, 1)"), {"id": uid, "t": now})
        for gid in ("g1", "g2"):
            conn.execute(text("INSERT INTO idp_groups (id, org_id, display_name, attributes, created_at, updated_at, "
                              "version) VALUES (:id, 'o1', :id, '{}', :t, :t, 1)"), {"id": gid, "t": now})
        conn.execute(text("INSERT INTO idp_group_members (group_id, user_id) VALUES "
                          "('g1', 'u1'), ('g1', 'u2'), ('g2', 'u2')"))
    scratch.dispose()
    upgrade(db_url)
    migrated = Database(db_url)
    assert inspect(migrated.engine).get_pk_constraint("idp_group_members")["constrained_columns"] == \
        ["user_id", "group_id"]
    with migrated.engine.connect() as conn:
        rows = conn.execute(text("SELECT group_id, user_id FROM idp_group_members ORDER BY group_id, user_id")).all()
    assert [tuple(r) for r in rows] == [("g1", "u1"), ("g1", "u2"), ("g2", "u2")]
    assert {"ix_idp_group_members_group", "ix_role_grants_team_grant", "ix_role_grants_source_ref"} <= _index_names(migrated)
    assert "ix_idp_group_members_user" not in _index_names(migrated)


def test_the_audit_log_keeps_its_tables_on_its_own_metadata() -> None:
    """audit.models has its own Base: the domain's tables are not on it, nor audit's on the domain's."""
    domain, audit_log = METADATAS
    assert set(audit_log.tables) == {"audit_events", "audit_heads", "audit_purge_permits", "audit_checkpoints"}
    assert not set(domain.tables) & set(audit_log.tables) and {"orgs", "users", "saml_connections"} <= set(domain.tables)
