"""Signing in with a real browser: SAML SSO started at our login page or at the IdP, a refused
response, signing out, and the one-time sign-in link page.

What only a browser proves: the IdP's cross-site POST reaches the ACS and the session cookie it
sets is then sent (SameSite), redirects land where they should, and the pages read as pages.
"""

from __future__ import annotations

import json
from html import escape
from urllib.parse import parse_qs

from playwright.sync_api import Browser, BrowserContext, Page
from sqlalchemy import func, select

from audit import Actor
from identity.models import User
from identity.web.cookies import COOKIE
from saml import binding, links
from tests.browser.conftest import Site
from tests.saml.idp import KeyPair


def _users_named(site: Site, user_name: str) -> int:
    with site.db.reading() as session:
        return session.scalar(select(func.count()).select_from(User).where(
            User.org_id == site.org.org.id, func.lower(User.user_name) == user_name)) or 0


def _shown_user(page: Page) -> str | None:
    """The userName of /me as the page shows it: the browser sent the session cookie on navigation."""
    return json.loads(page.inner_text("body")).get("userName")


def test_sp_initiated_sign_in_lands_on_the_asked_page_signed_in(site: Site, page: Page,
                                                                context: BrowserContext) -> None:
    page.goto(site.url(f"/saml/{site.org.org.slug}/login?next=/me"))
    page.wait_for_url(site.url("/me"))  # login -> IdP -> its form posts itself -> ACS -> 303 -> /me
    assert _shown_user(page) == "alice@acme.test"
    assert len(site.idp.requests) == 1
    status, me = site.me(page)
    assert status == 200 and me["userName"] == "alice@acme.test" and me["signInMethod"] == "saml"
    (cookie,) = [c for c in context.cookies() if c["name"] == COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]  # http BASE_URL
    assert cookie["domain"] == "127.0.0.1" and cookie["path"] == "/"
    assert binding.COOKIE not in {c["name"] for c in context.cookies()}  # used up, then cleared


def test_a_response_from_another_browser_is_refused_login_csrf(site: Site, browser: Browser, page: Page) -> None:
    """The attacker starts a sign-in in their browser and makes the victim's browser post the response.

    The response is genuine (signed by the IdP, answering a request we issued); only the browser
    is wrong. (The sign-ins that complete in the other tests show that Chromium sends the binding
    cookie on the IdP's cross-site POST, also over plain http where it has no SameSite attribute.)
    """
    site.idp.person.name_id = "mallory@acme.test"
    acs = site.url(f"/saml/{site.org.org.slug}/acs")
    attacker = browser.new_context()
    attacker_page = attacker.new_page()
    attacker_page.route(acs, lambda route: route.abort())  # the attacker keeps the response for later
    with attacker_page.expect_request(acs) as posted:
        attacker_page.goto(site.url(f"/saml/{site.org.org.slug}/login"))
    assert any(c["name"] == binding.COOKIE for c in attacker.cookies())
    form = parse_qs(posted.value.post_data or "")
    attacker.close()
    fields = "".join(f"<input type='hidden' name='{escape(name, quote=True)}' value='{escape(value[0], quote=True)}'>"
                     for name, value in form.items())
    with page.expect_response(acs) as refused:
        page.set_content(f"<form method='post' action='{acs}'>{fields}</form>"
                         "<script>document.forms[0].submit()</script>")
    assert refused.value.status == 403
    page.wait_for_url(acs)
    assert page.title() == "Sign-in failed"
    assert site.me(page)[0] == 401
    assert _users_named(site, "mallory@acme.test") == 0


def test_idp_initiated_sign_in_from_the_idp_portal(site: Site, page: Page) -> None:
    site.idp.person.name_id = "bob@acme.test"
    page.goto(f"{site.idp_origin}/start")
    page.wait_for_url(site.url("/console/teams"))  # no RelayState: the console
    status, me = site.me(page)
    assert status == 200 and me["userName"] == "bob@acme.test"
    assert site.idp.requests == []  # no AuthnRequest: the IdP started it


def test_a_forged_response_shows_a_refusal_page_and_signs_nobody_in(site: Site, page: Page) -> None:
    site.idp.person.signer = KeyPair.make("attacker")
    acs = site.url(f"/saml/{site.org.org.slug}/acs")
    with page.expect_response(acs) as refused:
        page.goto(site.url(f"/saml/{site.org.org.slug}/login"))
    assert refused.value.status == 400
    page.wait_for_url(acs)
    assert page.title() == "Sign-in failed"
    assert "refused" in page.inner_text("body") and "Request id:" in page.inner_text("body")
    assert site.me(page)[0] == 401
    assert _users_named(site, "alice@acme.test") == 0  # JIT did not run


def test_signing_out_ends_the_session_here_and_at_the_idp(site: Site, page: Page) -> None:
    page.goto(site.url(f"/saml/{site.org.org.slug}/login"))
    page.wait_for_url(site.url("/console/teams"))
    assert site.me(page)[0] == 200
    page.goto(site.url(f"/saml/{site.org.org.slug}/logout"))
    assert site.me(page)[0] == 200  # opening the page signs nobody out
    page.get_by_role("button", name="Sign out").click()  # its POST's redirect is allowed by its CSP
    page.wait_for_url(f"{site.idp_origin}/slo?SAMLRequest=*")
    assert page.url.startswith(f"{site.idp_origin}/slo?SAMLRequest=")
    assert page.title() == "Signed out at the IdP" and site.idp.logouts == 1
    assert site.me(page)[0] == 401


def test_the_sign_in_link_page_signs_in_with_its_button(site: Site, page: Page) -> None:
    with site.db.transaction() as session:
        token = links.issue_sign_in_link(session, Actor("system", "tests", "tests"), site.org.org.id,
                                         "owner@acme.test")
    page.goto(site.url(f"/login/link/{token}"))
    assert site.me(page)[0] == 401  # showing the page uses nothing up
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(site.url("/console/teams"))
    status, me = site.me(page)
    assert status == 200 and me["userName"] == "owner@acme.test" and me["signInMethod"] == "login_link"
    page.goto(site.url(f"/login/link/{token}"))  # used: the page now says so
    assert page.title() == "Sign-in failed" and "already used" in page.inner_text("body")
