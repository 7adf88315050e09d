"""Teams through the admin API (issue 16): a team with its members, the list with your role and the
member count, the creator as admin, membership changes, the removal preview, confirmed deletion."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event, select

from audit import Actor
from identity import groups, keys, mappings, orgs, users
from identity.db import Database
from identity.models import ApiKey
from identity.orgs import NewOrg
from identity.vocabulary import KeyStatus
from tests.factories import actions, counts, provision


@pytest.fixture
def auth(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    """The owner's admin key."""
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                  name="admin", scopes=["admin", "inference"])
    return {"Authorization": f"Bearer {key.secret}"}


API = "/api/v1/orgs/acme"


def _team(client: FlaskClient, auth: dict[str, str], name: str = "Platform") -> dict[str, Any]:
    made = client.post(f"{API}/teams", json={"name": name}, headers=auth)
    assert made.status_code == 201, made.json
    return made.json


def test_the_creator_of_a_team_is_its_admin(client: FlaskClient, db: Database, acme: NewOrg, auth) -> None:
    team = _team(client, auth)
    got = client.get(f"{API}/teams/{team['id']}", headers=auth).json
    assert (got["your_role"], got["member_count"]) == ("admin", 1)
    assert got["members"] == [{"user_id": acme.owner.id, "userName": "owner@acme.test", "email": "owner@acme.test",
                               "active": True, "team_role": "admin", "source": "manual",
                               "grants": [{"role": "admin", "source": "manual", "group_id": None}]}]
    assert actions(db, acme.org.id)[-2:] == ["team.created", "team.member_added"]


def test_a_team_made_by_the_operator_or_the_idp_has_no_creator_member(db: Database, system: Actor,
                                                                       acme: NewOrg) -> None:
    from identity import teams
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Ops")
        assert users.team_roles(session, acme.owner.id).get(team.id) is None


def test_add_change_preview_and_remove_a_team_member(client: FlaskClient, db: Database, system: Actor,
                                                     acme: NewOrg, auth) -> None:
    team = _team(client, auth)["id"]
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    added = client.post(f"{API}/teams/{team}/members", json={"user_id": bob.id, "role": "viewer"}, headers=auth)
    assert added.status_code == 201 and (added.json["team_role"], added.json["source"]) == ("viewer", "manual")
    changed = client.patch(f"{API}/teams/{team}/members/{bob.id}", json={"role": "member"}, headers=auth)
    assert changed.status_code == 200 and changed.json["team_role"] == "member"
    with db.transaction() as session:
        issued = [keys.create_api_key(session, system, acme.org.id, user_id=bob.id, team_id=team, name=f"k{n}",
                                      scopes=["inference"]) for n in range(2)]
        keys.create_api_key(session, system, acme.org.id, user_id=bob.id, team_id=acme.default_team_id,
                            name="other team", scopes=["inference"])
    preview = client.get(f"{API}/teams/{team}/members/{bob.id}/removal", headers=auth)
    assert preview.json["keys_to_revoke"] == 2
    assert preview.json["key_prefixes"] == sorted(k.prefix for k in issued)
    before = counts(db)
    assert client.get(f"{API}/teams/{team}/members/{bob.id}/removal", headers=auth).status_code == 200
    assert counts(db) == before  # the preview is a read
    assert client.delete(f"{API}/teams/{team}/members/{bob.id}", headers=auth).status_code == 204
    with db.reading() as session:
        states = {key.name: key.status for key in session.scalars(select(ApiKey).where(ApiKey.user_id == bob.id))}
    assert states == {"k0": KeyStatus.REVOKED, "k1": KeyStatus.REVOKED, "other team": KeyStatus.ACTIVE}
    got = client.get(f"{API}/teams/{team}", headers=auth).json
    assert got["member_count"] == 1 and [m["user_id"] for m in got["members"]] == [acme.owner.id]
    assert client.patch(f"{API}/teams/{team}/members/{bob.id}", json={"role": "admin"},
                        headers=auth).status_code == 404
    for key in issued:  # that team's keys no longer speak for anyone
        assert client.get("/api/v1/key", headers={"Authorization": f"Bearer {key.secret}"}).status_code == 401


def test_the_team_list_shows_your_role_and_member_count_in_one_query(client: FlaskClient, db: Database,
                                                                     system: Actor, acme: NewOrg, auth) -> None:
    made = [_team(client, auth, f"Team {n}")["id"] for n in range(4)]
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    assert client.post(f"{API}/teams/{made[0]}/members", json={"user_id": bob.id}, headers=auth).status_code == 201
    statements: list[str] = []
    engine = db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        listed = client.get(f"{API}/teams", headers=auth).json
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    on_teams = [s for s in statements if "FROM teams" in s]
    assert len(on_teams) == 1, on_teams
    rows = {t["id"]: (t["your_role"], t["member_count"]) for t in listed["teams"]}
    # Default: the owner (member) and bob (provisioned into it); the others: the owner as creator.
    assert rows == {acme.default_team_id: ("member", 2), made[0]: ("admin", 2),
                    **{team: ("admin", 1) for team in made[1:]}}


def test_the_team_list_pages_with_a_cursor(client: FlaskClient, auth) -> None:
    for n in range(4):
        _team(client, auth, f"Team {n}")
    seen, after = [], ""
    while True:
        page = client.get(f"{API}/teams?limit=2&after={after}", headers=auth).json
        seen += [t["name"] for t in page["teams"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == ["Default", "Team 0", "Team 1", "Team 2", "Team 3"]
    nul = base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|a\x00b").decode()
    naive = base64.urlsafe_b64encode(b"2026-01-01T00:00:00|a").decode()
    for cursor in ("not-a-cursor", nul, naive):  # NUL would be a PostgreSQL 500
        bad = client.get(f"{API}/teams?after={cursor}", headers=auth)
        assert (bad.status_code, bad.json["field"]) == (400, "after")


def test_team_members_page_and_show_the_source_of_each_grant(client: FlaskClient, db: Database, system: Actor,
                                                             acme: NewOrg, auth) -> None:
    team = _team(client, auth)["id"]
    people = [provision(db, system, acme.org.id, f"p{n}@acme.test").id for n in range(3)]
    with db.transaction() as session:
        mappings.create_mapping(session, system, acme.org.id, group_external_id="00g9", team_id=team,
                              team_role="admin")
        group = groups.create_group(session, system, acme.org.id, display_name="Eng", external_id="00g9",
                                    member_ids=people[:1])
    seen, after = {}, ""
    while True:
        page = client.get(f"{API}/teams/{team}?limit=2&after={after}", headers=auth).json
        seen |= {m["user_id"]: m for m in page["members"]}
        if page["next"] is None:
            break
        after = page["next"]
    assert set(seen) == {acme.owner.id, people[0]}
    assert (seen[people[0]]["team_role"], seen[people[0]]["source"]) == ("admin", "scim")
    assert seen[people[0]]["grants"] == [{"role": "admin", "source": "scim", "group_id": group.id}]
    # A group grants more than the manual role asked: refused, naming the group.
    refused = client.patch(f"{API}/teams/{team}/members/{people[0]}", json={"role": "viewer"}, headers=auth)
    assert (refused.status_code, refused.json["field"], refused.json["group_id"]) == (409, "role", group.id)


def test_deleting_a_team_needs_its_name(client: FlaskClient, db: Database, acme: NewOrg, auth) -> None:
    team = _team(client, auth)["id"]
    before = counts(db)
    for body, field in (({"confirm": "platform"}, "confirm"), ({}, "confirm"), ({"confirm": 1}, "confirm"),
                        ({"confirm": "Platform", "force": True}, "force")):
        refused = client.delete(f"{API}/teams/{team}", json=body, headers=auth)
        assert (refused.status_code, refused.json["field"]) == (400, field), refused.json
    assert counts(db) == before
    assert client.delete(f"{API}/teams/{team}", json={"confirm": "Platform"}, headers=auth).status_code == 204
    assert client.get(f"{API}/teams/{team}", headers=auth).status_code == 404


@pytest.mark.parametrize("body,field", [
    ({"role": "admin"}, "user_id"), ({"user_id": 7}, "user_id"), ({"user_id": "x", "role": "owner"}, "role"),
    ({"user_id": "x", "team": "y"}, "team"),
])
def test_bad_team_member_input_is_a_precise_problem(client: FlaskClient, db: Database, acme: NewOrg, auth, body,
                                                    field) -> None:
    before = counts(db)
    response = client.post(f"{API}/teams/{acme.default_team_id}/members", json=body, headers=auth)
    assert (response.status_code, response.json["field"]) == (400, field), response.json
    assert counts(db) == before


def test_an_admin_cannot_change_an_owners_team_role(client: FlaskClient, db: Database, system: Actor,
                                                    acme: NewOrg) -> None:
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=admin.id, team_id=acme.default_team_id,
                                  name="a", scopes=["admin"])
        orgs.get_org_by_slug(session, "acme")
    before = counts(db)
    response = client.patch(f"{API}/teams/{acme.default_team_id}/members/{acme.owner.id}", json={"role": "viewer"},
                            headers={"Authorization": f"Bearer {key.secret}"})
    assert response.status_code == 403 and counts(db) == before


def test_a_deactivated_member_is_not_counted_in_the_list_or_the_team(client: FlaskClient, db: Database,
                                                                     system: Actor, acme: NewOrg, auth) -> None:
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    with db.transaction() as session:
        users.deactivate_user(session, system, acme.org.id, bob.id)
    listed = {t["id"]: t["member_count"] for t in client.get(f"{API}/teams", headers=auth).json["teams"]}
    got = client.get(f"{API}/teams/{acme.default_team_id}", headers=auth).json
    assert listed[acme.default_team_id] == got["member_count"] == 1  # the owner; bob keeps his grants, suspended
    with db.transaction() as session:
        users.reactivate_user(session, system, acme.org.id, bob.id)
    assert client.get(f"{API}/teams/{acme.default_team_id}", headers=auth).json["member_count"] == 2
