"""A team's wallet in a real browser (issue 18): an owner tops up, sets a limit, and sees the spend
and the balance change as the gateway posts usage; a member's keys' spend; axe on every page.

One service per module and database (`console_site`), as tests/browser/test_console.py.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from audit.actor import system_actor
from identity import gateway, keys, teams
from tests.browser.axe import check_page
from tests.browser.conftest import ConsoleSite

SYSTEM = system_actor("tests")


def _gateway_and_key(site: ConsoleSite) -> tuple[str, str]:
    with site.db.transaction() as session:
        credential = gateway.create_credential(session, system_actor("tests")).secret
        key_id = keys.create_api_key(session, SYSTEM, site.org.org.id, user_id=site.org.owner.id,
                                     team_id=site.org.default_team_id, name="laptop", scopes=["inference"]).id
    return credential, key_id


def _use(page: Page, site: ConsoleSite, credential: str, key_id: str, micros: int, request_id: str) -> Any:
    return page.request.post(site.url("/api/v1/usage"), headers={"Authorization": f"Bearer {credential}"},
                             data={"key_id": key_id, "model": "gpt-x", "cost_micros": micros,
                                   "request_id": request_id})


def test_an_owner_tops_up_sets_a_limit_and_watches_the_spend(console_site: ConsoleSite, page: Page) -> None:
    site, team = console_site, console_site.org.default_team_id
    credential, key_id = _gateway_and_key(site)
    site.sign_in_as(page, "owner@acme.test")
    slot = page.locator(f'[data-wallet-team="{team}"]')
    expect(slot).to_contain_text("$0.00")
    slot.get_by_role("link", name="+ Top up").click()
    page.get_by_label("Amount in dollars").fill("25.50")
    page.get_by_label("Payment reference").fill("invoice 42")
    page.get_by_role("button", name="Top up").click()
    expect(page.get_by_role("status")).to_have_text("Topped up $25.50.")
    expect(page.locator("#wallet-balance")).to_have_text("$25.50")
    page.get_by_label("Limit in dollars (blank: no limit)").fill("10")
    page.get_by_role("button", name="Save limit").click()
    expect(page.get_by_role("status")).to_have_text("Spending limit set to $10.00.")
    expect(page.locator("#wallet-limit")).to_have_text("$10.00")
    check_page(page, "wallet")

    assert _use(page, site, credential, key_id, 250_000_000, "browser-1").status == 200  # $2.50
    page.reload()
    expect(page.locator("#wallet-balance")).to_have_text("$23.00")
    expect(page.locator("#wallet-spend")).to_have_text("$2.50")
    expect(page.locator("#wallet-remaining")).to_have_text("$7.50")  # the limit bounds the $23 balance
    expect(page.get_by_role("cell", name="laptop", exact=True)).to_be_visible()  # its limit form names it too
    refused = _use(page, site, credential, key_id, 800_000_000, "browser-2")  # $8 would pass the $10 limit
    assert refused.status == 429 and refused.json()["code"] == "spending_limit_reached"
    page.reload()
    expect(page.get_by_text("spending limit reached")).to_be_visible()
    expect(page.locator("#wallet-balance")).to_have_text("$23.00")
    check_page(page, "wallet-refused")

    page.goto(site.url("/console/teams"))
    expect(slot).to_contain_text("$23.00")
    expect(slot).to_contain_text("spent $2.50 of $10.00 this period")
    page.goto(site.url(f"/console/members/{site.org.owner.id}/spend"))
    expect(page.get_by_role("cell", name="$2.50")).to_be_visible()
    check_page(page, "member-spend")


def test_a_bad_amount_is_shown_next_to_its_field_and_changes_nothing(console_site: ConsoleSite,
                                                                     page: Page) -> None:
    site, team = console_site, console_site.org.default_team_id
    site.sign_in_as(page, "owner@acme.test")
    page.goto(site.url(f"/console/teams/{team}/wallet"))
    before = page.locator("#wallet-balance").inner_text()
    for typed in ("12.345", "-5", "0", "ten"):
        page.get_by_label("Amount in dollars").fill(typed)
        page.get_by_label("Payment reference").fill("x")
        page.get_by_role("button", name="Top up").click()
        expect(page.locator("#amount-error")).to_be_visible()
        expect(page.locator("#wallet-balance")).to_have_text(before)
    check_page(page, "wallet-bad-amount")


def test_an_owner_sets_discount_auto_top_up_and_a_keys_limit_and_reads_the_ledger(console_site: ConsoleSite,
                                                                                 page: Page) -> None:
    """The controls LLM Gateway and ModelBridge users expect, on a team of its own (the module's site is
    shared): each refused value shown next to its field with what was typed, then set; the auto
    top-up's request appears once usage takes the balance below its threshold; the ledger lists it all."""
    site = console_site
    with site.db.transaction() as session:
        team = teams.create_team(session, SYSTEM, site.org.org.id, "Research").id
        teams.add_team_member(session, SYSTEM, site.org.org.id, team, site.org.owner.id)
        credential = gateway.create_credential(session, SYSTEM).secret
        key_id = keys.create_api_key(session, SYSTEM, site.org.org.id, user_id=site.org.owner.id, team_id=team,
                                     name="notebook", scopes=["inference"]).id
    site.sign_in_as(page, "owner@acme.test")
    page.goto(site.url(f"/console/teams/{team}/wallet"))
    page.get_by_label("Amount in dollars").fill("20")
    page.get_by_label("Payment reference").fill("invoice 77")
    page.get_by_role("button", name="Top up").click()
    expect(page.get_by_role("status")).to_have_text("Topped up $20.00.")

    page.get_by_label("Discount on usage, percent (0 to 100)").fill("120")
    page.get_by_role("button", name="Save discount").click()
    expect(page.locator("#discount-error")).to_be_visible()
    expect(page.get_by_label("Discount on usage, percent (0 to 100)")).to_have_value("120")
    check_page(page, "wallet-bad-discount")
    page.get_by_label("Discount on usage, percent (0 to 100)").fill("10")
    page.get_by_role("button", name="Save discount").click()
    expect(page.locator("#wallet-discount")).to_have_text("10%")

    page.get_by_label("Below this balance, in dollars").fill("10")
    page.get_by_role("button", name="Save auto top-up").click()
    expect(page.locator("#auto_amount-error")).to_be_visible()
    expect(page.get_by_label("Below this balance, in dollars")).to_have_value("10")
    check_page(page, "wallet-bad-auto-top-up")
    page.get_by_label("Top up this amount, in dollars").fill("50")
    page.get_by_role("button", name="Save auto top-up").click()
    expect(page.get_by_role("status")).to_have_text("Auto top-up: below $10.00, charge $50.00.")

    assert _use(page, site, credential, key_id, 1_500_000_000, "research-1").status == 200  # $15, $13.50 after 10%
    page.reload()
    expect(page.locator("#wallet-balance")).to_have_text("$6.50")
    expect(page.locator("#wallet-auto-topup")).to_contain_text("top-up requested")
    expect(page.locator("#topup-requests")).to_contain_text("pending")

    limit = page.get_by_label("Limit in dollars for notebook (blank: no limit)")
    limit.fill("5")  # below the $13.50 spent
    page.get_by_role("button", name="Save the limit of notebook").click()
    expect(page.locator(f"#key-limit-{key_id}-error")).to_contain_text("below this period's spend")
    expect(limit).to_have_value("5")
    check_page(page, "wallet-bad-key-limit")
    limit.fill("30")
    page.get_by_role("button", name="Save the limit of notebook").click()
    expect(page.get_by_role("status")).to_have_text("The key's limit set to $30.00.")
    expect(limit).to_have_value("30.00")

    ledger = page.locator("#ledger + table")
    expect(ledger.get_by_role("row")).to_have_count(3)  # its header, the usage and the top-up
    expect(ledger).to_contain_text("-$13.50")
    expect(ledger).to_contain_text("+$20.00")
    expect(ledger).to_contain_text("invoice 77")
    check_page(page, "wallet-controls")

    requests = page.locator("#topup-requests")  # the owner cancels the pending request (the way out of a refused deletion)
    check_page(page, "wallet-topup-request-cancel")
    requests.get_by_role("button", name="Cancel the top-up request").click()
    expect(page.get_by_role("status")).to_have_text("Top-up request cancelled.")
    expect(requests).to_contain_text("cancelled")
    expect(requests.get_by_role("button")).to_have_count(0)
    check_page(page, "wallet-topup-request-cancelled")
