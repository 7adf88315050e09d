"""Signing in with a real browser: SAML SSO started at our login page or at the IdP, a refused
response, signing out, and the one-time sign-in link page.

What only a browser proves: the IdP's cross-site POST reaches the ACS and the session cookie it
sets is then sent (SameSite), redirects land where they should, and the pages read as pages.
"""

from __future__ import annotations

import json

from playwright.sync_api import BrowserContext, Page
from sqlalchemy import func, select

from audit import Actor
from identity.models import User
from identity.sessions import COOKIE
from saml import links
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


def test_idp_initiated_sign_in_from_the_idp_portal(site: Site, page: Page) -> None:
    site.idp.person.name_id = "bob@acme.test"
    page.goto(f"{site.idp_origin}/start")
    page.wait_for_url(site.url("/me"))
    assert _shown_user(page) == "bob@acme.test"
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
    page.wait_for_url(site.url("/me"))
    assert site.me(page)[0] == 200
    page.goto(site.url(f"/saml/{site.org.org.slug}/logout"))
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
    page.wait_for_url(site.url("/me"))
    status, me = site.me(page)
    assert status == 200 and me["userName"] == "owner@acme.test" and me["signInMethod"] == "login_link"
    page.goto(site.url(f"/login/link/{token}"))  # used: the page now says so
    assert page.title() == "Sign-in failed" and "already used" in page.inner_text("body")
