"""Served under a path (BASE_URL http://localhost/identity, a proxy's prefix), every cookie's Path
is under it (identity.web.context.cookie_path): a cookie for /login/ never came back from the
browser at /identity/login/, and its page's form was refused. Real app, both databases."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from audit import Actor
from identity import invitations, sessions
from identity.db import Database
from identity.models import User
from identity.orgs import NewOrg
from identity.vocabulary import SessionMethod
from identity.web import cookies
from identity.web.app import create_app
from saml import csrf, links
from tests.conftest import ReadingClient
from tests.saml.conftest import form_token

BASE = "http://localhost/identity"
SECRET_KEY = "test-secret-key-32-characters-min"


@pytest.fixture
def under_a_path(db: Database) -> Flask:
    app = create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": SECRET_KEY, "BASE_URL": BASE,
                      "TESTING": True, "SIGN_IN_EMAIL_MIN_SECONDS": 0})
    app.test_client_class = ReadingClient
    return app


def paths(answer: TestResponse) -> dict[str, str]:
    """Each cookie the answer sets (or clears) and its Path."""
    found = {}
    for header in answer.headers.getlist("Set-Cookie"):
        name = header.split("=", 1)[0]
        found[name] = next((part.removeprefix("Path=") for part in header.split("; ") if part.startswith("Path=")), "")
    return found


def test_the_sign_in_pages_cookies_are_under_the_path(under_a_path: Flask, acme: NewOrg) -> None:
    browser = under_a_path.test_client()
    assert paths(browser.get("/", base_url=BASE))["identity_sign_in_form"] == "/identity/"
    page = browser.get("/login/email", base_url=BASE)
    assert paths(page)[csrf.COOKIE] == "/identity/login/"
    asked = browser.post("/login/email", base_url=BASE,
                         data={"csrf_token": form_token(page) or "", "org": "acme", "email": "owner@acme.test"})
    assert asked.status_code == 200 and paths(asked)["identity_link_browser"] == "/identity/"


def test_the_link_sign_in_and_the_sign_out_cookies_are_under_the_path(under_a_path: Flask, db: Database,
                                                                      acme: NewOrg) -> None:
    with db.transaction() as session:
        token = links.issue_sign_in_link(session, Actor("system", "tests", "tests"), acme.org.id, "owner@acme.test")
    browser = under_a_path.test_client()
    page = browser.get(f"/login/link/{token}", base_url=BASE)
    assert paths(page)[csrf.COOKIE] == "/identity/login/link/"
    signed_in = browser.post(f"/login/link/{token}", base_url=BASE, data={"csrf_token": form_token(page) or ""})
    assert signed_in.status_code == 303 and paths(signed_in)[cookies.COOKIE] == "/identity/"
    assert browser.get("/me", base_url=BASE).status_code == 200
    out_page = browser.get("/saml/acme/logout", base_url=BASE)
    out = browser.post("/saml/acme/logout", base_url=BASE, data={"csrf_token": form_token(out_page) or ""})
    assert paths(out)[cookies.COOKIE] == "/identity/"
    assert browser.get("/me", base_url=BASE).status_code == 401  # the cleared cookie was the one it held


def test_the_consoles_notice_cookie_is_under_the_path(under_a_path: Flask, db: Database, acme: NewOrg) -> None:
    browser = under_a_path.test_client()
    with db.transaction() as session:
        token = sessions.create_session(session, session.get_one(User, acme.owner.id),
                                        method=SessionMethod.LOGIN_LINK, lifetime=sessions.Lifetime())
    browser.set_cookie(cookies.COOKIE, cookies.cookie_value(SECRET_KEY, token), path="/identity/")
    created = browser.post("/console/teams", base_url=BASE,
                           data={"name": "New", "csrf_token": csrf.token(SECRET_KEY, "api", token)})
    assert created.status_code == 303 and paths(created)["console_notice"] == "/identity/"
    shown = browser.get("/console/teams", base_url=BASE)
    assert "created." in shown.get_data(as_text=True)
    assert paths(shown)["console_notice"] == "/identity/"  # taken once: cleared where it was set


def _invitation(db: Database, system: Actor, acme: NewOrg) -> str:
    with db.transaction() as session:
        return invitations.invite(session, system, acme.org.id, email="new@acme.test", base_url=BASE)[1]


def test_an_invitation_is_accepted_under_the_path(under_a_path: Flask, db: Database, system: Actor,
                                                  acme: NewOrg) -> None:
    """The invitation page's form cookie had Path=/invite/: under /identity/ the browser never sent
    it back, and every accept or decline was refused as a form from elsewhere."""
    token = _invitation(db, system, acme)
    browser: FlaskClient = under_a_path.test_client()
    page = browser.get(f"/invite/{token}", base_url=BASE)
    assert page.status_code == 200 and paths(page)[csrf.COOKIE] == "/identity/invite/"
    accepted = browser.post(f"/invite/{token}", base_url=BASE,
                            data={"csrf_token": form_token(page) or "", "answer": "accept"})
    assert accepted.status_code == 200 and b"joined" in accepted.data
