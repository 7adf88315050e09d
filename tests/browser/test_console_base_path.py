"""The console served under a path, as an operator deploys it behind a proxy that passes
`/identity/...` on unchanged (BASE_URL http://127.0.0.1:PORT/identity; identity.web.base_path): sign
in through the test IdP, then teams, a team's members, members, keys, the audit log, the IdP page and signing out,
each reached by clicking the console's own links and forms. Every request the browser sends to the
service (pages, forms, redirects, the stylesheet and script, the seat panel's fetch) is under
/identity; before, the first redirect already left it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from audit.actor import system_actor
from identity import orgs
from identity.db import Database
from tests.browser.axe import check_page
from tests.browser.conftest import Site, console_ready, serving_site
from tests.saml.idp import KeyPair

PREFIX = "/identity"


@pytest.fixture(scope="module")
def site_under_a_path(module_db: Database, idp_keys: KeyPair) -> Iterator[Site]:
    with module_db.transaction() as session:
        acme = orgs.create_org(session, system_actor("tests"), "Acme", owner_email="owner@acme.test")
    with serving_site(module_db, acme, idp_keys, base_path=PREFIX) as served:
        assert served.origin.endswith(PREFIX)
        yield served


def _requests_to_the_service(page: Page, site: Site) -> list[str]:
    """Every URL the page asks the service's host for, from now on (the IdP is another host)."""
    host = urlsplit(site.origin).netloc
    asked: list[str] = []
    page.on("request", lambda sent: asked.append(sent.url) if urlsplit(sent.url).netloc == host else None)
    return asked


def _open(page: Page, link: str, heading: str) -> None:
    page.get_by_role("navigation", name="Console").get_by_role("link", name=link, exact=True).click()
    expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()


def test_the_console_under_a_path_keeps_every_request_under_it(site_under_a_path: Site, page: Page) -> None:
    site = site_under_a_path
    asked = _requests_to_the_service(page, site)
    site.idp.person.name_id = "owner@acme.test"
    page.goto(site.url("/"))
    page.get_by_label("Work email or organization").fill(site.org.org.slug)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(site.url("/console/teams"))  # the ACS's redirect, under the prefix
    expect(page.get_by_role("heading", name="Teams", level=1)).to_be_visible()
    check_page(page, "teams-under-a-path")  # the stylesheet and script loaded: axe sees the styled page

    page.get_by_label("New team").fill("Research")
    page.get_by_role("button", name="Create team").click()  # a form's action and its redirect
    expect(page.get_by_role("status")).to_have_text("Team 'Research' created.")
    page.get_by_role("link", name="Research", exact=True).click()  # the team's members
    expect(page.locator("[id^=members-]").first).to_be_visible()

    _open(page, "Members", "Members")
    page.get_by_role("link", name="Invite member").click()
    console_ready(page)
    with page.expect_response(re.compile(r"/seats\.json$")) as seats:  # console.js's fetch of the seat panel
        page.get_by_label("Email").focus()
    assert seats.value.ok
    _open(page, "Keys", "Keys")
    page.get_by_label("Name", exact=True).first.fill("laptop")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", name=re.compile("is ready$"))).to_be_visible()
    _open(page, "Audit log", "Audit log")
    expect(page.get_by_role("heading", name="Events")).to_be_visible()
    _open(page, "Identity provider", "Identity provider")
    page.get_by_role("link", name="Sign out").click()  # the SAML pages' own forms post to their own URL
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("Signed out at the IdP.")).to_be_visible()  # the IdP's SLO, told by our logout
    assert site.me(page)[0] == 401

    assert len(asked) > 10
    outside = [url for url in asked if not urlsplit(url).path.startswith(f"{PREFIX}/")]
    assert outside == []
    assert any(urlsplit(url).path == f"{PREFIX}/static/console.js" for url in asked)
    assert any(urlsplit(url).path == f"{PREFIX}/console/members/seats.json" for url in asked)
