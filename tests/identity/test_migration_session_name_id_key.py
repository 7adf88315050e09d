"""Migration 0022: every existing session with a NameID gets its key, single logout finds it by that
key through the new index, and going back restores the old index. Both databases."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import inspect, text

from audit import Actor
from identity import orgs, sessions
from identity.db import Database
from identity.migrate import downgrade, upgrade
from tests.identity.test_migrations import _index_names

NOW = dt.datetime(2026, 1, 1)
# (id, NameID): SAML sessions named in another case and Unicode form than their IdP's logout, a link session
SESSIONS = [("s1", "Ann@Acme.test"), ("s2", "A\u030aSA@acme.test"), ("s3", None)]


def _insert_sessions(db: Database, org_id: str, user_id: str) -> None:
    with db.begin() as conn:
        for sid, name_id in SESSIONS:
            conn.execute(text(
                "INSERT INTO sso_sessions (id, org_id, user_id, method, name_id, created_at, last_seen_at, expires_at) "
                "VALUES (:id, :org_id, :user_id, :method, :name_id, :t, :t, :t)"),
                {"id": sid, "org_id": org_id, "user_id": user_id, "method": "saml" if name_id else "login_link",
                 "name_id": name_id, "t": NOW})


def test_0022_keys_existing_sessions_and_goes_back(db_url: str, system: Actor) -> None:
    first = Database(db_url)
    with first.transaction() as session:  # a member for the sessions (the sign-out's event names them)
        acme = orgs.create_org(session, system, "Acme", owner_email="owner@acme.test")
        org_id, user_id = acme.org.id, acme.owner.id
    first.dispose()
    downgrade(db_url, "0021")
    before = Database(db_url)
    _insert_sessions(before, org_id, user_id)
    before.dispose()
    upgrade(db_url, "0022")
    migrated = Database(db_url)
    with migrated.engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT id, name_id_key FROM sso_sessions")).all())
    assert keys == {"s1": "ann@acme.test", "s2": "\u00e5sa@acme.test", "s3": None}
    names = _index_names(migrated)
    assert "ix_sso_sessions_org_name_id_key" in names and "ix_sso_sessions_org_name_id" not in names
    with migrated.transaction() as session:
        ended = sessions.end_idp_sessions(session, org_id, "\u00c5sa@ACME.test", [])
    assert [each.row.id for each in ended] == ["s2"]
    migrated.dispose()

    downgrade(db_url, "0021")
    back = Database(db_url)
    assert "name_id_key" not in {column["name"] for column in inspect(back.engine).get_columns("sso_sessions")}
    names = _index_names(back)
    assert "ix_sso_sessions_org_name_id" in names and "ix_sso_sessions_org_name_id_key" not in names
    with back.engine.connect() as conn:
        assert conn.execute(text("SELECT name_id FROM sso_sessions WHERE id = 's1'")).scalar_one() == "Ann@Acme.test"
    back.dispose()
