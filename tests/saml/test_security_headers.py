"""Every HTML page refuses to be framed and runs under a strict Content-Security-Policy; no page
sends a Referer (the sign-in link's token is in its URL) or lets a browser sniff its type (issue 14)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from audit import Actor
from identity import gateway, scim_credentials
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.app import create_app
from saml import links
from tests.saml.conftest import Sso


def _link(sso: Sso) -> str:
    with sso.db.transaction() as session:
        return links.issue_sign_in_link(session, Actor("system", "tests", "tests"), sso.org.org.id,
                                        "owner@acme.test")


def _signed_in(sso: Sso) -> Sso:
    assert sso.sp_login(name_id="amy@acme.test").status_code == 303
    return sso


PAGES: dict[str, Callable[[Sso], Any]] = {
    "refused sign-in": lambda sso: sso.post(b"<samlp:Response/>"),
    "forged response": lambda sso: sso.post(sso.response(sign="none")),
    "sign-in link page": lambda sso: sso.client.get(f"/login/link/{_link(sso)}"),
    "used or unknown link": lambda sso: sso.client.get("/login/link/nope"),
    "signed out": lambda sso: sso.client.get("/saml/acme/logout"),
    "sign-out form": lambda sso: _signed_in(sso).client.get("/saml/acme/logout"),
    "refused sign-out": lambda sso: _signed_in(sso).client.post("/saml/acme/logout"),
    "SSO not configured": lambda sso: sso.client.get("/saml/nowhere/login"),
    "refused logout message": lambda sso: sso.client.get("/saml/acme/slo?SAMLRequest=x"),
    "not found (Werkzeug's page)": lambda sso: sso.client.get("/no/such/page"),
}


@pytest.mark.parametrize("name", list(PAGES))
def test_every_html_page_refuses_framing_and_runs_under_a_strict_policy(sso: Sso, name: str) -> None:
    answer = PAGES[name](sso)
    assert answer.mimetype == "text/html", answer.mimetype
    assert answer.headers["X-Frame-Options"] == "DENY"
    policy = {d.split()[0]: d.split()[1:] for d in answer.headers["Content-Security-Policy"].split("; ")}
    assert policy["default-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"] and policy["form-action"][0] == "'self'"
    assert set(policy) == {"default-src", "base-uri", "form-action", "frame-ancestors"}  # no script, no style
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "no-referrer"


def test_json_and_xml_answers_are_not_sniffed_either(sso: Sso) -> None:
    for answer in (sso.client.get("/me"), sso.client.get("/saml/acme/metadata"), sso.client.get("/healthz")):
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["X-Frame-Options"] == "DENY"


HTTPS_BASE = "https://identity.example.test"


@pytest.fixture
def https_app(db: Database) -> Flask:
    return create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min", "BASE_URL": HTTPS_BASE,
                       "TESTING": True})


def test_every_answer_of_an_https_service_asks_for_https_only(https_app: Flask, db: Database, system: Actor,
                                                               acme: NewOrg) -> None:
    """HSTS on Flask's answers and on those given in front of Flask (the gateway's key check, a
    401 of it, the IdPs' user lookup): any of them may be the one a browser or a proxy sees first."""
    with db.transaction() as session:
        gateway_secret = gateway.create_credential(session, system).secret
        scim_secret = scim_credentials.create_scim_token(session, system, acme.org.id).secret
    client = https_app.test_client()
    lookup = "/scim/v2/Users?filter=" + quote('userName eq "nobody@acme.test"')
    answers = {
        "sign-in page": client.get("/", base_url=HTTPS_BASE),
        "not found": client.get("/no/such/page", base_url=HTTPS_BASE),
        "key check": client.post("/api/v1/keys/verify", json={"key": "key_nope_nope"}, base_url=HTTPS_BASE,
                                 headers={"Authorization": f"Bearer {gateway_secret}"}),
        "key check refused": client.post("/api/v1/keys/verify", json={"key": "x"}, base_url=HTTPS_BASE),
        "user lookup": client.get(lookup, base_url=HTTPS_BASE, headers={"Authorization": f"Bearer {scim_secret}"}),
    }
    assert {name: a.status_code for name, a in answers.items()} == {
        "sign-in page": 200, "not found": 404, "key check": 200, "key check refused": 401, "user lookup": 200}
    assert {name: a.headers.get_all("Strict-Transport-Security") for name, a in answers.items()} == {
        name: ["max-age=31536000"] for name in answers}


def test_an_http_service_sends_no_hsts(client: FlaskClient) -> None:
    """Over http (BASE_URL http, a service tried out locally) the header would be ignored anyway (RFC 6797 8.1)."""
    assert "Strict-Transport-Security" not in client.get("/").headers
