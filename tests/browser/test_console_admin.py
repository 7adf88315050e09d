"""The IT admin's and the auditor's console pages in a real browser, on SQLite and PostgreSQL: identity
provider setup (SCIM token shown once and revoked, IdP metadata uploaded, the provisioning status
showing a refused SCIM request's reason), seats and billing, the audit log (filtered, downloaded as
CSV), and a viewer who is offered none of it and whose forged form post is refused.

Each page is checked by axe-core (no serious or critical violation) and saved as a screenshot.
"""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.request

from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from audit import Actor
from audit.actor import system_actor
from identity import invitations, scim_credentials
from identity.models import ScimToken
from saml.models import SamlConnection
from tests.browser.axe import check_page, shoot
from tests.browser.conftest import ConsoleSite, IdpPerson
from tests.factories import provision
from tests.saml.idp import KeyPair, TestIdP

OWNER = "owner@acme.test"
NARROW = {"width": 375, "height": 800}


def _sign_in(site: ConsoleSite, page: Page, name_id: str, landing: str = "/console/idp") -> None:
    """Sign in through the org's SAML login and the test IdP, landing on `landing`."""
    site.idp.person = IdpPerson(name_id=name_id)
    page.goto(site.url(f"/saml/{site.org.org.slug}/login?next={landing}"))
    page.wait_for_url(site.url(landing))


def _system() -> Actor:
    return system_actor("tests")


def _scim_tokens(site: ConsoleSite) -> list[ScimToken]:
    with site.db.reading() as session:
        return list(session.scalars(select(ScimToken).where(ScimToken.org_id == site.org.org.id)))


def _fits_narrow_screen(page: Page, name: str) -> None:
    """At a phone's width the page needs no sideways scrolling; screenshot it so."""
    page.set_viewport_size(NARROW)
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"] + 1
    shoot(page, f"{name}-narrow")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_a_scim_token_is_shown_once_and_revoked(console_site: ConsoleSite, page: Page) -> None:
    _sign_in(console_site, page, OWNER)
    page.goto(console_site.url("/console/idp"))
    check_page(page, "idp")
    _fits_narrow_screen(page, "idp")
    page.get_by_label("Token name").fill("Okta")
    page.get_by_role("button", name="Create SCIM token").click()
    secret = page.locator("#new-secret").inner_text().strip()
    assert secret.startswith("scim_")
    check_page(page, "idp-token-shown")
    (made,) = [t for t in _scim_tokens(console_site) if t.name == "Okta" and t.revoked_at is None]
    page.goto(console_site.url("/console/idp"))
    assert secret not in page.content()  # shown once
    page.get_by_role("button", name=f"Revoke token Okta ({made.prefix})").click()
    expect(page.get_by_role("status")).to_contain_text("SCIM token revoked")
    (revoked,) = [t for t in _scim_tokens(console_site) if t.id == made.id]
    assert revoked.revoked_at is not None


def test_idp_metadata_is_uploaded(console_site: ConsoleSite, page: Page) -> None:
    _sign_in(console_site, page, OWNER)
    other = TestIdP("https://other-idp.example.test/metadata", KeyPair.make("other idp"))
    page.goto(console_site.url("/console/idp"))
    try:
        page.set_input_files("#idp_metadata", files=[{"name": "okta-metadata.xml", "mimeType": "application/xml",
                                                      "buffer": other.metadata()}])
        page.get_by_label("Allow sign-in started at the IdP (the app tile)").uncheck()
        page.get_by_role("button", name="Save single sign-on").click()
        expect(page.get_by_role("status")).to_contain_text("Single sign-on saved")
        expect(page.locator("#sso")).to_contain_text("https://other-idp.example.test/metadata")
        with console_site.db.reading() as session:
            connection = session.get_one(SamlConnection, console_site.org.org.id)
            assert connection.idp_entity_id == other.entity_id and not connection.allow_idp_initiated
    finally:  # the module's other tests sign in through the module's own IdP
        page.goto(console_site.url("/console/idp"))
        page.set_input_files("#idp_metadata", files=[{"name": "idp.xml", "mimeType": "application/xml",
                                                      "buffer": console_site.idp.idp.metadata()}])
        page.get_by_label("Allow sign-in started at the IdP (the app tile)").check()
        page.get_by_role("button", name="Save single sign-on").click()
        expect(page.locator("#sso")).to_contain_text(console_site.idp.idp.entity_id)


def test_the_provisioning_status_shows_a_refused_scim_requests_reason(console_site: ConsoleSite, page: Page) -> None:
    with console_site.db.transaction() as session:
        token = scim_credentials.create_scim_token(session, _system(), console_site.org.org.id, name="Entra").secret
    request = urllib.request.Request(console_site.url('/scim/v2/Users?filter=nosuchattribute%20eq%20%22x%22'),
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("the filter was accepted")
    except urllib.error.HTTPError as refused:
        assert refused.code == 400
        detail = json.loads(refused.read())["detail"]
    _sign_in(console_site, page, OWNER)
    page.goto(console_site.url("/console/idp#status"))
    row = page.locator("table.refusals tbody tr").filter(has_text="nosuchattribute").first
    expect(row).to_contain_text("GET /scim/v2/Users")
    expect(row).to_contain_text("400")
    expect(row).to_contain_text(detail[:60])
    expect(row).to_contain_text("SCIM token Entra")
    check_page(page, "idp-provisioning-status")


def test_the_guides_carry_the_orgs_values(console_site: ConsoleSite, page: Page) -> None:
    _sign_in(console_site, page, OWNER)
    for vendor, name in (("okta", "Set up Okta"), ("entra", "Set up Microsoft Entra ID")):
        page.goto(console_site.url("/console/idp"))
        page.get_by_role("link", name=name).click()
        expect(page.get_by_role("heading", level=1)).to_have_text(name)
        expect(page.locator("main")).to_contain_text(console_site.url(f"/saml/{console_site.org.org.slug}/acs"))
        expect(page.locator("main")).to_contain_text(console_site.url("/scim/v2"))
        check_page(page, f"idp-guide-{vendor}")


def test_seats_and_billing_the_owner_edits_the_plan(console_site: ConsoleSite, page: Page) -> None:
    _sign_in(console_site, page, OWNER)
    page.goto(console_site.url("/console/billing"))
    expect(page.locator("#team-wallets")).to_be_attached()
    page.get_by_label("Seat cap (empty: no cap)").fill("-3")
    page.get_by_role("button", name="Save seat plan").click()
    expect(page.locator("#max_seats-error")).to_contain_text("whole number")  # next to its field
    expect(page.get_by_label("Seat cap (empty: no cap)")).to_have_attribute("aria-describedby", "max_seats-error")
    check_page(page, "billing-field-error")
    page.get_by_label("Seat cap (empty: no cap)").fill("40")
    page.get_by_label("Price per extra seat and month (USD)").fill("12.50")
    page.get_by_role("button", name="Save seat plan").click()
    expect(page.get_by_role("status")).to_contain_text("Seat plan saved")
    expect(page.locator(".seats")).to_contain_text("40")
    check_page(page, "billing")
    _fits_narrow_screen(page, "billing")


def test_the_audit_log_is_filtered_and_its_csv_holds_the_invite(console_site: ConsoleSite, page: Page) -> None:
    with console_site.db.transaction() as session:
        invitation, _token = invitations.invite(session, _system(), console_site.org.org.id,
                                                email="invited.auditor@example.com", role="member")
    _sign_in(console_site, page, OWNER)
    page.goto(console_site.url("/console/audit"))
    page.get_by_label("Action", exact=True).fill("invitation.created")
    page.get_by_role("button", name="Apply filters").click()
    rows = page.locator("table.events > tbody > tr")
    expect(rows.filter(has_text="invited.auditor@example.com")).to_have_count(1)
    assert all("invitation.created" in text for text in rows.all_inner_texts())
    check_page(page, "audit")
    _fits_narrow_screen(page, "audit")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    with open(download.value.path(), encoding="utf-8") as handle:
        exported = list(csv.DictReader(io.StringIO(handle.read())))
    assert {row["action"] for row in exported} == {"invitation.created"}
    assert invitation.id in {row["target_id"] for row in exported}
    page.get_by_role("button", name="Verify the chain now").click()
    expect(page.get_by_role("status")).to_contain_text("The chain is intact")
    check_page(page, "audit-verified")
    with page.expect_download() as download:
        page.get_by_role("button", name="Sign a checkpoint and download it").click()
    with open(download.value.path(), encoding="utf-8") as handle:
        kept = json.load(handle)
    assert kept["org_id"] == console_site.org.org.id and kept["signature"] and kept["reason"] == "manual"
    page.goto(console_site.url("/console/audit"))
    expect(page.locator(".auditor")).to_contain_text(f"Newest signed checkpoint: event #{kept['seq']}")


def test_a_viewer_is_offered_nothing_and_a_forged_post_is_refused(console_site: ConsoleSite, page: Page) -> None:
    provision(console_site.db, _system(), console_site.org.org.id, "vera.viewer@acme.test", role="viewer")
    _sign_in(console_site, page, "vera.viewer@acme.test", "/console/teams")
    for path, name in (("/console/idp", "idp"), ("/console/billing", "billing"), ("/console/audit", "audit")):
        answer = page.goto(console_site.url(path))
        assert answer is not None and answer.status == 403
        assert page.locator("main form").count() == 0 and page.locator("main button").count() == 0
        check_page(page, f"{name}-viewer-refused")
    before = len(_scim_tokens(console_site))
    token = page.locator("body").get_attribute("data-csrf") or ""
    for form in ({"name": "forged"}, {"name": "forged", "csrf_token": token}):  # forged, then with her own token
        answer = page.request.post(console_site.url("/console/idp/scim-tokens"), form=form)
        assert answer.status == 403 and "scim_" not in answer.text()
    answer = page.request.post(console_site.url("/console/billing/plan"),
                               form={"included_seats": "999", "seat_price": "0", "max_seats": "", "csrf_token": token})
    assert answer.status == 403
    assert len(_scim_tokens(console_site)) == before
    with console_site.db.reading() as session:
        assert session.scalar(select(func.count()).select_from(ScimToken).where(ScimToken.name == "forged")) == 0
