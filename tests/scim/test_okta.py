"""Okta's provisioning sequence, request by request, as its SCIM 2.0 guide and SPEC tests send it."""

from __future__ import annotations

import uuid

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity.db import Database
from identity.models import Team
from tests.scim.client import GROUP, USER, Scim, scim_for


@pytest.fixture
def okta(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "OktaCo")


OKTA_USER = {
    "schemas": [USER], "userName": "Test.User@example.com",
    "name": {"givenName": "Test", "familyName": "User"},
    "emails": [{"primary": True, "value": "Test.User@example.com", "type": "work"}],
    "displayName": "Test User", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7",
    "groups": [], "password": "1mz050nq", "active": True,
}


def test_okta_user_lifecycle(okta: Scim) -> None:
    # Connection test and "does the user exist?"
    probe = okta.get("/Users?count=1&startIndex=1")
    assert probe.status_code == 200 and probe.json["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    exists = okta.get('/Users?filter=userName eq "Test.User@example.com"&startIndex=1&count=100')
    assert exists.status_code == 200 and exists.json["totalResults"] == 0 and exists.json["Resources"] == []
    # Create; the password is accepted and never returned.
    created = okta.post("/Users", OKTA_USER)
    assert created.status_code == 201 and "password" not in created.json
    uid = created.json["id"]
    assert okta.post("/Users", OKTA_USER).status_code == 409
    # Get, and find by userName in any case.
    assert okta.get(f"/Users/{uid}").json["userName"] == "Test.User@example.com"
    found = okta.get('/Users?filter=userName eq "test.user@EXAMPLE.com"')
    assert found.json["totalResults"] == 1 and found.json["Resources"][0]["id"] == uid
    # Profile update with PUT of the whole user.
    updated = okta.put(f"/Users/{uid}", {**OKTA_USER, "id": uid, "name": {"givenName": "Another", "familyName": "User"}})
    assert updated.status_code == 200 and updated.json["name"]["givenName"] == "Another"
    # Deactivate with a path-less PATCH; the user stays readable.
    deactivated = okta.patch(f"/Users/{uid}", [{"op": "replace", "value": {"active": False}}])
    assert deactivated.status_code == 200 and deactivated.json["active"] is False
    assert okta.get(f"/Users/{uid}").json["active"] is False
    reactivated = okta.patch(f"/Users/{uid}", [{"op": "replace", "value": {"active": True}}])
    assert reactivated.json["active"] is True
    # SPEC test: an unknown id is a 404 with status "404".
    missing = okta.get(f"/Users/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json["status"] == "404"


def test_okta_group_push(okta: Scim, db: Database) -> None:
    a = okta.create_user("a@example.com")["id"]
    b = okta.create_user("b@example.com")["id"]
    c = okta.create_user("c@example.com")["id"]
    pushed = okta.post("/Groups", {"schemas": [GROUP], "displayName": "Test SCIMv2", "members": []})
    assert pushed.status_code == 201
    gid = pushed.json["id"]
    # Rename with a path-less replace that repeats the id.
    renamed = okta.patch(f"/Groups/{gid}", [{"op": "replace", "value": {"id": gid, "displayName": "Renamed"}}])
    assert renamed.status_code == 204
    assert okta.get(f"/Groups/{gid}").json["displayName"] == "Renamed"
    # Add members, then remove one and add another in one request.
    okta.patch(f"/Groups/{gid}", [{"op": "add", "path": "members", "value": [{"value": a, "display": "a"},
                                                                                {"value": b, "display": "b"}]}])
    both = okta.patch(f"/Groups/{gid}", [
        {"op": "remove", "path": f'members[value eq "{a}"]'},
        {"op": "add", "path": "members", "value": [{"value": c, "display": "c"}]}])
    assert both.status_code == 204
    assert {m["value"] for m in okta.get(f"/Groups/{gid}").json["members"]} == {b, c}
    # Full replace with PUT.
    put = okta.put(f"/Groups/{gid}", {"schemas": [GROUP], "id": gid, "displayName": "Renamed",
                                      "members": [{"value": a}]})
    assert put.status_code == 200 and [m["value"] for m in put.json["members"]] == [a]
    # The group became a team (mirror mode), and its members are in it.
    with db.reading() as session:
        team = session.query(Team).filter(Team.org_id == okta.org_id, Team.name == "Renamed").one()
        from identity import users

        assert team.id in users.team_roles(session, a) and team.id not in users.team_roles(session, b)
    assert okta.delete(f"/Groups/{gid}").status_code == 204
    assert okta.get(f"/Groups/{gid}").status_code == 404


def test_okta_renames_a_group_a_rule_matched_by_name_and_every_member_keeps_the_rules_team(
        okta: Scim, db: Database, system: Actor) -> None:
    """DESIGN 3.3: "a renamed IdP group keeps its team". Okta pushes groups without an externalId, so
    the rule matched the group by its name; after Okta renames it, the members pushed later get what
    the rule gave the earlier ones (not a mirror team of the new name), until a rule of the new name
    exists: then every member, old and new, gets that one's."""
    from identity import mappings, teams, users

    with db.transaction() as session:
        platform, sre = (teams.create_team(session, system, okta.org_id, name).id for name in ("Platform", "SRE"))
        mappings.create_mapping(session, system, okta.org_id, group_display_name="Engineers", team_id=platform,
                                team_role="admin")
    before = okta.create_user("before@example.com")["id"]
    gid = okta.create_group("Engineers", [before])["id"]
    assert okta.patch(f"/Groups/{gid}", [{"op": "replace", "path": "displayName", "value": "Engineering"}]
                      ).status_code == 204
    after = okta.create_user("after@example.com")["id"]
    assert okta.patch(f"/Groups/{gid}", [{"op": "add", "path": "members", "value": [{"value": after}]}]
                      ).status_code == 204
    with db.reading() as session:
        assert users.team_roles(session, before) == users.team_roles(session, after)
        assert users.team_roles(session, after).get(platform) == "admin"
        assert session.query(Team).filter(Team.org_id == okta.org_id, Team.name == "Engineering").count() == 0
    with db.transaction() as session:
        mappings.create_mapping(session, system, okta.org_id, group_display_name="SRE", team_id=sre)
    assert okta.patch(f"/Groups/{gid}", [{"op": "replace", "path": "displayName", "value": "SRE"}]
                      ).status_code == 204
    with db.reading() as session:
        assert users.team_roles(session, before) == users.team_roles(session, after)
        assert sre in users.team_roles(session, after) and platform not in users.team_roles(session, after)


def test_okta_pages_of_five(okta: Scim) -> None:
    ids = [okta.create_user(f"p{i}@example.com")["id"] for i in range(10)]  # with the owner: 11 users
    pages = [okta.get(f"/Users?startIndex={s}&count=5").json for s in (1, 6, 11)]
    assert [p["itemsPerPage"] for p in pages] == [5, 5, 1]
    assert set(ids) <= {r["id"] for p in pages for r in p["Resources"]}
