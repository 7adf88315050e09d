"""The web console in a real browser: sign in through the test IdP, teams, keys, and what a viewer
may not do. Every page reached is checked by axe-core and saved as a screenshot (tests/browser/axe.py).

One service per module and database (`console_site`): the tests share the org `acme`, so each
makes what it needs under names of its own.
"""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from audit.actor import system_actor
from identity import keys, members, orgs, teams
from identity.models import Invitation, Team
from tests.browser.axe import check_page, shoot
from tests.browser.conftest import ConsoleSite, HeldScript, console_ready

SYSTEM = system_actor("tests")


def _add_member(site: ConsoleSite, email: str, role: str = "member") -> str:
    with site.db.transaction() as session:
        return members.add_member(session, SYSTEM, site.org.org.id, email=email, role=role, team_id=None).id


def _team_named(site: ConsoleSite, name: str) -> Team | None:
    with site.db.reading() as session:
        return session.query(Team).filter_by(org_id=site.org.org.id, name=name).one_or_none()


def _create_team(page: Page, site: ConsoleSite, name: str) -> str:
    page.goto(site.url("/console/teams"))
    page.get_by_label("New team").fill(name)
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("status")).to_have_text(f"Team '{name}' created.")
    team = _team_named(site, name)
    assert team is not None
    return team.id


def test_sign_in_by_org_slug_through_the_idp_lands_in_the_console(console_site: ConsoleSite, page: Page) -> None:
    page.goto(console_site.url("/"))
    check_page(page, "sign-in")
    console_site.sign_in_as(page, "owner@acme.test")
    expect(page.get_by_role("heading", name="Teams", level=1)).to_be_visible()
    expect(page.get_by_role("cell", name=re.compile(r"^default-[0-9a-f]{8}$"))).to_be_visible()
    check_page(page, "teams")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the tables become stacked cards
    check_page(page, "teams-narrow")
    answer = page.request.get(console_site.url("/me"))  # /me stays JSON for programs
    assert answer.status == 200 and answer.json()["userName"] == "owner@acme.test"


def test_a_work_email_goes_to_its_domain_sso_and_an_unknown_one_gets_the_same_answer(
        console_site: ConsoleSite, page: Page) -> None:
    console_site.idp.person.name_id = "owner@acme.test"
    page.goto(console_site.url("/"))
    page.get_by_label("Work email or organization").fill("owner@acme.test")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(console_site.url("/console/teams"))  # acme.test is acme's domain, and acme has SSO
    page.context.clear_cookies()
    answers = []
    for address in ("nobody@elsewhere.test", "owner@elsewhere.test"):
        page.goto(console_site.url("/"))
        page.get_by_label("Work email or organization").fill(address)
        page.get_by_role("button", name="Continue").click()
        answers.append(page.inner_text("main").replace(address, "ADDRESS"))
    assert answers[0] == answers[1] and "Check your mail" in answers[0]
    check_page(page, "sign-in-check-mail")
    page.goto(console_site.url("/"))
    page.get_by_label("Work email or organization").fill("initech")  # no such org, or one without SSO
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_label("Work email")).to_be_visible()
    check_page(page, "sign-in-email-step")


def test_rename_a_team_inline_and_cancel_a_rename(console_site: ConsoleSite, page: Page) -> None:
    console_site.sign_in_as(page, "owner@acme.test")
    team_id = _create_team(page, console_site, "Research")
    row = page.locator(f"#team-{team_id}")
    row.get_by_role("link", name="Rename Research").click()
    field = row.get_by_label("New name of Research")
    expect(field).to_be_focused()
    field.fill("Abandoned name")
    shoot(page, "teams-rename-inline")
    row.get_by_role("link", name="Cancel").click()
    expect(field).to_be_hidden()
    expect(row.get_by_role("link", name="Research", exact=True)).to_be_visible()
    assert _team_named(console_site, "Research") is not None
    row.get_by_role("link", name="Rename Research").click()
    expect(field).to_have_value("Research")  # the cancelled text is gone
    console_ready(page)  # the script's alone: the clicks above may have beaten it and loaded pages
    field.press("Escape")  # the keyboard's way to cancel
    expect(field).to_be_hidden()
    expect(row.get_by_role("link", name="Rename Research")).to_be_focused()
    row.get_by_role("link", name="Rename Research").press("Enter")
    field.fill("Research Lab")
    row.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Team renamed to 'Research Lab'.")
    expect(page.locator(f"#team-{team_id}").get_by_role("link", name="Research Lab", exact=True)).to_be_visible()
    team = _team_named(console_site, "Research Lab")
    assert team is not None and team.id == team_id  # a rename keeps the id


def test_delete_a_team_through_its_inline_confirmation(console_site: ConsoleSite, page: Page) -> None:
    console_site.sign_in_as(page, "owner@acme.test")
    team_id = _create_team(page, console_site, "Scratch")
    row = page.locator(f"#team-{team_id}")
    row.get_by_role("link", name="Delete Scratch").click()
    expect(row.get_by_text("Delete 'Scratch'? This cannot be undone.")).to_be_visible()
    check_page(page, "teams-delete-confirmation")
    row.get_by_role("link", name="Cancel").click()
    expect(row.get_by_role("link", name="Delete Scratch")).to_be_visible()
    row.get_by_role("link", name="Delete Scratch").click()
    row.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_have_text("Team 'Scratch' deleted.")
    expect(page.locator(f"#team-{team_id}")).to_have_count(0)
    assert _team_named(console_site, "Scratch") is None


def test_a_click_before_the_script_has_loaded_gives_what_the_inline_form_gives(console_site: ConsoleSite,
                                                                               page: Page) -> None:
    console_site.sign_in_as(page, "owner@acme.test")
    team_id = _create_team(page, console_site, "Early")
    script = HeldScript(page)
    page.goto(console_site.url("/console/teams"), wait_until="commit")
    row = page.locator(f"#team-{team_id}")
    row.get_by_role("link", name="Rename Early").click()  # no handler yet: loads the page with the form open
    page.wait_for_url(re.compile(r"\?rename="), wait_until="commit")  # not "load": that waits for the script
    expect(row.get_by_label("New name of Early")).to_be_focused()
    row.get_by_role("link", name="Cancel").click()
    page.wait_for_url(re.compile(r"/console/teams#rename-link-"), wait_until="commit")
    expect(row.get_by_label("New name of Early")).to_be_hidden()
    row.get_by_role("link", name="Delete Early").click()
    page.wait_for_url(re.compile(r"\?delete="), wait_until="commit")
    expect(row.get_by_role("button", name="Delete")).to_be_focused()  # as the inline confirmation focuses it
    script.release()  # the script comes, with the confirmation open as the page
    page.keyboard.press("Escape")
    expect(row.get_by_role("button", name="Delete")).to_be_hidden()
    expect(row.get_by_role("link", name="Delete Early")).to_be_focused()  # back to what opened it
    row.get_by_role("link", name="Delete Early").click()
    row.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_have_text("Team 'Early' deleted.")
    assert _team_named(console_site, "Early") is None


def test_add_a_member_to_a_second_team_change_their_role_and_remove_them(console_site: ConsoleSite,
                                                                          page: Page) -> None:
    user_id = _add_member(console_site, "dana@acme.test")
    console_site.sign_in_as(page, "owner@acme.test")
    team_id = _create_team(page, console_site, "Platform")  # lands with the new team expanded
    members_of = page.locator(f"#members-{team_id}")
    members_of.get_by_label("Add a member").fill("dana@acme.test")
    members_of.get_by_role("button", name="Add to team").click()
    expect(page.get_by_role("status")).to_have_text("dana@acme.test added to the team.")
    dana = page.locator(f"#members-{team_id} #member-{user_id}")
    expect(dana.get_by_role("cell", name="manual")).to_be_visible()
    check_page(page, "team-members")
    dana.get_by_label("Team role of dana@acme.test").select_option("admin")
    dana.get_by_role("button", name="Change team role of dana@acme.test").click()
    expect(page.get_by_role("status")).to_have_text("Team role changed to admin.")
    with console_site.db.transaction() as session:  # a key in the team, which the removal revokes
        keys.create_api_key(session, SYSTEM, console_site.org.org.id, user_id=user_id, team_id=team_id,
                            name="ci", scopes=["inference"])
        assert teams.removal_preview(session, SYSTEM, console_site.org.org.id, team_id, user_id)
    page.locator(f"#members-{team_id} #member-{user_id}").get_by_role(
        "link", name="Remove dana@acme.test from team").click()
    expect(page.get_by_text("This revokes 1 API key of theirs for this team")).to_be_visible()
    check_page(page, "team-member-removal")
    page.get_by_role("button", name="Remove from team").click()
    expect(page.get_by_role("status")).to_have_text("Member removed from the team.")
    expect(page.locator(f"#members-{team_id} #member-{user_id}")).to_have_count(0)


def test_create_a_key_see_its_secret_once_and_revoke_it(console_site: ConsoleSite, page: Page) -> None:
    console_site.sign_in_as(page, "owner@acme.test")
    page.goto(console_site.url("/console/keys"))
    page.get_by_label("Name", exact=True).first.fill("laptop")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-secret").inner_text()
    assert secret.startswith("key_")
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    check_page(page, "keys-secret-once")
    page.goto(console_site.url("/console/keys"))
    assert secret not in page.content()  # shown once
    row = page.locator("tr", has=page.get_by_role("cell", name="laptop", exact=True)).first
    expect(row.get_by_role("cell", name="active")).to_be_visible()
    check_page(page, "keys")
    row.get_by_role("button", name=re.compile("^Revoke laptop")).click()
    expect(page.get_by_role("status")).to_have_text("Key revoked: it no longer works.")
    answer = page.request.get(console_site.url("/api/v1/key"), headers={"Authorization": f"Bearer {secret}"})
    assert answer.status == 401


def test_a_viewer_sees_no_admin_controls_and_a_forged_admin_post_is_refused(console_site: ConsoleSite,
                                                                             page: Page) -> None:
    _add_member(console_site, "vic@acme.test", role="viewer")
    console_site.sign_in_as(page, "vic@acme.test")
    expect(page.get_by_role("button", name="Create team")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("^(Rename|Delete) "))).to_have_count(0)
    check_page(page, "teams-viewer")
    page.goto(console_site.url("/console/members"))
    expect(page.get_by_role("link", name="Invite member")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^(Change|Deactivate|Remove)"))).to_have_count(0)
    check_page(page, "members-viewer")
    token = page.locator("body").get_attribute("data-csrf") or ""
    forged = page.request.post(console_site.url("/console/teams"), form={"csrf_token": token, "name": "Forged"})
    assert forged.status == 403 and "may not teams.manage" in forged.text()
    no_token = page.request.post(console_site.url("/console/teams"), form={"name": "Forged"})
    assert no_token.status == 403 and "did not come from this console" in no_token.text()
    assert _team_named(console_site, "Forged") is None
    page.goto(console_site.url("/console/members/invite"))  # not offered, and refused when asked for
    expect(page.get_by_role("heading", name="Refused")).to_be_visible()
    check_page(page, "refused")


def test_without_javascript_rename_and_delete_are_plain_forms_and_errors_sit_by_their_field(
        console_site: ConsoleSite, browser: Browser) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    console_site.idp.person.name_id = "owner@acme.test"
    page.goto(console_site.url("/saml/acme/login"))  # without JS the IdP's form needs its button
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(console_site.url("/console/teams"))
    team_id = _create_team(page, console_site, "Offline")
    _create_team(page, console_site, "Taken")
    row = page.locator(f"#team-{team_id}")
    row.get_by_role("link", name="Rename Offline").click()  # loads the page with the row's form open
    page.wait_for_url(re.compile(r"\?rename="))
    expect(row.get_by_label("New name of Offline")).to_be_focused()  # as the inline form focuses it
    row.get_by_label("New name of Offline").fill("Taken")
    row.get_by_role("button", name="Save").click()
    field = page.locator(f"#team-{team_id}").get_by_label("New name of Offline")
    expect(field).to_have_attribute("aria-invalid", "true")
    error = page.locator(f"#name-{team_id}-error")
    expect(error).to_contain_text("already exists")
    assert field.get_attribute("aria-describedby") == f"name-{team_id}-error"
    shoot(page, "teams-rename-error-no-js")  # axe needs a script: this context runs none
    page.locator(f"#team-{team_id}").get_by_role("link", name="Cancel").click()
    page.wait_for_url(re.compile(r"/console/teams#rename-link-"))
    expect(page.locator(f"#team-{team_id}").get_by_label("New name of Offline")).to_be_hidden()
    expect(page.get_by_role("link", name="Rename Offline")).to_be_focused()  # where the inline Cancel puts it
    page.locator(f"#team-{team_id}").get_by_role("link", name="Delete Offline").click()
    expect(page.get_by_role("button", name="Delete")).to_be_focused()
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_have_text("Team 'Offline' deleted.")
    context.close()


def test_an_org_without_sso_signs_in_with_a_mailed_one_time_link(console_site: ConsoleSite, page: Page) -> None:
    with console_site.db.transaction() as session:
        orgs.create_org(session, SYSTEM, "Initech", owner_email="peter@initech.test")
    page.goto(console_site.url("/"))
    page.get_by_label("Work email or organization").fill("initech")
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Work email").fill("peter@initech.test")
    sent = len(console_site.inbox.messages)
    page.get_by_role("button", name="Email me a sign-in link").click()
    expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
    mail = console_site.inbox.wait(sent + 1)[-1]
    assert mail["To"] == "peter@initech.test"
    page.goto(console_site.inbox.link())  # the same browser: the link works only where it was asked for
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(console_site.url("/console/teams"))
    expect(page.locator("header .org")).to_have_text("initech")


def test_an_address_not_in_the_org_is_offered_an_invitation_to_the_team(console_site: ConsoleSite, page: Page) -> None:
    """OLLM's team row has "+ Invite": typing a newcomer's address into "Add a member" offers to invite them to
    this team, and the invite dialog opens with the address and the team filled in."""
    console_site.sign_in_as(page, "owner@acme.test")
    team_id = _create_team(page, console_site, "Research")
    members_of = page.locator(f"#members-{team_id}")
    expect(members_of.get_by_role("link", name="+ Invite someone new to Research")).to_be_visible()
    members_of.get_by_label("Add a member").fill("newcomer@acme.test")
    members_of.get_by_role("button", name="Add to team").click()
    expect(page.locator("#member-error")).to_contain_text("no member 'newcomer@acme.test' in this org")
    check_page(page, "team-member-invite-offer")
    page.get_by_role("link", name="Invite newcomer@acme.test to Research").click()
    expect(page.get_by_label("Email")).to_have_value("newcomer@acme.test")
    expect(page.get_by_label("Team")).to_have_value("Research")  # by the name the link said (review 2, s21)
    page.get_by_role("button", name="Review invitation").click()
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_role("status")).to_have_text("Invitation to newcomer@acme.test mailed.")
    with console_site.db.reading() as session:
        sent = session.scalars(select(Invitation).where(Invitation.email == "newcomer@acme.test")).one()
        assert sent.team_id == team_id and sent.status == "pending"
