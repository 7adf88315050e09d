"""0013b: every existing user gets its userName key, and email rows their address key, on both databases."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import text

from audit import Actor
from identity import users
from identity.db import Database
from identity.errors import Conflict
from identity.migrate import downgrade, upgrade
from identity.service import run
from tests.identity.test_migrations import _insert_org

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _insert_user(conn, uid: str, user_name: str, *, email: str | None = None, attributes: dict | None = None,
                 deleted: bool = False) -> None:
    conn.execute(text("INSERT INTO users (id, org_id, user_name, email, active, has_seat, source, attributes, "
                      "created_at, updated_at, deleted_at, version) VALUES (:id, 'o1', :name, :email, true, false, "
                      "'scim', :attributes, :t, :t, :deleted, 1)"),
                 {"id": uid, "name": user_name, "email": email, "attributes": json.dumps(attributes or {}), "t": NOW,
                  "deleted": NOW if deleted else None})


def test_existing_users_get_their_keys(db_url: str, system: Actor) -> None:
    downgrade(db_url, "0012")  # the schema before issue 14, with users written the way it wrote them
    scratch = Database(db_url)
    with scratch.begin() as conn:
        _insert_org(conn, NOW)
        conn.execute(text("INSERT INTO teams (id, org_id, name, created_at, is_default) "
                          "VALUES ('default-o1', 'o1', 'Default', :t, true)"), {"t": NOW})
        _insert_user(conn, "u1", "Stra\u00dfe@X.com", email="Stra\u00dfe@X.com")
        _insert_user(conn, "u2", "A\u030aSA@x.com", attributes={"emails": [{"value": "A\u030aSA@Home.org",
                                                                             "type": "home"}]})
        _insert_user(conn, "u3", "gone@x.com", deleted=True)
        conn.execute(text("INSERT INTO user_emails (org_id, user_id, value, type, \"primary\") VALUES "
                          "('o1', 'u1', 'straße@x.com', 'work', true), ('o1', 'u2', 'a\u030asa@home.org', 'home', false)"))
    scratch.dispose()
    upgrade(db_url)
    migrated = Database(db_url)
    with migrated.engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT id, user_name_key FROM users ORDER BY id")).all())
        emails = [tuple(r) for r in conn.execute(text("SELECT user_id, value, type FROM user_emails ORDER BY user_id"))]
    assert keys == {"u1": "strasse@x.com", "u2": "\u00e5sa@x.com", "u3": "gone@x.com"}
    assert emails == [("u1", "strasse@x.com", "work"), ("u2", "\u00e5sa@home.org", "home")]
    # The unique index now says "one name": the composed spelling of u2's name and STRASSE are taken.
    for taken in ("\u00c5SA@x.com", "STRASSE@x.com"):
        with pytest.raises(Conflict):
            run(migrated, system, users.provision_user, "o1", user_name=taken, source="scim")
    with migrated.reading() as session:
        assert users.find_by_user_name_or_removed(session, "o1", "GONE@x.com") == (None, True)
    migrated.dispose()


def test_live_users_that_become_one_name_stop_the_upgrade_and_are_named(db_url: str) -> None:
    downgrade(db_url, "0012")
    scratch = Database(db_url)
    with scratch.begin() as conn:
        _insert_org(conn, NOW)
        _insert_user(conn, "u1", "Stra\u00dfe")  # lower() told these apart; the key does not
        _insert_user(conn, "u2", "STRASSE")
    scratch.dispose()
    with pytest.raises(RuntimeError, match="strasse"):
        upgrade(db_url)
