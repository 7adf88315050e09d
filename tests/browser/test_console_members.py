"""The members page and the invite dialog in a real browser: the seats and the prorated cost shown
before an invitation is sent (and followed live while the dialog is open), the invitee reading the
mail from the test SMTP server and accepting, pending invitations resent and revoked, and a
member's role, active state and ownership changed.

One service per module and database (`console_site`); the tests run in order and build on each
other's members (a fresh org: 3 seats included, the owner takes one).
"""

from __future__ import annotations

import datetime as dt
import re
import time

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import func, select

from audit.actor import system_actor
from identity import members
from identity.directory import Member
from identity.lookups import find_by_user_name
from identity.web.console.common import dollars
from saml.models import SamlIdentity
from tests.browser.axe import check_page
from tests.browser.conftest import ConsoleSite, HeldScript

SYSTEM = system_actor("tests")


def _member(site: ConsoleSite, email: str) -> Member | None:
    with site.db.reading() as session:
        user = find_by_user_name(session, site.org.org.id, email)
        return None if user is None else Member.of(session, user)


def _mail_link_to(site: ConsoleSite, address: str, after: int) -> str:
    """The link in the first mail to `address` among those that arrived after the first `after`."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for index, message in enumerate(site.inbox.messages[after:], start=after):
            if message["To"] == address:
                return site.inbox.link(index)
        time.sleep(0.05)
    raise AssertionError(f"no mail to {address}")


def test_invite_shows_the_seats_and_cost_first_and_the_invitee_accepts_from_the_mail(
        console_site: ConsoleSite, page: Page, browser: Browser) -> None:
    console_site.sign_in_as(page, "owner@acme.test")
    page.goto(console_site.url("/console/members"))
    page.get_by_role("link", name="Invite member").click()
    left = page.locator("#seats-left")
    expect(left).to_have_text("2")  # 3 included, the owner's taken
    expect(page.locator("#next-seat-cost")).to_have_text("$0.00")
    check_page(page, "invite-dialog")

    with console_site.db.transaction() as session:  # another admin invites while the dialog is open
        members.invite_member(session, SYSTEM, console_site.org.org.id, email="elsewhere@acme.test", role="member",
                              team_id=None)
    page.get_by_label("Email").focus()  # the dialog's script asks for the seats again
    expect(left).to_have_text("1")

    page.get_by_label("Email").fill("new.hire@acme.test")
    page.get_by_label("Role").select_option("member")
    page.get_by_role("button", name="Review invitation").click()
    expect(page.get_by_role("heading", name="Send this invitation?")).to_be_visible()
    expect(page.locator("#left-after")).to_have_text("0")
    check_page(page, "invite-confirm")
    sent = len(console_site.inbox.messages)
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_role("status")).to_have_text("Invitation to new.hire@acme.test mailed.")

    invitee = browser.new_context().new_page()
    invitee.goto(_mail_link_to(console_site, "new.hire@acme.test", sent))
    expect(invitee.get_by_text("new.hire@acme.test")).to_be_visible()
    check_page(invitee, "invitation")
    invitee.get_by_role("button", name="Accept").click()
    expect(invitee.get_by_role("heading", name="Welcome")).to_be_visible()
    check_page(invitee, "invitation-accepted")
    invitee.context.close()
    hired = _member(console_site, "new.hire@acme.test")
    assert hired is not None and hired.role == "member" and hired.source == "invitation"

    page.goto(console_site.url("/console/members/invite"))  # every seat taken or promised: the next one costs
    expect(left).to_have_text("0")
    cost = page.locator("#next-seat-cost").inner_text()
    assert re.fullmatch(r"\$\d+\.\d\d", cost) and cost != dollars(0)
    expect(page.locator("#cost-note")).to_contain_text("prorated for the rest of this cycle")


def test_pending_invitations_are_resent_and_revoked(console_site: ConsoleSite, page: Page) -> None:
    console_site.sign_in_as(page, "owner@acme.test")
    page.goto(console_site.url("/console/members"))
    check_page(page, "members")
    sent = len(console_site.inbox.messages)
    page.get_by_role("button", name="Resend to elsewhere@acme.test").click()
    expect(page.get_by_role("status")).to_have_text("Invitation to elsewhere@acme.test sent again.")
    assert "/invite/" in _mail_link_to(console_site, "elsewhere@acme.test", sent)
    page.get_by_role("button", name="Revoke invitation of elsewhere@acme.test").click()
    expect(page.get_by_role("status")).to_have_text("Invitation revoked.")
    expect(page.get_by_role("button", name="Revoke invitation of elsewhere@acme.test")).to_have_count(0)


def test_an_owner_unlinks_a_members_idp_identity(console_site: ConsoleSite, page: Page) -> None:
    with console_site.db.transaction() as session:
        moved = members.add_member(session, SYSTEM, console_site.org.org.id, email="moved@acme.test", role="member",
                                   team_id=None)
        session.add(SamlIdentity(org_id=console_site.org.org.id, idp_entity_id="https://idp.acme.test",
                                 name_id_key="00u-old", name_id="00u-OLD", user_id=moved.id,
                                 created_at=dt.datetime.now(dt.UTC)))
    console_site.sign_in_as(page, "owner@acme.test")
    page.goto(console_site.url("/console/members"))
    page.locator(f"#member-{moved.id}").get_by_role("link", name="SSO identity of moved@acme.test").click()
    expect(page.get_by_role("heading", name="SSO identity of moved@acme.test")).to_be_visible()
    expect(page.get_by_role("cell", name="00u-OLD")).to_be_visible()
    check_page(page, "member-sso")
    page.get_by_role("button", name="Unlink").click()
    expect(page.get_by_role("status")).to_have_text(
        "moved@acme.test unlinked from 1 IdP identity; their next sign-in links anew.")
    with console_site.db.reading() as session:
        assert session.scalar(select(func.count()).where(SamlIdentity.user_id == moved.id)) == 0
    page.goto(console_site.url(f"/console/members/{moved.id}/sso"))
    expect(page.get_by_text("moved@acme.test is linked to no IdP identity")).to_be_visible()
    expect(page.get_by_role("button", name="Unlink")).to_have_count(0)


def test_change_a_role_deactivate_reactivate_and_transfer_ownership(console_site: ConsoleSite, page: Page) -> None:
    with console_site.db.transaction() as session:
        temp = members.add_member(session, SYSTEM, console_site.org.org.id, email="temp@acme.test", role="member",
                                  team_id=None)
    console_site.sign_in_as(page, "owner@acme.test")
    page.goto(console_site.url("/console/members"))
    page.locator(f"#member-{temp.id}").get_by_role("link", name="Remove temp@acme.test").click()
    check_page(page, "members-remove")
    page.get_by_role("button", name="Remove member").click()
    expect(page.get_by_role("status")).to_have_text("temp@acme.test removed.")
    expect(page.locator(f"#member-{temp.id}")).to_have_count(0)
    hired = _member(console_site, "new.hire@acme.test")
    assert hired is not None
    row = page.locator(f"#member-{hired.id}")
    row.get_by_label("Role of new.hire@acme.test").select_option("admin")
    row.get_by_role("button", name="Change role of new.hire@acme.test").click()
    expect(page.get_by_role("status")).to_have_text("new.hire@acme.test is now admin.")
    page.locator(f"#member-{hired.id}").get_by_role("button", name="Deactivate new.hire@acme.test").click()
    expect(page.get_by_role("status")).to_have_text("new.hire@acme.test deactivated.")
    expect(page.locator(f"#member-{hired.id}").get_by_text("deactivated")).to_be_visible()
    page.locator(f"#member-{hired.id}").get_by_role("button", name="Reactivate new.hire@acme.test").click()
    expect(page.get_by_role("status")).to_have_text("new.hire@acme.test reactivated.")
    page.locator(f"#member-{hired.id}").get_by_role("link", name="Make owner (new.hire@acme.test)").click()
    check_page(page, "members-transfer")
    page.get_by_role("button", name="Transfer ownership").click()
    expect(page.get_by_role("status")).to_have_text("new.hire@acme.test is now the owner; you are an admin.")
    expect(page.locator("header .badge")).to_have_text("admin")
    owner = _member(console_site, "owner@acme.test")
    assert owner is not None and owner.role == "admin"


def test_the_seats_follow_a_field_focused_before_the_dialogs_script_loaded(console_site: ConsoleSite,
                                                                           page: Page) -> None:
    console_site.sign_in_as(page, "new.hire@acme.test")  # the owner now
    script = HeldScript(page)
    page.goto(console_site.url("/console/members/invite"), wait_until="commit")
    pending = page.locator("[data-seat='pending']")
    before = int(pending.inner_text())
    page.get_by_label("Email").focus()  # no listener yet to hear it
    with console_site.db.transaction() as session:  # another admin invites meanwhile
        members.invite_member(session, SYSTEM, console_site.org.org.id, email="early.bird@acme.test",
                              role="member", team_id=None)
    script.release()
    expect(pending).to_have_text(str(before + 1))  # the script asks, as the focus would have had it loaded
