"""Console rough edges of s22: the audit log's pages keep to the log as it stood when it was opened.

Each test failed on the code as it stood. One service per module and database (`console_site`).
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from audit.actor import system_actor
from identity import teams
from tests.browser.axe import check_page
from tests.browser.conftest import ConsoleSite

SYSTEM = system_actor("tests")
PAGE = 50  # identity.web.console.audit.PAGE


def _teams(site: ConsoleSite, prefix: str, count: int) -> None:
    with site.db.transaction() as session:
        for index in range(count):
            teams.create_team(session, SYSTEM, site.org.org.id, f"{prefix} {index:03}")


def _first_seq(page: Page) -> str:
    return page.locator("table.events > tbody > tr > td").first.inner_text()


def test_back_from_the_page_below_the_newest_is_the_page_one_saw(console_site: ConsoleSite, page: Page) -> None:
    """The reader's own paging is audited (`audit.read`): those events do not come back as a newer page;
    the page says how many are newer since the log was opened, and links to them."""
    _teams(console_site, "Stable", PAGE + 10)
    console_site.sign_in_as(page, "owner@acme.test")
    page.goto(console_site.url("/console/audit"))
    pages = page.get_by_role("navigation", name="Pages of events")
    first = _first_seq(page)
    pages.get_by_role("link", name="Next page").click()
    pages.get_by_role("link", name="Previous page").click()
    expect(page.locator("table.events > tbody > tr > td").first).to_have_text(first)
    expect(pages.get_by_role("link", name="Previous page")).to_have_count(0)  # nothing newer in this view
    expect(page.get_by_text(re.compile(r"\b3 newer events since you opened this log"))).to_be_visible()
    check_page(page, "audit-bounded-view")
    page.get_by_role("link", name="Show the newest").click()
    assert int(_first_seq(page)) > int(first)
    expect(page.get_by_text("since you opened this log")).to_have_count(0)


def test_no_previous_page_when_exactly_one_page_is_newer(console_site: ConsoleSite, page: Page) -> None:
    """Back from the second page of one action's events to the first, which is exactly one page newer:
    no "Previous page" that would lead to an empty page (the `audit.read` events are not in the selection)."""
    _teams(console_site, "Exact", 2 * PAGE)
    console_site.sign_in_as(page, "owner@acme.test")
    page.goto(console_site.url("/console/audit?since=&action=team.created&order=newest"))
    pages = page.get_by_role("navigation", name="Pages of events")
    first = _first_seq(page)
    pages.get_by_role("link", name="Next page").click()
    pages.get_by_role("link", name="Previous page").click()
    expect(page.locator("table.events > tbody > tr > td").first).to_have_text(first)
    expect(pages.get_by_role("link", name="Previous page")).to_have_count(0)
