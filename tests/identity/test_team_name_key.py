"""A team's name is unique in its org compared by its key (identity.names.name_key), as a group's
display name is: SQL lower() leaves `É` alone on SQLite and PostgreSQL's C collation, so a mirrored
group `Équipe` made a second team beside `ÉQUIPE`, and the admin API let both names be. Both databases."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity import directory, groups, keys, teams
from identity.db import Database
from identity.models import IdpGroup, Team
from identity.orgs import NewOrg
from tests.factories import provision

# (a team's name as it stands, another spelling of it): case outside ASCII, NFD against NFC, full folding.
SPELLINGS = [("ÉQUIPE Paris", "Équipe Paris"), ("E\u0301quipe Lyon", "équipe lyon"), ("Straße", "STRASSE"),
             ("İnsan Kaynakları", "i̇nsan kaynakları")]


@pytest.mark.parametrize(("team_name", "group_name"), SPELLINGS)
def test_a_mirrored_group_adopts_the_team_of_its_name_whatever_its_letters(
        db: Database, acme: NewOrg, system: Actor, team_name: str, group_name: str) -> None:
    alice = provision(db, system, acme.org.id, "alice@acme.test")
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, team_name)
    with db.transaction() as session:
        group = groups.create_group(session, system, acme.org.id, display_name=group_name, member_ids=[alice.id])
    with db.reading() as session:
        assert session.get_one(IdpGroup, group.id).team_id == team.id
        assert [t.id for t in session.query(Team).filter(Team.org_id == acme.org.id, Team.id != acme.default_team_id)] \
            == [team.id]


@pytest.mark.parametrize(("team_name", "group_name"), SPELLINGS)
def test_the_console_finds_a_team_by_any_spelling_of_its_name(db: Database, acme: NewOrg, system: Actor,
                                                              team_name: str, group_name: str) -> None:
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, team_name)
    with db.reading() as session:
        assert directory.find_team(session, system, acme.org.id, f" {group_name} ").id == team.id


@pytest.fixture
def auth(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                  name="a", scopes=["admin"])
    return {"Authorization": f"Bearer {key.secret}"}


@pytest.mark.parametrize(("team_name", "other"), SPELLINGS + [("Platform", "PLATFORM")])
def test_creating_or_renaming_a_team_to_another_spelling_of_a_name_is_409(
        client: FlaskClient, auth: dict[str, str], team_name: str, other: str) -> None:
    url = "/api/v1/orgs/acme/teams"
    assert client.post(url, json={"name": team_name}, headers=auth).status_code == 201
    created = client.post(url, json={"name": other}, headers=auth)
    assert created.status_code == 409 and created.json["code"] == "conflict", created.json
    spare = client.post(url, json={"name": "Spare"}, headers=auth).json["id"]
    renamed = client.patch(f"{url}/{spare}", json={"name": other}, headers=auth)
    assert renamed.status_code == 409 and renamed.json["code"] == "conflict", renamed.json
