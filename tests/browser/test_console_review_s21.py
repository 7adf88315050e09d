"""Console defects found by the s21 review (a user's walk through every page with Playwright).

Each test states what a user should meet. The first ones were written against the code as it
stood (xfail(strict=True) with the reason) and lost their mark with the fix (s21-console-fix),
which added the tests for the rest of the review's list. One service per module and database
(`console_site`): the tests share its org, so each uses addresses of its own.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from audit.actor import system_actor
from identity import directory, members, teams, wallets
from tests.browser.axe import check_page
from tests.browser.conftest import ConsoleSite, console_ready

SYSTEM = system_actor("tests")
LONG = "a.very.long.email.address.for.layout.testing@subsidiary-of-acme.test"


def _add_member(site: ConsoleSite, email: str, role: str = "member") -> str:
    with site.db.transaction() as session:
        return members.add_member(session, SYSTEM, site.org.org.id, email=email, role=role, team_id=None).id


def _no_sideways_scroll(page: Page, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_the_invite_review_step_refuses_an_existing_member(console_site: ConsoleSite, page: Page) -> None:
    _add_member(console_site, "already.here@acme.test")
    console_site.sign_in_as(page, "owner@acme.test")
    page.goto(console_site.url("/console/members/invite"))
    page.get_by_label("Email").fill("already.here@acme.test")
    page.get_by_role("button", name="Review invitation").click()
    expect(page.get_by_text("already.here@acme.test is already a member")).to_be_visible()
    expect(page.get_by_role("heading", name="Send this invitation?")).to_have_count(0)
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")  # next to its field


def test_the_invite_review_step_refuses_an_address_already_invited(console_site: ConsoleSite, page: Page) -> None:
    with console_site.db.transaction() as session:
        members.invite_member(session, SYSTEM, console_site.org.org.id, email="invited.once@acme.test",
                              role="member", team_id=None)
    console_site.sign_in_as(page, "owner@acme.test")
    page.goto(console_site.url("/console/members/invite"))
    page.get_by_label("Email").fill("Invited.Once@acme.test")
    page.get_by_role("button", name="Review invitation").click()
    expect(page.get_by_role("alert")).to_contain_text("already has a pending invitation")
    expect(page.get_by_role("heading", name="Send this invitation?")).to_have_count(0)
    console_ready(page)
    expect(page.get_by_label("Email")).to_be_focused()
    check_page(page, "s21-invite-already-invited")


def test_a_refused_top_up_puts_focus_on_the_amount(console_site: ConsoleSite, page: Page) -> None:
    console_site.sign_in_as(page, "owner@acme.test")
    page.goto(console_site.url(f"/console/teams/{console_site.org.default_team_id}/wallet"))
    page.get_by_label("Amount in dollars").fill("12,50")
    page.get_by_label("Payment reference").fill("PO 7")
    page.get_by_role("button", name="Top up", exact=True).click()
    expect(page.get_by_text("type an amount in dollars and cents")).to_be_visible()
    console_ready(page)
    amount = page.get_by_label("Amount in dollars")
    expect(amount).to_be_focused()
    expect(amount).to_have_attribute("aria-invalid", "true")
    expect(amount).to_have_accessible_description(re.compile("type an amount in dollars and cents"))
    expect(page.get_by_role("alert").filter(has_text="type an amount in dollars and cents")).to_be_visible()


def test_a_refused_form_focuses_its_first_invalid_field_on_every_page(console_site: ConsoleSite, page: Page) -> None:
    """One rule (console/forms.html and console.js), not the wallet's alone: the teams page's create form."""
    console_site.sign_in_as(page, "owner@acme.test")
    page.get_by_label("New team").fill("Default")
    page.get_by_role("button", name="Create team").click()
    console_ready(page)
    expect(page.get_by_label("New team")).to_be_focused()
    expect(page.get_by_role("alert").first).to_be_visible()
    check_page(page, "s21-team-create-refused")


def test_the_address_shown_after_a_refused_add_to_team_can_be_opened(console_site: ConsoleSite, page: Page) -> None:
    console_site.sign_in_as(page, "owner@acme.test")
    team = console_site.org.default_team_id
    page.goto(console_site.url(f"/console/teams?team={team}"))
    page.get_by_label("Add a member").fill("nobody.here@acme.test")
    page.get_by_role("button", name="Add to team").click()
    expect(page.get_by_text("no member 'nobody.here@acme.test' in this org")).to_be_visible()
    shown = page.url
    answer = page.goto(shown)
    assert answer is not None and answer.status == 200, shown
    assert page.url.startswith(console_site.url(f"/console/teams?team={team}")), page.url  # that team, open
    expect(page.get_by_label("Add a member")).to_be_visible()


def test_a_post_only_address_of_any_page_leads_to_its_page(console_site: ConsoleSite, page: Page) -> None:
    """The one mechanism (common.form_page) for every page's forms, not the teams page's alone."""
    console_site.sign_in_as(page, "owner@acme.test")
    for posted, home in [("/console/idp/mappings", "/console/idp"), ("/console/keys/nope/rotate", "/console/keys"),
                         ("/console/members/invite/preview", "/console/members/invite"),
                         ("/console/audit/verify", "/console/audit")]:
        answer = page.goto(console_site.url(posted))
        assert answer is not None and answer.status == 200, posted
        assert page.url == console_site.url(home), (posted, page.url)


def test_the_members_page_fits_a_phone_with_a_long_address(console_site: ConsoleSite, page: Page) -> None:
    _add_member(console_site, LONG)
    console_site.sign_in_as(page, "owner@acme.test")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(console_site.url("/console/members"))
    expect(page.get_by_text(LONG).first).to_be_visible()
    _no_sideways_scroll(page, 390)


def test_the_audit_log_fits_a_desktop_window_and_a_phone(console_site: ConsoleSite, page: Page) -> None:
    with console_site.db.transaction() as session:
        teams.create_team(session, SYSTEM, console_site.org.org.id, "Machine Learning Research Platform Infra",
                          creator=False)
    console_site.sign_in_as(page, "owner@acme.test")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(console_site.url("/console/audit"))
    _no_sideways_scroll(page, 1280)
    page.set_viewport_size({"width": 390, "height": 844})
    _no_sideways_scroll(page, 390)
    check_page(page, "s21-audit-phone")  # the table's own scroll box is reachable by keyboard (axe)


@pytest.mark.parametrize("width", [1280, 390])
def test_the_audit_from_label_stays_on_one_line(console_site: ConsoleSite, page: Page, width: int) -> None:
    console_site.sign_in_as(page, "owner@acme.test")
    page.set_viewport_size({"width": width, "height": 800})
    page.goto(console_site.url("/console/audit"))
    lines = page.locator("label[for=since]").evaluate(
        "(el) => el.getBoundingClientRect().height / parseFloat(getComputedStyle(el).lineHeight)")
    assert lines < 1.5, lines
    expect(page.get_by_label("From (UTC)")).to_have_accessible_description(re.compile("2026-12-01T09:00"))


@pytest.mark.parametrize("vendor", ["okta", "entra"])
def test_the_idp_guides_fit_a_phone(console_site: ConsoleSite, page: Page, vendor: str) -> None:
    console_site.sign_in_as(page, "owner@acme.test")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(console_site.url(f"/console/idp/guide/{vendor}"))
    _no_sideways_scroll(page, 390)


def test_deleting_a_team_with_money_left_says_how_much_is_lost(console_site: ConsoleSite, page: Page) -> None:
    with console_site.db.transaction() as session:
        team = teams.create_team(session, SYSTEM, console_site.org.org.id, "Funded", creator=False)
        wallets.top_up(session, SYSTEM, console_site.org.org.id, team.id, 500_000_000, "invoice 9")  # $5.00
    console_site.sign_in_as(page, "owner@acme.test")
    row = page.locator(f"#team-{team.id}")
    expect(row.locator(".wallet-balance")).to_have_text("$5.00")
    row.get_by_role("link", name="Delete Funded").click()
    expect(row.get_by_role("alert")).to_contain_text("balance of $5.00 is lost")


def test_a_key_made_without_a_name_is_announced_and_the_form_starts_afresh(console_site: ConsoleSite,
                                                                          page: Page) -> None:
    console_site.sign_in_as(page, "owner@acme.test")
    page.goto(console_site.url("/console/keys"))
    form = page.locator("form", has=page.get_by_role("heading", name="Create a key"))
    boxes = form.get_by_role("checkbox")
    for index in range(boxes.count()):
        boxes.nth(index).check()
    form.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("heading", name="Your new key is ready")).to_be_visible()
    expect(page.get_by_text("Key API key is ready")).to_have_count(0)
    checked = [boxes.nth(i).get_attribute("value") for i in range(boxes.count()) if boxes.nth(i).is_checked()]
    assert checked == ["inference"], checked  # the form's defaults again, not the scopes just given


def test_team_cards_offer_no_empty_actions_to_a_viewer_on_a_phone(console_site: ConsoleSite, page: Page) -> None:
    _add_member(console_site, "vic.viewer@acme.test", role="viewer")
    console_site.sign_in_as(page, "vic.viewer@acme.test")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(console_site.url("/console/teams"))
    expect(page.locator("main tbody tr").first).to_be_visible()
    # A stacked cell's label is its ::before (data-label), which inner_text leaves out: ask for the cells.
    empty = page.locator("main table.stacked td[data-label]").evaluate_all(
        "(cells) => cells.filter((td) => td.offsetParent !== null && !td.innerText.trim())"
        ".map((td) => td.dataset.label)")
    assert empty == [], empty  # no "Actions:" (nor any label) standing over nothing
    check_page(page, "s21-teams-viewer-phone")


def test_the_wallet_page_names_its_team(console_site: ConsoleSite, page: Page) -> None:
    console_site.sign_in_as(page, "owner@acme.test")
    page.goto(console_site.url(f"/console/teams/{console_site.org.default_team_id}/wallet"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Wallet of Default")
    expect(page).to_have_title(re.compile("^Wallet of Default"))


def test_the_invite_step_says_a_seat_is_added_when_none_is_left(console_site: ConsoleSite, page: Page) -> None:
    with console_site.db.reading() as session:
        preview = directory.seat_preview(session, SYSTEM, console_site.org.org.id)
    for n in range(preview.free_after_invitations):  # take every included or paid seat still free
        _add_member(console_site, f"seat.taker.{n}@acme.test")
    console_site.sign_in_as(page, "owner@acme.test")
    page.goto(console_site.url("/console/members/invite"))
    page.get_by_label("Email").fill("one.more@acme.test")
    page.get_by_role("button", name="Review invitation").click()
    expect(page.get_by_role("heading", name="Send this invitation?")).to_be_visible()
    expect(page.get_by_text("adds a paid seat")).to_be_visible()
    # not "After this invitation: 0 seats left" (a bare get_by_text("0 seats left") also matched the seat
    # panel's "Pending invitations 0 / Seats left" run together, so it failed whenever none was pending)
    expect(page.locator("#left-after")).to_have_count(0)
    expect(page.get_by_text("After this invitation")).to_have_count(0)
    check_page(page, "s21-invite-no-seat-left")
