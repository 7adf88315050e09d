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
from identity import gateway, keys, members, team_deletion, teams, wallet_controls, wallets
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


def test_every_rotate_button_a_member_is_offered_on_their_limited_key_works(console_site: ConsoleSite,
                                                                             page: Page) -> None:
    """A member rotates their own key, which has a spending limit: the successor takes the limit and the
    old key spends under it for its grace (identity.wallet_controls.pass_key_limit), so the successor may
    not be rotated again until that grace ends (409). The keys page hides Rotate on a key already rotated
    (identity/web/console/keys.py: key_actions) but offers it on that successor, and the click is refused."""
    site = console_site
    spending = _spending(site, "rob.rotate@acme.test", "Rotators", "rob laptop")
    with site.db.transaction() as session:
        wallet_controls.set_subject_limit(session, SYSTEM, site.org.org.id, spending.team_id, wallet_controls.KEY,
                                          spending.key_id, 5 * DOLLAR)
    site.sign_in_as(page, "rob.rotate@acme.test")
    page.goto(site.url("/console/keys"))
    page.get_by_role("button", name=re.compile("^Rotate rob laptop")).click()
    expect(page.get_by_role("heading", name="The rotated key is ready")).to_be_visible()
    page.goto(site.url("/console/keys"))
    offered = page.get_by_role("button", name=re.compile("^Rotate rob laptop"))
    if offered.count():
        offered.first.click()
        expect(page.get_by_role("heading", name="The rotated key is ready")).to_be_visible()


def test_a_viewer_holding_a_key_is_not_told_their_role_holds_none(console_site: ConsoleSite, page: Page) -> None:
    """An admin may make a key for a viewer (DESIGN 3.2: for someone they outrank), and it works at the
    gateway (`inference` is every role's scope). The viewer's keys page lists that active key under
    "Your keys" and says above it "Your role (viewer) does not hold API keys"."""
    site = console_site
    viewer = _member(site, "vera.keys@acme.test", role="viewer")
    with site.db.transaction() as session:
        keys.create_api_key(session, SYSTEM, site.org.org.id, user_id=viewer, team_id=site.org.default_team_id,
                            name="vera reports", scopes=["inference"])
    site.sign_in_as(page, "vera.keys@acme.test")
    page.goto(site.url("/console/keys"))
    row = page.locator("tr", has=page.get_by_role("cell", name="vera reports", exact=True))
    expect(row.get_by_role("cell", name="active")).to_be_visible()
    expect(page.get_by_text("does not hold API keys")).to_have_count(0)


def test_the_spend_page_links_a_member_only_to_pages_that_open(console_site: ConsoleSite, page: Page) -> None:
    """A member's spend page keeps a deleted team's spend (DESIGN 3.8: past spend stays) and links its team
    id to that team's wallet, which answers 404 `no team ... in this org`."""
    site = console_site
    spending = _spending(site, "dan.deleted@acme.test", "Shortlived", "dan laptop")
    assert _use(page, site, spending, 50 * wallets.MICROS_PER_CENT, "dan-deleted-1") == 200
    with site.db.transaction() as session:
        team_deletion.delete_team(session, SYSTEM, site.org.org.id, spending.team_id, confirm="Shortlived")
    site.sign_in_as(page, "dan.deleted@acme.test")
    page.goto(site.url(f"/console/members/{spending.user_id}/spend"))
    expect(page.get_by_role("cell", name="$0.50")).to_be_visible()
    hrefs = [link.get_attribute("href") or "" for link in page.locator("main a").all()]
    broken = [href for href in hrefs if page.request.get(site.url(href)).status != 200]
    assert broken == []
