"""Migration 0023: existing groups are pinned to the rule that governs them (their own immutable id's
rule first, then a name-only rule; a rule naming another id never), and going back drops the pin. Both
databases, on a database with groups and rules in it."""

from __future__ import annotations

from sqlalchemy import inspect, text

from audit import Actor
from identity import groups, mappings, orgs, teams
from identity.db import Database
from identity.migrate import downgrade, upgrade


def test_0023_pins_existing_groups_to_their_governing_rule_and_goes_back(db_url: str, system: Actor) -> None:
    db = Database(db_url)
    with db.transaction() as session:
        org = orgs.create_org(session, system, "Acme", owner_email="owner@acme.test").org
        platform = teams.create_team(session, system, org.id, "Platform")
        stale = mappings.create_mapping(session, system, org.id, group_external_id="obj-deleted",
                                        group_display_name="Engineers", team_id=platform.id, team_role="admin")
        by_id = mappings.create_mapping(session, system, org.id, group_external_id="obj-new", team_id=platform.id,
                                        team_role="member")
        by_name = mappings.create_mapping(session, system, org.id, group_display_name="Sales", team_id=platform.id,
                                          team_role="member")
        engineers = groups.create_group(session, system, org.id, display_name="Engineers", external_id="obj-new").id
        sales = groups.create_group(session, system, org.id, display_name="Sales", external_id="obj-sales").id
        unruled = groups.create_group(session, system, org.id, display_name="Random", external_id="obj-random").id
    db.dispose()

    downgrade(db_url, "0022")
    back = Database(db_url)
    assert "mapping_id" not in {c["name"] for c in inspect(back.engine).get_columns("idp_groups")}
    with back.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM idp_groups")).scalar_one() == 3
    back.dispose()

    upgrade(db_url, "head")
    again = Database(db_url)
    with again.engine.connect() as conn:
        pins = dict(conn.execute(text("SELECT id, mapping_id FROM idp_groups")).all())
    assert pins == {engineers: by_id.id, sales: by_name.id, unruled: None}
    assert stale.id not in pins.values()
    again.dispose()
