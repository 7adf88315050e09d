"""Signing out and signing in by link only through our own forms, and single logout only after
the IdP's message verifies (issue 14): each attacker's move, its refusal, and what still works."""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
import zlib
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree
from sqlalchemy import func, select

from audit import Actor
from identity import orgs
from identity.models import SsoSession
from saml import links
from tests.saml.conftest import Sso, configure, form_token, link_form
from tests.saml.idp import NSMAP, RSA_SHA256, SAML, SAMLP, KeyPair, TestIdP, post_form, saml_time

SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"


def logout_response_query(idp: TestIdP, sp_slo_url: str | None, in_response_to: str, *,
                          signer: KeyPair | None = None, sign: bool = True) -> str:
    """The query of the IdP's HTTP-Redirect LogoutResponse to our LogoutRequest (SAML bindings 3.4.4.1),
    with `sp_slo_url` as its Destination (None: none)."""
    root = etree.Element(f"{{{SAMLP}}}LogoutResponse", nsmap=NSMAP, ID=f"_r{uuid.uuid4().hex}", Version="2.0",
                         IssueInstant=saml_time(dt.datetime.now(dt.UTC)), InResponseTo=in_response_to)
    if sp_slo_url is not None:
        root.set("Destination", sp_slo_url)
    etree.SubElement(root, f"{{{SAML}}}Issuer").text = idp.entity_id
    status = etree.SubElement(root, f"{{{SAMLP}}}Status")
    etree.SubElement(status, f"{{{SAMLP}}}StatusCode", Value=SUCCESS)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    encoded = base64.b64encode(deflater.compress(etree.tostring(root)) + deflater.flush()).decode()
    query = f"SAMLResponse={quote_plus(encoded)}&SigAlg={quote_plus(RSA_SHA256)}"
    if not sign:
        return query
    signature = (signer or idp.keys).key.sign(query.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{query}&Signature={quote_plus(base64.b64encode(signature).decode())}"


def _logout_request_id(location: str) -> str:
    xml = zlib.decompress(base64.b64decode(parse_qs(urlsplit(location).query)["SAMLRequest"][0]), -15)
    return str(etree.fromstring(xml).get("ID"))


def _sessions(sso: Sso) -> int:
    with sso.db.reading() as session:
        return session.scalar(select(func.count()).select_from(SsoSession)) or 0


def _clears_session_cookie(answer: Any) -> bool:
    return any(v.startswith("identity_session=") for v in answer.headers.getlist("Set-Cookie"))


def _signed_in(sso: Sso, name_id: str = "amy@acme.test", session_index: str = "_idx-amy") -> None:
    assert sso.sp_login(name_id=name_id, session_index=session_index).status_code == 303
    assert sso.client.get("/me").status_code == 200


# ---- single logout: nothing changes before the message verifies -------------------------------

def test_a_valid_logout_response_to_our_request_lands_signed_out(sso: Sso) -> None:
    _signed_in(sso)
    answer = sso.sign_out()
    assert answer.status_code == 302 and answer.headers["Location"].startswith(sso.idp.slo_url)
    query = logout_response_query(sso.idp, sso.urls.slo, _logout_request_id(answer.headers["Location"]))
    landed = sso.client.get(f"/saml/acme/slo?{query}")
    assert landed.status_code == 200 and b"You are signed out." in landed.data


def test_a_forged_or_unsigned_logout_response_changes_nothing(sso: Sso, other_keys: KeyPair) -> None:
    """The attacker's move: send the victim's browser to /slo with a LogoutResponse the IdP did not sign."""
    _signed_in(sso)
    for query in (logout_response_query(sso.idp, sso.urls.slo, "_ours", signer=other_keys),
                  logout_response_query(sso.idp, sso.urls.slo, "_ours", sign=False)):
        answer = sso.client.get(f"/saml/acme/slo?{query}")
        assert answer.status_code == 400
        assert not _clears_session_cookie(answer)
    assert sso.client.get("/me").status_code == 200


def test_a_valid_logout_request_for_someone_else_leaves_this_browser_signed_in(sso: Sso) -> None:
    """A LogoutRequest the IdP signed for another subject ends that subject's sessions, not this cookie."""
    _signed_in(sso)
    query = sso.idp.logout_request_query(sso.urls.slo, "mallory@acme.test", None)
    answer = sso.client.get(f"/saml/acme/slo?{query}")
    assert answer.status_code == 302 and answer.headers["Location"].startswith(sso.idp.slo_url + "?SAMLResponse=")
    assert not _clears_session_cookie(answer)
    assert sso.client.get("/me").status_code == 200


def test_a_valid_logout_request_for_this_browser_signs_it_out(sso: Sso) -> None:
    _signed_in(sso)
    answer = sso.client.get(f"/saml/acme/slo?{sso.idp.logout_request_query(sso.urls.slo, 'amy@acme.test', None)}")
    assert answer.status_code == 302 and _clears_session_cookie(answer)
    assert sso.client.get("/me").status_code == 401


# ---- sign-out: a POST from our own page only --------------------------------------------------

def test_a_get_of_logout_signs_nobody_out_and_shows_a_form(sso: Sso) -> None:
    """The attacker's move: an <img src=/saml/acme/logout> or a link on their page."""
    _signed_in(sso)
    page = sso.client.get("/saml/acme/logout")
    assert page.status_code == 200 and b"<form method='post'>" in page.data and form_token(page)
    assert not _clears_session_cookie(page)
    assert sso.client.get("/me").status_code == 200 and _sessions(sso) == 1


def test_a_cross_site_logout_post_is_refused(sso: Sso) -> None:
    _signed_in(sso)
    token = form_token(sso.client.get("/saml/acme/logout"))
    attempts = [
        {},  # no token: an auto-submitting form on the attacker's page
        {"data": {"csrf_token": "forged"}},
        {"data": {"csrf_token": token}, "headers": {"Origin": "https://evil.example"}},
        {"data": {"csrf_token": token}, "headers": {"Sec-Fetch-Site": "cross-site"}},
        {"data": {"csrf_token": token}, "headers": {"Sec-Fetch-Site": "same-site"}},
        {"data": {"csrf_token": token}, "headers": {"Origin": "null", "Sec-Fetch-Site": "cross-site"}},
    ]
    for attempt in attempts:
        answer = sso.client.post("/saml/acme/logout", **attempt)
        assert answer.status_code == 403, attempt
        assert not _clears_session_cookie(answer)
    assert sso.client.get("/me").status_code == 200 and _sessions(sso) == 1


def test_a_token_of_another_session_does_not_sign_this_one_out(sso: Sso) -> None:
    _signed_in(sso)
    attacker = sso.client.application.test_client()
    assert attacker.post("/saml/acme/acs", data=post_form(sso.response(name_id="mallory@acme.test"))).status_code == 303
    attackers_token = form_token(attacker.get("/saml/acme/logout"))
    assert sso.client.post("/saml/acme/logout", data={"csrf_token": attackers_token}).status_code == 403
    assert sso.client.get("/me").json["userName"] == "amy@acme.test"


@pytest.mark.parametrize("origin", ["http://localhost", "null"])  # "null": what Chromium sends under no-referrer
def test_sign_out_with_the_form_from_our_page_works(sso: Sso, origin: str) -> None:
    _signed_in(sso)
    token = form_token(sso.client.get("/saml/acme/logout"))
    answer = sso.client.post("/saml/acme/logout", data={"csrf_token": token},
                             headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert answer.status_code == 302 and _clears_session_cookie(answer)
    assert sso.client.get("/me").status_code == 401 and _sessions(sso) == 0


def test_the_sign_out_page_lets_its_form_reach_the_idp_single_logout(sso: Sso) -> None:
    _signed_in(sso)
    policy = sso.client.get("/saml/acme/logout").headers["Content-Security-Policy"]
    assert re.search(r"form-action 'self' https://idp\.example\.test(;|$)", policy), policy


def test_at_another_orgs_url_the_page_names_no_idp_and_the_session_ends_here_alone(
        sso: Sso, system: Actor, other_keys: KeyPair) -> None:
    """Another tenant's sign-out URL (a link it may send a member) leads nowhere but here: its page's
    form may not reach its IdP, and the post ends the member's session with no LogoutRequest."""
    with sso.db.transaction() as session:
        evil = orgs.create_org(session, system, "Evil", owner_email="boss@evil.test")
    evil_idp = TestIdP("https://evil-idp.example.test/metadata", other_keys)
    evil_idp.slo_url = "https://evil-idp.example.test/slo"
    configure(sso.db, evil.org.slug, evil_idp, jit=True)
    _signed_in(sso)
    page = sso.client.get("/saml/evil/logout")
    assert "evil-idp" not in page.headers["Content-Security-Policy"]
    answer = sso.client.post("/saml/evil/logout", data={"csrf_token": form_token(page)})
    assert (answer.status_code, answer.headers.get("Location")) == (200, None) and _clears_session_cookie(answer)
    assert sso.client.get("/me").status_code == 401 and _sessions(sso) == 0


# ---- the one-time sign-in link: a POST from its own page only ---------------------------------

def _link(sso: Sso, email: str = "owner@acme.test") -> str:
    with sso.db.transaction() as session:
        return links.issue_sign_in_link(session, Actor("system", "tests", "tests"), sso.org.org.id, email)


def test_a_cross_site_post_of_a_link_signs_nobody_in_and_uses_nothing_up(sso: Sso) -> None:
    """The attacker's move (login CSRF): their own link, posted from their page in the victim's browser."""
    token = _link(sso)
    attempts = [
        {},  # no form token at all
        {"data": {"csrf_token": "forged"}},
    ]
    for attempt in attempts:
        answer = sso.client.post(f"/login/link/{token}", **attempt)
        assert answer.status_code == 403, attempt
        assert not _clears_session_cookie(answer)
    assert sso.client.get("/me").status_code == 401
    assert sso.client.get(f"/login/link/{token}").status_code == 200  # still unused


def test_a_form_token_without_its_cookie_or_from_another_site_is_refused(sso: Sso) -> None:
    token = _link(sso)
    attacker = sso.client.application.test_client()
    copied = link_form(attacker, token)  # the attacker loads the page in their browser and copies the token
    assert sso.client.post(f"/login/link/{token}", data=copied).status_code == 403  # the victim has no cookie
    form = link_form(sso.client, token)
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        assert sso.client.post(f"/login/link/{token}", data=form, headers=headers).status_code == 403
    assert sso.client.get("/me").status_code == 401


def test_the_link_page_button_still_signs_in(sso: Sso) -> None:
    token = _link(sso)
    answer = sso.client.post(f"/login/link/{token}", data=link_form(sso.client, token),
                             headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"})
    assert answer.status_code == 303
    assert sso.client.get("/me").json["signInMethod"] == "login_link"
