"""Migration 0030: groups and mapping rules keep their name's key (identity.names.name_key), computed in
Python for existing rows, and the org's groups are unique by it; two groups that are one name under the
key stop the upgrade before any change; going back restores the lower() indexes. Both databases."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect, text

from audit import Actor
from identity import groups, mappings, orgs, teams
from identity.db import Database
from identity.errors import Conflict
from identity.migrate import downgrade, upgrade

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _org(db_url: str, system: Actor) -> tuple[str, str]:
    db = Database(db_url)
    with db.transaction() as session:
        org = orgs.create_org(session, system, "Acme", owner_email="owner@acme.test").org
        platform = teams.create_team(session, system, org.id, "Platform")
        mappings.create_mapping(session, system, org.id, group_display_name="İnsan Kaynakları", team_id=platform.id,
                                team_role="member")
    db.dispose()
    return org.id, platform.id


def _add_group(db_url: str, org_id: str, group_id: str, name: str) -> None:
    db = Database(db_url)
    with db.begin() as conn:  # the table as 0029 left it: no key
        conn.execute(text("INSERT INTO idp_groups (id, org_id, display_name, attributes, created_at, updated_at, "
                          "version, from_claim) VALUES (:id, :org, :name, '{}', :t, :t, 1, false)"),
                     {"id": group_id, "org": org_id, "name": name, "t": NOW})
    db.dispose()


def test_0030_keys_existing_groups_and_rules_and_goes_back(db_url: str, system: Actor) -> None:
    org_id, _team = _org(db_url, system)
    downgrade(db_url, "0029")
    _add_group(db_url, org_id, "g1", "Équipe Paris")
    _add_group(db_url, org_id, "g2", "İnsan Kaynakları")
    upgrade(db_url, "head")
    db = Database(db_url)
    with db.engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT id, display_name_key FROM idp_groups")).all())
        rules = conn.execute(text("SELECT group_display_name_key FROM group_mappings")).scalars().all()
    assert keys == {"g1": "équipe paris", "g2": "i̇nsan kaynakları"} and rules == ["i̇nsan kaynakları"]
    with db.transaction() as session, pytest.raises(Conflict):
        groups.create_group(session, system, org_id, display_name="ÉQUIPE PARIS")
    with db.reading() as session:  # the rule naming it by name governs the group, as keyed
        from identity.group_rules import governing_rule
        from identity.models import IdpGroup
        assert governing_rule(session, session.get_one(IdpGroup, "g2")) is not None
    db.dispose()

    downgrade(db_url, "0029")
    back = Database(db_url)
    assert "display_name_key" not in {c["name"] for c in inspect(back.engine).get_columns("idp_groups")}
    assert "group_display_name_key" not in {c["name"] for c in inspect(back.engine).get_columns("group_mappings")}
    with back.reading() as session:  # an expression index again, which the inspector does not list on SQLite
        assert "uq_idp_groups_org_name" in set(session.scalars(text(
            "SELECT name FROM sqlite_master WHERE type = 'index'" if back.dialect == "sqlite"
            else "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")))
    back.dispose()
    upgrade(db_url)


@pytest.mark.sqlite_only("SQLite's lower() leaves É alone on every install; PostgreSQL's depends on the collation")
def test_0030_stops_before_any_change_on_two_groups_of_one_name_under_the_key(db_url: str, system: Actor) -> None:
    """SQLite's lower() let `ÉQUIPE` and `équipe` be two groups: the upgrade names them and changes nothing."""
    org_id, _team = _org(db_url, system)
    downgrade(db_url, "0029")
    _add_group(db_url, org_id, "g1", "ÉQUIPE")
    _add_group(db_url, org_id, "g2", "équipe")
    with pytest.raises(RuntimeError, match="ÉQUIPE"):
        upgrade(db_url, "head")
    db = Database(db_url)
    assert "display_name_key" not in {c["name"] for c in inspect(db.engine).get_columns("idp_groups")}
    with db.begin() as conn:
        conn.execute(text("UPDATE idp_groups SET display_name = 'Équipe 2' WHERE id = 'g2'"))
    db.dispose()
    upgrade(db_url, "head")
