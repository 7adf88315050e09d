"""Reading members and teams through the admin API is every role's (DESIGN 3.2: "read members,
teams, usage": owner, admin, member, viewer), as the domain's `directory.read` already says.

A session of any role and a key with the `directory.read` scope read the members list, the teams
and a team's members; every write of members and teams (and the removal preview, which asks the
removal's own permission) still refuses them as problem JSON, changing nothing; such a key of
another org finds nothing; a viewer still may not hold the `admin` scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from audit import Actor
from identity import keys, orgs, sessions, users
from identity.db import Database
from identity.models import User
from identity.vocabulary import SessionMethod
from identity.web import cookies
from saml import csrf
from tests.factories import counts

SECRET_KEY = "test-secret-key-32-characters-min"  # the `app` fixture's
Headers = dict[str, str]
API = "/api/v1/orgs/acme"


@dataclass
class World:
    acme: orgs.NewOrg
    ids: dict[str, str]  # role -> the user id of acme's member of that role
    credentials: dict[str, Headers]  # "<role> <session|key>" -> what that caller sends
    owner: Headers  # the owner's admin key
    rival: Headers  # globex's member's `directory.read` key


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """No cookie jar: each request sends exactly the cookie its headers name."""
    return app.test_client(use_cookies=False)


def _session(session: Any, user_id: str) -> Headers:
    token = sessions.create_session(session, session.get_one(User, user_id), method=SessionMethod.LOGIN_LINK,
                                    lifetime=sessions.Lifetime())
    return {"Cookie": f"{cookies.COOKIE}={cookies.cookie_value(SECRET_KEY, token)}",
            "X-CSRF-Token": csrf.token(SECRET_KEY, "api", token)}


def _key(session: Any, system: Actor, org: orgs.NewOrg, user_id: str, scopes: list[str]) -> Headers:
    made = keys.create_api_key(session, system, org.org.id, user_id=user_id, team_id=org.default_team_id,
                               name="directory", scopes=scopes)
    return {"Authorization": f"Bearer {made.secret}"}


@pytest.fixture
def world(db: Database, system: Actor, acme: orgs.NewOrg) -> World:
    """Acme with a viewer and a member, each signed in and each with a `directory.read` key; Globex's too."""
    with db.transaction() as session:
        globex = orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
        ids = {role: users.provision_user(session, system, acme.org.id, user_name=f"{role}@acme.test",
                                          email=f"{role}@acme.test", role=role, source="manual").id
               for role in ("viewer", "member")}
        credentials = {f"{role} session": _session(session, user_id) for role, user_id in ids.items()}
        credentials |= {f"{role} key": _key(session, system, acme, user_id, ["directory.read"])
                        for role, user_id in ids.items()}
        owner = _key(session, system, acme, acme.owner.id, ["admin"])
        rival_id = users.provision_user(session, system, globex.org.id, user_name="member@globex.test",
                                        role="member", source="manual").id
        rival = _key(session, system, globex, rival_id, ["directory.read"])
    return World(acme, {**ids, "owner": acme.owner.id}, credentials, owner, rival)


CALLERS = ("viewer session", "member session", "viewer key", "member key")


@pytest.mark.parametrize("caller", CALLERS)
def test_every_role_reads_the_members_the_teams_and_a_teams_members(client: FlaskClient, world: World,
                                                                     caller: str) -> None:
    headers, team = world.credentials[caller], world.acme.default_team_id
    listed = client.get(f"{API}/members", headers=headers)
    assert listed.status_code == 200, listed.json
    assert {m["userName"]: m["role"] for m in listed.json["members"]} == {
        "owner@acme.test": "owner", "viewer@acme.test": "viewer", "member@acme.test": "member"}
    teams = client.get(f"{API}/teams", headers=headers)
    assert teams.status_code == 200 and [t["id"] for t in teams.json["teams"]] == [team]
    detail = client.get(f"{API}/teams/{team}", headers=headers)
    assert detail.status_code == 200, detail.json
    assert {m["user_id"] for m in detail.json["members"]} == set(world.ids.values())


WRITES: dict[str, Any] = {  # name -> (method, path under the org, body), given the world
    "add_member": lambda w: ("POST", "/members", {"email": "new@acme.test", "role": "viewer"}),
    "change_role": lambda w: ("PATCH", f"/members/{w.ids['viewer']}", {"role": "member"}),
    "deactivate": lambda w: ("PATCH", f"/members/{w.ids['viewer']}", {"active": False}),
    "remove_member": lambda w: ("DELETE", f"/members/{w.ids['viewer']}", None),
    "create_team": lambda w: ("POST", "/teams", {"name": "Research"}),
    "rename_team": lambda w: ("PATCH", f"/teams/{w.acme.default_team_id}", {"name": "Renamed"}),
    "delete_team": lambda w: ("DELETE", f"/teams/{w.acme.default_team_id}", {"confirm": "Default"}),
    "add_to_team": lambda w: ("POST", f"/teams/{w.acme.default_team_id}/members",
                              {"user_id": w.ids["viewer"], "role": "admin"}),
    "change_team_role": lambda w: ("PATCH", f"/teams/{w.acme.default_team_id}/members/{w.ids['viewer']}",
                                   {"role": "admin"}),
    "remove_from_team": lambda w: ("DELETE", f"/teams/{w.acme.default_team_id}/members/{w.ids['viewer']}", None),
    "removal_preview": lambda w: ("GET", f"/teams/{w.acme.default_team_id}/members/{w.ids['viewer']}/removal", None),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_the_writes_of_members_and_teams_stay_refused(client: FlaskClient, db: Database, world: World,
                                                      write: str) -> None:
    method, path, body = WRITES[write](world)
    before = counts(db)
    got = {}
    for caller in CALLERS:
        response = client.open(f"{API}{path}", method=method, json=body, headers=world.credentials[caller])
        got[caller] = (response.status_code, response.content_type)
    assert got == dict.fromkeys(CALLERS, (403, "application/problem+json"))
    assert counts(db) == before


def test_a_directory_read_key_of_another_org_finds_nothing(client: FlaskClient, world: World) -> None:
    """Refused as every cross-org read is (identity.web.api.common.caller_org_id): 404, not a 403."""
    team = world.acme.default_team_id
    for path in ("/members", "/teams", f"/teams/{team}"):
        response = client.get(f"{API}{path}", headers=world.rival)
        assert (response.status_code, response.content_type) == (404, "application/problem+json")
        assert "acme@" not in response.get_data(as_text=True)


def test_a_directory_read_key_reads_nothing_else_of_the_admin_api(client: FlaskClient, world: World) -> None:
    """The scope opens the directory's reads only: keys, the audit log and settings still take `admin`."""
    for path in ("/api-keys", "/audit-events", "/settings", "/invitations"):
        response = client.get(f"{API}{path}", headers=world.credentials["member key"])
        assert (response.status_code, response.content_type) == (403, "application/problem+json"), path


def test_a_viewer_may_hold_directory_read_but_never_admin(client: FlaskClient, db: Database,
                                                          world: World) -> None:
    viewer, team = world.ids["viewer"], world.acme.default_team_id
    before = counts(db)
    for scopes in (["admin"], ["directory.read"]):  # a viewer makes no key of their own, whatever its scopes
        made = client.post(f"{API}/api-keys", json={"name": "mine", "scopes": scopes},
                           headers=world.credentials["viewer session"])
        assert (made.status_code, made.content_type) == (403, "application/problem+json")
    refused = client.post(f"{API}/api-keys", json={"user_id": viewer, "team_id": team, "scopes": ["admin"]},
                          headers=world.owner)
    assert (refused.status_code, refused.json["code"]) == (403, "permission_denied")
    assert counts(db) == before
    made = client.post(f"{API}/api-keys", json={"user_id": viewer, "team_id": team, "scopes": ["directory.read"]},
                       headers=world.owner)
    assert made.status_code == 201, made.json
    reads = client.get(f"{API}/members", headers={"Authorization": f"Bearer {made.json['key']}"})
    assert reads.status_code == 200 and len(reads.json["members"]) == 3


def test_the_scope_is_in_the_documented_scope_set(client: FlaskClient) -> None:
    schemas = client.get("/openapi.json").json["components"]["schemas"]
    assert schemas["NewApiKey"]["properties"]["scopes"]["items"]["enum"] == sorted(keys.SCOPES)
    assert "directory.read" in keys.SCOPES
