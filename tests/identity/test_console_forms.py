"""The console's form handlers refuse what they must, through the test client on both databases:
a POST without the session's form token or from another site, a viewer's post of an admin form
(with a valid token: the domain refuses it), another org's ids, and nobody signed in. A refused
post changes nothing; the sign-in page answers the same for a known and an unknown address.
"""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient

from audit.actor import system_actor
from identity import keys, members, orgs, sessions
from identity.db import Database
from identity.models import User
from identity.orgs import NewOrg
from identity.vocabulary import SessionMethod
from identity.web import cookies
from saml import csrf
from tests.factories import counts

SECRET_KEY = "test-secret-key-32-characters-min"  # the `app` fixture's
SYSTEM = system_actor("tests")


def sign_in(client: FlaskClient, db: Database, user_id: str) -> str:
    """Put a live session of `user_id` in the client's cookie; return the session's form token."""
    with db.transaction() as session:
        token = sessions.create_session(session, session.get_one(User, user_id), method=SessionMethod.LOGIN_LINK,
                                        lifetime=sessions.Lifetime())
    client.set_cookie(cookies.COOKIE, cookies.cookie_value(SECRET_KEY, token))
    return csrf.token(SECRET_KEY, "api", token)


def add(db: Database, org: NewOrg, email: str, role: str) -> str:
    with db.transaction() as session:
        return members.add_member(session, SYSTEM, org.org.id, email=email, role=role, team_id=None).id


def admin_forms(org: NewOrg, member_id: str) -> list[tuple[str, dict[str, str]]]:
    """Each admin form of the console, as (path, fields)."""
    team = org.default_team_id
    return [("/console/teams", {"name": "New"}), (f"/console/teams/{team}/rename", {"name": "Renamed"}),
            (f"/console/teams/{team}/delete", {"confirm": "Default"}),
            (f"/console/teams/{team}/members", {"member": "bob@acme.test", "role": "admin"}),
            (f"/console/teams/{team}/members/{member_id}/role", {"role": "admin"}),
            (f"/console/teams/{team}/members/{member_id}/remove", {}),
            ("/console/members/invite", {"email": "x@acme.test", "role": "member"}),
            (f"/console/members/{member_id}/role", {"role": "admin"}),
            (f"/console/members/{member_id}/active", {"active": "false"}),
            (f"/console/members/{member_id}/remove", {}), (f"/console/members/{org.owner.id}/transfer", {}),
            ("/console/keys/service", {"team_id": team, "name": "svc", "scopes": "inference"})]


def test_a_post_without_the_form_token_or_from_another_site_is_refused(client: FlaskClient, db: Database,
                                                                       acme: NewOrg) -> None:
    member_id = add(db, acme, "bob@acme.test", "member")
    token = sign_in(client, db, acme.owner.id)
    before = counts(db)
    for path, fields in admin_forms(acme, member_id):
        assert client.post(path, data=fields).status_code == 403, path
        assert client.post(path, data={**fields, "csrf_token": "forged"}).status_code == 403, path
        cross_site = client.post(path, data={**fields, "csrf_token": token}, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross_site.status_code == 403 and b"did not come from this console" in cross_site.data, path
    assert counts(db) == before


def test_a_viewer_posting_admin_forms_with_a_valid_token_is_refused_by_the_domain(client: FlaskClient, db: Database,
                                                                                  acme: NewOrg) -> None:
    member_id = add(db, acme, "bob@acme.test", "member")
    viewer_id = add(db, acme, "vic@acme.test", "viewer")
    token = sign_in(client, db, viewer_id)
    before = counts(db)
    for path, fields in admin_forms(acme, member_id):
        answer = client.post(path, data={**fields, "csrf_token": token})
        assert answer.status_code == 403 and b"may not" in answer.data, (path, answer.data[-600:])
    assert counts(db) == before
    page = client.get("/console/teams").get_data(as_text=True)
    assert "Create team" not in page and "Rename" not in page and "Delete" not in page


def test_another_orgs_ids_are_not_found(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    with db.transaction() as session:
        globex = orgs.create_org(session, SYSTEM, "Globex", owner_email="owner@globex.test")
        their_key = keys.create_api_key(session, SYSTEM, globex.org.id, user_id=globex.owner.id,
                                        team_id=globex.default_team_id, name="theirs", scopes=["inference"])
    token = sign_in(client, db, acme.owner.id)
    before = counts(db)
    team, user = globex.default_team_id, globex.owner.id
    for path in (f"/console/teams/{team}/rename", f"/console/teams/{team}/members/{user}/remove",
                 f"/console/members/{user}/active", f"/console/keys/{their_key.id}/revoke"):
        assert client.post(path, data={"csrf_token": token, "name": "Mine", "active": "false"}).status_code == 404
    assert client.get(f"/console/teams/{team}/members/{user}/remove").status_code == 404
    assert client.get(f"/console/members/{user}/remove").status_code == 404
    assert counts(db) == before


@pytest.mark.parametrize("path", ["/console/teams", "/console/members", "/console/members/invite", "/console/keys",
                                  "/console/idp", "/console/billing", "/console/audit"])
def test_nobody_signed_in_is_sent_to_the_sign_in_page(client: FlaskClient, acme: NewOrg, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 303 and answer.headers["Location"] == "/"


def _sign_in_form(client: FlaskClient) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True))
    assert found
    return found.group(1)


def test_the_sign_in_page_answers_the_same_for_a_known_and_an_unknown_address(client: FlaskClient,
                                                                              acme: NewOrg) -> None:
    client.application.config["SIGN_IN_EMAIL_MIN_SECONDS"] = 0
    answers = []
    for address in ("owner@acme.test", "nobody@acme.test"):
        token = _sign_in_form(client)
        answer = client.post("/", data={"csrf_token": token, "org": "acme", "email": address})
        answers.append((answer.status_code, answer.get_data(as_text=True).replace(address, "ADDRESS")))
    assert answers[0] == answers[1] and answers[0][0] == 200
    assert client.post("/", data={"who": "acme"}).status_code == 403  # no form token


def test_an_org_without_sso_asks_for_the_email(client: FlaskClient, acme: NewOrg) -> None:
    answer = client.post("/", data={"csrf_token": _sign_in_form(client), "who": "acme"})
    assert answer.status_code == 200 and b"Work email" in answer.data and b'name="org" value="acme"' in answer.data
    missing = client.post("/", data={"csrf_token": _sign_in_form(client), "who": ""})
    assert missing.status_code == 400 and b'id="who-error"' in missing.data


def test_keys_a_member_sees_their_own_an_admin_every_key_and_service_keys(client: FlaskClient, db: Database,
                                                                          acme: NewOrg) -> None:
    member_id, admin_id = add(db, acme, "bob@acme.test", "member"), add(db, acme, "ada@acme.test", "admin")
    with db.transaction() as session:
        bobs = keys.create_api_key(session, SYSTEM, acme.org.id, user_id=member_id, team_id=acme.default_team_id,
                                   name="bob's", scopes=["inference"])
        service = keys.create_service_key(session, SYSTEM, acme.org.id, team_id=acme.default_team_id, name="prod",
                                          scopes=["inference"])
    token = sign_in(client, db, member_id)
    page = client.get("/console/keys").get_data(as_text=True)
    assert bobs.prefix in page and service.prefix not in page and "Create a team service key" not in page
    rotated = client.post(f"/console/keys/{bobs.id}/rotate", data={"csrf_token": token})
    new_secret = re.search(r'id="new-secret">([^<]+)<', rotated.get_data(as_text=True))
    assert rotated.status_code == 200 and new_secret and rotated.headers["Cache-Control"] == "no-store"
    assert "rotating" in client.get("/console/keys").get_data(as_text=True)  # the old one, in its grace period
    sign_in(client, db, admin_id)
    page = client.get("/console/keys").get_data(as_text=True)
    assert bobs.prefix in page and service.prefix in page and "Create a team service key" in page


def test_an_admin_is_not_offered_what_only_an_owner_may_do(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    member_id, admin_id = add(db, acme, "bob@acme.test", "member"), add(db, acme, "ada@acme.test", "admin")
    sign_in(client, db, admin_id)
    page = client.get("/console/members").get_data(as_text=True)
    assert f"/console/members/{member_id}/remove" in page and f'action="/console/members/{member_id}/role"' in page
    assert f"/console/members/{acme.owner.id}/remove" not in page  # acting on an owner needs owners.manage
    assert f'action="/console/members/{acme.owner.id}/role"' not in page
    assert "/transfer" not in page and '<option value="owner"' not in page
