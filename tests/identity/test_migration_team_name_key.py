"""Migration 0031: teams keep their name's key (identity.names.name_key), computed in Python for
existing rows, and the org's teams are unique by it; two teams that are one name under the key stop
the upgrade before any change, naming them; going back restores the lower() index. Both databases."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect, text

from audit import Actor
from identity import groups, orgs, teams
from identity.db import Database
from identity.errors import Conflict
from identity.migrate import downgrade, upgrade
from identity.models import IdpGroup

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _org(db_url: str, system: Actor) -> str:
    db = Database(db_url)
    with db.transaction() as session:
        org = orgs.create_org(session, system, "Acme", owner_email="owner@acme.test").org
    db.dispose()
    return org.id


def _add_team(db_url: str, org_id: str, team_id: str, name: str) -> None:
    db = Database(db_url)
    with db.begin() as conn:  # the table as 0030 left it: no key
        conn.execute(text("INSERT INTO teams (id, org_id, name, created_at, is_default) "
                          "VALUES (:id, :org, :name, :t, false)"), {"id": team_id, "org": org_id, "name": name, "t": NOW})
    db.dispose()


def _indexes(db: Database) -> set[str]:
    """Index names, expression indexes too (which the inspector does not list on SQLite)."""
    with db.reading() as session:
        return set(session.scalars(text(
            "SELECT name FROM sqlite_master WHERE type = 'index'" if db.dialect == "sqlite"
            else "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")))


def test_0031_keys_existing_teams_and_goes_back(db_url: str, system: Actor) -> None:
    org_id = _org(db_url, system)
    downgrade(db_url, "0030")
    _add_team(db_url, org_id, "t1", "Équipe Paris")
    _add_team(db_url, org_id, "t2", "İnsan Kaynakları")
    upgrade(db_url, "head")
    db = Database(db_url)
    with db.engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT id, name_key FROM teams WHERE id IN ('t1', 't2')")).all())
    assert keys == {"t1": "équipe paris", "t2": "i̇nsan kaynakları"}
    with db.transaction() as session, pytest.raises(Conflict):
        teams.create_team(session, system, org_id, "ÉQUIPE PARIS")
    with db.transaction() as session:  # a mirrored group of its name adopts it
        group = groups.create_group(session, system, org_id, display_name="équipe paris", member_ids=[])
        from identity.group_membership import mirror_team
        assert mirror_team(session, system, session.get_one(IdpGroup, group.id)) == "t1"
    db.dispose()

    downgrade(db_url, "0030")
    back = Database(db_url)
    assert "name_key" not in {c["name"] for c in inspect(back.engine).get_columns("teams")}
    assert "uq_teams_org_name" in _indexes(back)
    back.dispose()
    upgrade(db_url)


def test_0031_stops_before_any_change_on_two_teams_of_one_name_under_the_key(db_url: str, system: Actor) -> None:
    """lower() let `Straße` and `STRASSE` be two teams on every database (and `ÉQUIPE` and `équipe`
    on SQLite): the upgrade names them and changes nothing."""
    org_id = _org(db_url, system)
    downgrade(db_url, "0030")
    _add_team(db_url, org_id, "t1", "Straße")
    _add_team(db_url, org_id, "t2", "STRASSE")
    with pytest.raises(RuntimeError, match="STRASSE.*Straße"):
        upgrade(db_url, "head")
    db = Database(db_url)
    assert "name_key" not in {c["name"] for c in inspect(db.engine).get_columns("teams")}
    with db.begin() as conn:
        conn.execute(text("UPDATE teams SET name = 'Strasse 2' WHERE id = 't2'"))
    db.dispose()
    upgrade(db_url, "head")
