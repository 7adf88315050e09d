"""The console as a plain member and as a viewer see it, in a real browser (a review; each test failed
on the code it was written against): what DESIGN.md 3.2, 3.7, 3.8 and 9 and the README's console
table promise them, and nothing offered that the service then refuses.

One service per module and database (`console_site`), as tests/browser/test_console.py: each test
makes its own members, teams and keys under names of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from playwright.sync_api import Page, expect

from audit.actor import system_actor
from identity import gateway, keys, members, teams, wallet_controls, wallets
from tests.browser.conftest import ConsoleSite

SYSTEM = system_actor("tests")
DOLLAR = 100 * wallets.MICROS_PER_CENT  # micro-cents


@dataclass(frozen=True)
class Spending:
    """A member in a team of their own with a funded wallet, a key of theirs and the gateway's credential."""

    user_id: str
    team_id: str
    key_id: str
    secret: str
    credential: str


def _member(site: ConsoleSite, email: str, role: str = "member") -> str:
    with site.db.transaction() as session:
        return members.add_member(session, SYSTEM, site.org.org.id, email=email, role=role, team_id=None).id


def _spending(site: ConsoleSite, email: str, team_name: str, key_name: str) -> Spending:
    """A member of `team_name` (topped up with $10) holding the key `key_name`, and a gateway credential."""
    user_id = _member(site, email)
    org_id = site.org.org.id
    with site.db.transaction() as session:
        team = teams.create_team(session, SYSTEM, org_id, team_name)
        teams.add_team_member(session, SYSTEM, org_id, team.id, user_id)
        wallets.top_up(session, SYSTEM, org_id, team.id, 10 * DOLLAR, f"invoice {team_name}")
        key = keys.create_api_key(session, SYSTEM, org_id, user_id=user_id, team_id=team.id, name=key_name,
                                  scopes=["inference"])
        credential = gateway.create_credential(session, SYSTEM).secret
    return Spending(user_id, team.id, key.id, key.secret, credential)


def _use(page: Page, site: ConsoleSite, spending: Spending, micros: int, request_id: str) -> int:
    """Post one request's usage as the gateway does; return the HTTP status."""
    answer = page.request.post(site.url("/api/v1/usage"), headers={"Authorization": f"Bearer {spending.credential}"},
                               data={"key_id": spending.key_id, "model": "gpt-x", "cost_micros": micros,
                                     "request_id": request_id})
    return answer.status


def test_a_members_keys_page_shows_each_of_their_keys_spend(console_site: ConsoleSite, page: Page) -> None:
    """README, the console's table: `/console/keys` (everyone, their own) shows "each key's spend"; and a
    member's own keys' spend is what DESIGN 3.8 keeps per key. The page's key rows have no spend at all:
    name, prefix, team, scopes, state, last used, actions."""
    site = console_site
    spending = _spending(site, "kim.spend@acme.test", "Spenders", "kim laptop")
    assert _use(page, site, spending, 250 * wallets.MICROS_PER_CENT, "kim-spend-1") == 200  # $2.50
    site.sign_in_as(page, "kim.spend@acme.test")
    page.goto(site.url("/console/keys"))
    row = page.locator("tr", has=page.get_by_role("cell", name="kim laptop", exact=True))
    expect(row).to_have_count(1)
    expect(row).to_contain_text("$2.50")


def test_a_key_refused_at_its_own_spending_limit_says_why_on_its_holders_keys_page(console_site: ConsoleSite,
                                                                                    page: Page) -> None:
    """DESIGN 3.8: a key over its limit is refused (`spending_limit_reached`) until the limit rises or the
    period turns, and the key check says so with `resets_at`. Its holder, on the console, is told nothing:
    the keys page calls it `active`, the team's wallet shows no refusal (the refusal sits on the key's
    limit, not on the wallet), and no page shows the key's limit or when it resets."""
    site = console_site
    spending = _spending(site, "lea.limit@acme.test", "Limited", "lea laptop")
    with site.db.transaction() as session:
        wallet_controls.set_subject_limit(session, SYSTEM, site.org.org.id, spending.team_id, wallet_controls.KEY,
                                          spending.key_id, 1 * DOLLAR)
    assert _use(page, site, spending, 60 * wallets.MICROS_PER_CENT, "lea-limit-1") == 200
    assert _use(page, site, spending, 60 * wallets.MICROS_PER_CENT, "lea-limit-2") == 429
    check = page.request.post(site.url("/api/v1/keys/verify"), headers={"Authorization": f"Bearer {spending.credential}"},
                              data={"key": spending.secret}).json()
    assert (check["valid"], check["reason"], check["scope"]) == (False, "spending_limit_reached", "key")
    resets = check["resets_at"][:10]  # the day the period turns

    site.sign_in_as(page, "lea.limit@acme.test")
    page.goto(site.url("/console/keys"))
    row = page.locator("tr", has=page.get_by_role("cell", name="lea laptop", exact=True))
    expect(row).to_have_count(1)
    expect(row).to_contain_text(re.compile("spending limit reached", re.IGNORECASE))
    expect(row).to_contain_text(resets)


def test_the_console_nav_offers_a_member_and_a_viewer_only_pages_they_may_open(console_site: ConsoleSite,
                                                                             page: Page) -> None:
    """README: "what your role may not do is not offered"; identity/web/console/common.py: "a page offers
    only what the caller's role may do". The header's nav offers everyone Identity provider, Billing and
    Audit log, and each of those answers a member or a viewer 403 (`Refused`)."""
    site = console_site
    _member(site, "max.nav@acme.test")
    _member(site, "val.nav@acme.test", role="viewer")
    for email in ("max.nav@acme.test", "val.nav@acme.test"):
        page.context.clear_cookies()
        site.sign_in_as(page, email)
        nav = page.get_by_role("navigation", name="Console")
        hrefs = [link.get_attribute("href") or "" for link in nav.get_by_role("link").all()]
        refused = [href for href in hrefs if page.request.get(site.url(href)).status != 200]
        assert refused == [], f"{email} is offered pages that refuse them: {refused}"
