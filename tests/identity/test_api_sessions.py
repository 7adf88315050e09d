"""The admin API's second way in: the signed-in browser session (identity.web.api.common).

A session's cookie reaches every /api/v1 route a key reaches, as the person with their current
role; a write needs the session's CSRF token in X-CSRF-Token and our own origin; a key in the
header wins; a session of another org finds nothing; an ended session is 401.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from audit.models import AuditEvent
from identity import keys, orgs, sessions, signout, users
from identity.db import Database
from identity.models import User
from identity.vocabulary import SessionMethod
from identity.web import cookies
from identity.web.openapi import document
from saml import csrf
from tests.factories import counts, provision

SECRET_KEY = "test-secret-key-32-characters-min"  # the `app` fixture's
ORIGIN = "http://localhost"  # the `app` fixture's BASE_URL


@dataclass
class Browser:
    """A signed-in person's browser: the session cookie's value and the token a page of ours would hold."""

    user_id: str
    token: str

    @property
    def cookie(self) -> str:
        return f"{cookies.COOKIE}={cookies.cookie_value(SECRET_KEY, self.token)}"

    @property
    def csrf(self) -> str:
        return csrf.token(SECRET_KEY, "api", self.token)

    def headers(self, *, csrf_token: str | None = None, **extra: str) -> dict[str, str]:
        """What this browser sends on a same-origin write: the cookie and (unless told otherwise) its token."""
        return {"Cookie": self.cookie, "X-CSRF-Token": self.csrf if csrf_token is None else csrf_token,
                "Origin": ORIGIN, "Sec-Fetch-Site": "same-origin", **extra}


def sign_in(db: Database, user_id: str) -> Browser:
    with db.transaction() as session:
        token = sessions.create_session(session, session.get_one(User, user_id), method=SessionMethod.LOGIN_LINK,
                                        lifetime=sessions.Lifetime())
    return Browser(user_id, token)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """No cookie jar: each request sends exactly the cookie its headers name."""
    return app.test_client(use_cookies=False)


@pytest.fixture
def acme(db: Database, system: Actor) -> orgs.NewOrg:
    with db.transaction() as session:
        return orgs.create_org(session, system, "Acme", owner_email="owner@acme.test")


@pytest.fixture
def owner(db: Database, acme: orgs.NewOrg) -> Browser:
    return sign_in(db, acme.owner.id)


def add_member(client: FlaskClient, acme: orgs.NewOrg, headers: dict[str, str], email: str = "new@acme.test") -> int:
    response = client.post(f"/api/v1/orgs/{acme.org.slug}/members", json={"email": email, "role": "member"},
                           headers=headers)
    if response.status_code >= 400:
        assert response.content_type == "application/problem+json"
    return response.status_code


def test_the_session_route_gives_whom_it_speaks_for_and_its_csrf_token(client: FlaskClient, acme: orgs.NewOrg,
                                                                       owner: Browser) -> None:
    response = client.get("/api/v1/session", headers={"Cookie": owner.cookie})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["user"]["id"] == acme.owner.id and body["org"] == {"id": acme.org.id, "slug": acme.org.slug}
    assert body["role"] == "owner" and body["team_id"] == acme.default_team_id
    assert response.headers["Cache-Control"] == "no-store"
    # The token the page is given is the one a write must carry.
    assert add_member(client, acme, owner.headers(csrf_token=body["csrf_token"])) == 201


def test_a_cookie_write_with_its_token_is_made_by_the_user_and_audited_as_them(
        client: FlaskClient, db: Database, acme: orgs.NewOrg, owner: Browser) -> None:
    def written() -> list[AuditEvent]:
        with db.reading() as session:
            return list(session.scalars(select(AuditEvent).where(AuditEvent.org_id == acme.org.id)))

    before = {event.id for event in written()}
    assert add_member(client, acme, owner.headers()) == 201
    new = [event for event in written() if event.id not in before]
    assert "user.created" in {event.action for event in new}
    assert {(event.actor_type, event.actor_id) for event in new} == {("user", acme.owner.id)}


def test_reads_by_session_need_no_csrf_token(client: FlaskClient, acme: orgs.NewOrg, owner: Browser) -> None:
    for path in ("members", "teams", "invitations", "group-mappings", "settings", "seats", "scim-tokens"):
        response = client.get(f"/api/v1/orgs/{acme.org.slug}/{path}", headers={"Cookie": owner.cookie})
        assert response.status_code == 200, (path, response.json)


@pytest.mark.parametrize("refused", [
    "no token", "empty token", "wrong token", "another session's token", "the sign-out form's token",
    "cross-site origin", "cross-site fetch", "same-site fetch", "cross-site origin, no fetch metadata",
])
def test_a_cookie_write_without_its_token_or_from_another_site_is_refused(
        client: FlaskClient, db: Database, acme: orgs.NewOrg, owner: Browser, refused: str) -> None:
    other = sign_in(db, acme.owner.id)  # the same person's other browser: its token is not this one's
    headers = {
        "no token": {"Cookie": owner.cookie, "Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"},
        "empty token": owner.headers(csrf_token=""),
        "wrong token": owner.headers(csrf_token="x" * 43),
        "another session's token": owner.headers(csrf_token=other.csrf),
        "the sign-out form's token": owner.headers(csrf_token=csrf.token(SECRET_KEY, "logout", owner.token)),
        "cross-site origin": owner.headers(Origin="https://evil.test", **{"Sec-Fetch-Site": "cross-site"}),
        "cross-site fetch": owner.headers(**{"Sec-Fetch-Site": "cross-site"}),
        "same-site fetch": owner.headers(**{"Sec-Fetch-Site": "same-site"}),
        "cross-site origin, no fetch metadata": {"Cookie": owner.cookie, "X-CSRF-Token": owner.csrf,
                                                 "Origin": "https://evil.test"},
    }[refused]
    before = counts(db)
    for method, path, body in (("POST", "members", {"email": "csrf@acme.test"}),
                               ("PATCH", f"members/{acme.owner.id}", {"role": "viewer"}),
                               ("DELETE", f"teams/{acme.default_team_id}", None),
                               ("PATCH", "settings", {"included_seats": 50})):
        response = client.open(f"/api/v1/orgs/{acme.org.slug}/{path}", method=method, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.json)
        assert response.content_type == "application/problem+json" and response.json["code"] == "csrf_refused"
    assert counts(db) == before


def test_a_cross_site_read_with_the_cookie_is_refused(client: FlaskClient, acme: orgs.NewOrg, owner: Browser) -> None:
    response = client.get(f"/api/v1/orgs/{acme.org.slug}/members",
                          headers={"Cookie": owner.cookie, "Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403 and response.json["code"] == "csrf_refused"


def test_a_key_in_the_header_wins_over_the_cookie(client: FlaskClient, db: Database, system: Actor,
                                                  acme: orgs.NewOrg, owner: Browser) -> None:
    viewer = provision(db, system, acme.org.id, "viewer@acme.test", role="viewer")
    with db.transaction() as session:
        viewer_key = keys.create_api_key(session, system, acme.org.id, user_id=viewer.id,
                                         team_id=acme.default_team_id, name="v", scopes=["inference"]).secret
    # The owner's cookie and token do not lift a viewer's key, nor rescue a bad one.
    assert add_member(client, acme, owner.headers(Authorization=f"Bearer {viewer_key}")) == 403
    assert add_member(client, acme, owner.headers(Authorization="Bearer not-a-key")) == 401
    assert add_member(client, acme, owner.headers(Authorization="")) == 401


def test_the_session_route_and_the_key_route_each_take_their_own_way_in(client: FlaskClient, db: Database,
                                                                        system: Actor, acme: orgs.NewOrg,
                                                                        owner: Browser) -> None:
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                  team_id=acme.default_team_id, name="k", scopes=["admin"]).secret
    assert client.get("/api/v1/session", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert client.get("/api/v1/session").status_code == 401
    assert client.get("/api/v1/key", headers={"Cookie": owner.cookie}).status_code == 401
    assert client.get("/api/v1/key", headers={"Authorization": f"Bearer {key}"}).status_code == 200


@pytest.mark.parametrize("ending", ["signed out", "deactivated", "deleted", "tampered cookie"])
def test_an_ended_session_is_refused(client: FlaskClient, db: Database, system: Actor, acme: orgs.NewOrg,
                                     ending: str) -> None:
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    browser = sign_in(db, admin.id)
    headers = browser.headers()
    with db.transaction() as session:
        if ending == "signed out":
            signout.sign_out(session, system, browser.token)
        elif ending == "deactivated":
            users.deactivate_user(session, system, acme.org.id, admin.id)
        elif ending == "deleted":
            users.delete_user(session, system, acme.org.id, admin.id)
        else:
            headers["Cookie"] = headers["Cookie"][:-2] + "xx"
    before = counts(db)
    assert add_member(client, acme, headers) == 401
    assert client.get(f"/api/v1/orgs/{acme.org.slug}/members", headers=headers).status_code == 401
    assert client.get("/api/v1/session", headers=headers).status_code == 401
    assert counts(db) == before


def test_a_session_acts_with_the_role_the_person_holds_now(client: FlaskClient, db: Database, system: Actor,
                                                           acme: orgs.NewOrg) -> None:
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    browser = sign_in(db, admin.id)
    assert add_member(client, acme, browser.headers(), "first@acme.test") == 201
    with db.transaction() as session:
        users.change_role(session, system, acme.org.id, admin.id, "member")
    assert add_member(client, acme, browser.headers(), "second@acme.test") == 403
    assert client.get("/api/v1/session", headers={"Cookie": browser.cookie}).json["role"] == "member"


ORG_SCOPED = sorted((path, method) for path, item in document()["paths"].items() if "{org}" in path
                    for method in item)


@pytest.mark.parametrize(("path", "method"), ORG_SCOPED)
def test_a_session_of_another_org_never_reaches_this_one(client: FlaskClient, db: Database, system: Actor,
                                                         acme: orgs.NewOrg, path: str, method: str) -> None:
    """Globex's owner, signed in, names Acme (by slug or id) on every org-scoped route: always 404, nothing changed."""
    with db.transaction() as session:
        globex = orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
    rival = sign_in(db, globex.owner.id)
    for org_ref in (acme.org.slug, acme.org.id):
        url = re.sub(r"\{[a-z_]+\}", acme.default_team_id, path.replace("{org}", org_ref))
        before = counts(db)
        response = client.open(url, method=method.upper(), json={} if method != "get" else None,
                                headers=rival.headers())
        assert response.status_code == 404, (url, response.json)
        assert counts(db) == before
