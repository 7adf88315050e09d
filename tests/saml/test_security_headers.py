"""Every HTML page refuses to be framed and runs under a strict Content-Security-Policy; no page
sends a Referer (the sign-in link's token is in its URL) or lets a browser sniff its type (issue 14)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from audit import Actor
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
