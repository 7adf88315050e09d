"""The console against the rules the services keep, and forms that keep what was typed (a review; each failed before).
databases. Each test failed on the code it was written against:

- a page that offers a control identity.roles (through the domain service) refuses the caller;
- a form that loses what the person typed when it comes back with an error.
"""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from sqlalchemy import select

from audit.actor import system_actor
from identity import invitations, keys, mappings, members, orgs, teams
from identity.db import Database
from identity.models import ApiKey, GroupMapping, Team
from identity.orgs import NewOrg
from tests.factories import counts
from tests.identity.test_console_forms import sign_in

SYSTEM = system_actor("tests")


def add(db: Database, org: NewOrg, email: str, role: str, team_id: str | None = None) -> str:
    with db.transaction() as session:
        return members.add_member(session, SYSTEM, org.org.id, email=email, role=role, team_id=team_id).id


def personal_key(db: Database, org: NewOrg, user_id: str, name: str) -> str:
    with db.transaction() as session:
        return keys.create_api_key(session, SYSTEM, org.org.id, user_id=user_id, team_id=org.default_team_id,
                                   name=name, scopes=["inference"]).id


def input_value(page: str, input_id: str) -> str | None:
    """The value attribute of the <input id=input_id> of `page` (None when it has none)."""
    tag = re.search(rf'<input[^>]*\bid="{re.escape(input_id)}"[^>]*>', page)
    assert tag, f"no input #{input_id}"
    value = re.search(r'\bvalue="([^"]*)"', tag.group(0))
    return value.group(1) if value else None


# --- (3) a control offered that the domain refuses ------------------------------------------------

def test_keys_page_offers_an_admin_no_revoke_or_rotate_of_the_owners_key(client: FlaskClient, db: Database,
                                                                         acme: NewOrg) -> None:
    """Revoking or rotating an owner's key needs owners.manage (identity.keys._authorize_on_key): an admin
    is refused both, yet the keys page shows the admin Rotate and Revoke buttons on the owner's key."""
    owners_key = personal_key(db, acme, acme.owner.id, "owner laptop")
    admin_id = add(db, acme, "ada@acme.test", "admin", acme.default_team_id)
    token = sign_in(client, db, admin_id)
    refused = [client.post(f"/console/keys/{owners_key}/{verb}", data={"csrf_token": token}).status_code
               for verb in ("revoke", "rotate")]
    assert refused == [403, 403]  # the domain refuses the admin both
    page = client.get("/console/keys").get_data(as_text=True)
    assert "owner laptop" in page  # the admin reads every key of the org
    assert f"/console/keys/{owners_key}/revoke" not in page
    assert f"/console/keys/{owners_key}/rotate" not in page


def test_keys_page_offers_an_admin_no_rotate_of_a_peer_admins_key(client: FlaskClient, db: Database,
                                                                  acme: NewOrg) -> None:
    """Rotating someone else's key hands the caller its new secret, so it needs to outrank the holder
    (identity.keys.rotate_api_key: member.create_key): an admin may revoke a peer admin's key but not
    rotate it, yet the page offers Rotate."""
    ada = add(db, acme, "ada@acme.test", "admin", acme.default_team_id)
    abe = add(db, acme, "abe@acme.test", "admin", acme.default_team_id)
    abes_key = personal_key(db, acme, abe, "abe's ci")
    token = sign_in(client, db, ada)
    rotate = client.post(f"/console/keys/{abes_key}/rotate", data={"csrf_token": token})
    assert rotate.status_code == 403 and b"new-secret" not in rotate.data
    page = client.get("/console/keys").get_data(as_text=True)
    assert f"/console/keys/{abes_key}/revoke" in page  # allowed: any_keys.revoke on an admin
    assert f"/console/keys/{abes_key}/rotate" not in page


def test_team_page_offers_an_admin_no_team_role_change_or_removal_of_an_owner(client: FlaskClient, db: Database,
                                                                             acme: NewOrg) -> None:
    """Changing an owner's team role or taking them out of a team acts on an owner (owners.manage:
    identity.teams._member_of); an admin is refused both, yet the expanded team shows the admin a role
    select and a "Remove from team" link on the owner's row."""
    admin_id = add(db, acme, "ada@acme.test", "admin", acme.default_team_id)
    token = sign_in(client, db, admin_id)
    team, owner = acme.default_team_id, acme.owner.id
    before = counts(db)
    assert client.post(f"/console/teams/{team}/members/{owner}/role",
                       data={"csrf_token": token, "role": "viewer"}).status_code == 403
    assert client.post(f"/console/teams/{team}/members/{owner}/remove",
                       data={"csrf_token": token}).status_code == 403
    assert counts(db) == before
    page = client.get(f"/console/teams?team={team}").get_data(as_text=True)
    assert f'id="member-{owner}"' in page  # the owner is listed in the expanded team
    assert f"/console/teams/{team}/members/{owner}/role" not in page
    assert f"/console/teams/{team}/members/{owner}/remove" not in page


def test_wallet_page_offers_an_admin_no_top_up_the_org_has_not_allowed(client: FlaskClient, db: Database,
                                                                      acme: NewOrg) -> None:
    """An admin tops up only where the org's wallet setting admins_may_top_up allows it (off by default;
    identity.wallets._authorize_top_up). The wallet page and the teams list ask only `may("wallets.top_up")`
    and show the admin a top-up form and "+ Top up" link that the domain then refuses."""
    admin_id = add(db, acme, "ada@acme.test", "admin", acme.default_team_id)
    token = sign_in(client, db, admin_id)
    team = acme.default_team_id
    refused = client.post(f"/console/teams/{team}/wallet/top-up",
                          data={"csrf_token": token, "amount": "25", "reference": "INV-1"})
    assert refused.status_code == 403 and b"only an owner may top up" in refused.data
    wallet = client.get(f"/console/teams/{team}/wallet").get_data(as_text=True)
    assert f'action="/console/teams/{team}/wallet/top-up"' not in wallet
    teams = client.get("/console/teams").get_data(as_text=True)
    assert f"/console/teams/{team}/wallet#top-up" not in teams


def test_idp_page_offers_an_admin_no_edit_or_delete_of_a_rule_that_grants_owner(client: FlaskClient, db: Database,
                                                                              acme: NewOrg) -> None:
    """A rule that grants owner is the owner's to edit or delete (identity.mappings._authorize_owner_grant:
    trust.manage and owners.manage); the page shows an admin its Edit form and Delete button anyway."""
    with db.transaction() as session:
        orgs.update_settings(session, SYSTEM, acme.org.id, {"idp_may_grant_owner": True})
        rule = mappings.create_mapping(session, SYSTEM, acme.org.id, group_display_name="Founders",
                                       org_role="owner").id
    admin_id = add(db, acme, "ada@acme.test", "admin")
    token = sign_in(client, db, admin_id)
    for path, form in ((f"/console/idp/mappings/{rule}/delete", {}),
                       (f"/console/idp/mappings/{rule}", {"group_display_name": "Founders", "org_role": "owner"})):
        answer = client.post(path, data={"csrf_token": token, **form})
        assert answer.status_code == 403, path
    with db.reading() as session:
        assert session.get_one(GroupMapping, rule).org_role == "owner"
    page = client.get("/console/idp").get_data(as_text=True)
    assert "Founders" in page  # the admin reads the rule
    assert f'action="/console/idp/mappings/{rule}/delete"' not in page
    assert f'action="/console/idp/mappings/{rule}"' not in page


def test_members_page_offers_an_admin_no_resend_or_revoke_of_an_owners_invitation(client: FlaskClient, db: Database,
                                                                                  acme: NewOrg) -> None:
    """An invitation to become owner is the owners' to resend or revoke (identity.invitations._managed:
    owners.manage); the pending invitations list shows an admin both buttons on it."""
    with db.transaction() as session:
        invited = members.invite_member(session, SYSTEM, acme.org.id, email="heir@acme.test", role="owner",
                                        team_id=None, base_url="http://localhost").invitation.id
    admin_id = add(db, acme, "ada@acme.test", "admin")
    token = sign_in(client, db, admin_id)
    for verb in ("resend", "revoke"):
        answer = client.post(f"/console/members/invitations/{invited}/{verb}", data={"csrf_token": token})
        assert answer.status_code == 403 and b"owners.manage" in answer.data, verb
    page = client.get("/console/members").get_data(as_text=True)
    assert "heir@acme.test" in page  # the admin sees the pending invitation
    assert f"/console/members/invitations/{invited}/resend" not in page
    assert f"/console/members/invitations/{invited}/revoke" not in page


def test_team_page_offers_an_admin_no_adding_of_an_owner_to_a_team(client: FlaskClient, db: Database,
                                                                  acme: NewOrg) -> None:
    """Adding an owner to a team acts on an owner (member.add_to_team needs owners.manage for one); the
    "Add a member" list of a team the owner is not in offers the owner to an admin anyway."""
    admin_id = add(db, acme, "ada@acme.test", "admin")
    token = sign_in(client, db, admin_id)
    made = client.post("/console/teams", data={"csrf_token": token, "name": "Ops"})
    assert made.status_code == 303
    with db.reading() as session:
        team = session.scalars(select(Team.id).where(Team.org_id == acme.org.id, Team.name == "Ops")).one()
    added = client.post(f"/console/teams/{team}/members", data={"csrf_token": token, "member": "owner@acme.test",
                                                                "role": "member"})
    assert added.status_code == 403 and b"only an owner may act on an owner" in added.data
    page = client.get(f"/console/teams?team={team}").get_data(as_text=True)
    assert f'<option value="{acme.owner.id}">' not in page


def test_keys_page_offers_a_viewer_no_rotate_or_revoke_of_their_own_key(client: FlaskClient, db: Database,
                                                                       acme: NewOrg) -> None:
    """A viewer may hold a key (an owner made it, or they were a member when they made it) but may not
    manage keys (own_keys.manage: owner, admin, member); their keys page offers Rotate and Revoke anyway."""
    viewer_id = add(db, acme, "vic@acme.test", "viewer", acme.default_team_id)
    vics_key = personal_key(db, acme, viewer_id, "vic's notebook")
    token = sign_in(client, db, viewer_id)
    for verb in ("revoke", "rotate"):
        answer = client.post(f"/console/keys/{vics_key}/{verb}", data={"csrf_token": token})
        assert answer.status_code == 403 and b"own_keys.manage" in answer.data, verb
    page = client.get("/console/keys").get_data(as_text=True)
    assert "vic&#39;s notebook" in page and "may not create keys" in page
    assert f"/console/keys/{vics_key}/revoke" not in page
    assert f"/console/keys/{vics_key}/rotate" not in page


def test_teams_page_offers_no_delete_of_the_default_team(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    """The Default team cannot be deleted (identity.team_deletion), yet its row offers Delete and the
    inline "Delete 'Default'? This cannot be undone." form, to an owner too."""
    token = sign_in(client, db, acme.owner.id)
    team = acme.default_team_id
    refused = client.post(f"/console/teams/{team}/delete", data={"csrf_token": token, "confirm": "Default"})
    assert refused.status_code == 400 and b"the Default team cannot be deleted" in refused.data
    page = client.get("/console/teams").get_data(as_text=True)
    assert f"/console/teams?delete={team}" not in page
    assert f'action="/console/teams/{team}/delete"' not in page


# --- (4) a form that loses what the person typed on an error -------------------------------------

def test_create_team_keeps_the_typed_name_next_to_its_error(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    """A refused new team name (taken, or too long) comes back with the error but an empty field."""
    token = sign_in(client, db, acme.owner.id)
    for typed in ("default", "Platform " + "x" * 200):
        answer = client.post("/console/teams", data={"csrf_token": token, "name": typed})
        page = answer.get_data(as_text=True)
        assert answer.status_code in (400, 409) and 'id="new_name-error"' in page, typed
        assert input_value(page, "new_name") == typed, typed


def test_rename_team_keeps_the_typed_name_next_to_its_error(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    """A refused rename shows the team's old name in the field, not what was typed."""
    token = sign_in(client, db, acme.owner.id)
    with db.transaction() as session:
        session.add(Team(id="ops-00000001", org_id=acme.org.id, name="Ops", created_at=acme.org.created_at))
    answer = client.post("/console/teams/ops-00000001/rename", data={"csrf_token": token, "name": "Default"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 409 and 'id="name-ops-00000001-error"' in page
    assert input_value(page, "rename-input-ops-00000001") == "Default"


def test_create_key_keeps_the_typed_name_on_an_error(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    """A key refused for its team (the person left it since the page was loaded) comes back with the
    name field empty."""
    member_id = add(db, acme, "bob@acme.test", "member", acme.default_team_id)
    token = sign_in(client, db, member_id)
    with db.transaction() as session:
        session.add(Team(id="ops-00000001", org_id=acme.org.id, name="Ops", created_at=acme.org.created_at))
    answer = client.post("/console/keys", data={"csrf_token": token, "name": "bob's laptop",
                                                "team_id": "ops-00000001", "scopes": "inference"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400 and 'id="team_id-error"' in page
    with db.reading() as session:
        assert session.scalars(select(ApiKey)).first() is None
    assert input_value(page, "key-name") == "bob&#39;s laptop"


def test_top_up_keeps_the_typed_amount_and_reference_on_an_error(client: FlaskClient, db: Database,
                                                                 acme: NewOrg) -> None:
    """A top-up refused for a reference already used (or an amount it cannot read) comes back with both
    fields empty: the owner types the amount and the reference again."""
    token = sign_in(client, db, acme.owner.id)
    page_path = f"/console/teams/{acme.default_team_id}/wallet"
    first = client.post(page_path + "/top-up", data={"csrf_token": token, "amount": "25", "reference": "INV-7"})
    assert first.status_code == 303
    again = client.post(page_path + "/top-up", data={"csrf_token": token, "amount": "40", "reference": "INV-7"})
    page = again.get_data(as_text=True)
    assert again.status_code == 409 and 'id="reference-error"' in page
    assert (input_value(page, "amount"), input_value(page, "reference")) == ("40", "INV-7")
    unreadable = client.post(page_path + "/top-up", data={"csrf_token": token, "amount": "12.345",
                                                          "reference": "INV-8"})
    page = unreadable.get_data(as_text=True)
    assert unreadable.status_code == 400 and 'id="amount-error"' in page
    assert (input_value(page, "amount"), input_value(page, "reference")) == ("12.345", "INV-8")


def test_spending_limit_keeps_the_typed_limit_next_to_its_error(client: FlaskClient, db: Database,
                                                                acme: NewOrg) -> None:
    """A refused limit comes back showing the limit in force (here none) instead of what was typed."""
    token = sign_in(client, db, acme.owner.id)
    answer = client.post(f"/console/teams/{acme.default_team_id}/wallet/limit",
                         data={"csrf_token": token, "limit": "12.345"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400 and 'id="limit-error"' in page
    assert input_value(page, "limit") == "12.345"


def _sign_in_form(client: FlaskClient) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").get_data(as_text=True))
    assert found
    return found.group(1)


def test_sign_in_email_step_keeps_the_typed_address_next_to_its_error(client: FlaskClient, acme: NewOrg) -> None:
    """The email step of an org without SSO refuses "bob.acme.test" with an empty field."""
    client.application.config["SIGN_IN_EMAIL_MIN_SECONDS"] = 0
    answer = client.post("/", data={"csrf_token": _sign_in_form(client), "org": "acme", "email": "bob.acme.test"})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400 and 'id="email-error"' in page
    assert input_value(page, "email") == "bob.acme.test"


def test_new_group_mapping_keeps_the_typed_rule_next_to_its_error(client: FlaskClient, db: Database,
                                                                  acme: NewOrg) -> None:
    """A new rule refused (no team and no org role chosen yet) comes back with every field of the
    "Add a rule" form empty: the IdP group id typed (a long Entra object id) is gone."""
    token = sign_in(client, db, acme.owner.id)
    group = "8f0c3a2e-58a4-4e46-9bb5-0c6f0e1d2a77"
    answer = client.post("/console/idp/mappings", data={"csrf_token": token, "group_external_id": group,
                                                        "group_display_name": "Engineers", "team_id": "",
                                                        "org_role": ""})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400 and 'id="mapping-new-team_id-error"' in page
    assert input_value(page, "mapping-new-group_external_id") == group
    assert input_value(page, "mapping-new-group_display_name") == "Engineers"


def test_edited_group_mapping_keeps_the_typed_change_next_to_its_error(client: FlaskClient, db: Database,
                                                                       acme: NewOrg) -> None:
    """An edit refused comes back showing the rule as stored, not the edit that was typed."""
    with db.transaction() as session:
        rule = mappings.create_mapping(session, SYSTEM, acme.org.id, group_display_name="Engineers",
                                       team_id=acme.default_team_id).id
    token = sign_in(client, db, acme.owner.id)
    answer = client.post(f"/console/idp/mappings/{rule}", data={"csrf_token": token, "group_external_id": "",
                                                                "group_display_name": "Platform Engineers",
                                                                "team_id": "", "team_role": "member",
                                                                "org_role": ""})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400 and f'id="mapping-{rule}-team_id-error"' in page
    assert input_value(page, f"mapping-{rule}-group_display_name") == "Platform Engineers"


def test_the_invitations_change_link_keeps_the_chosen_role_and_team(client: FlaskClient, db: Database,
                                                                    acme: NewOrg) -> None:
    """The no-JavaScript review step's "Change" link went back to the dialog with the email only: the
    role and team chosen were reset to member and the inviter's team. The team comes back by its name."""
    token = sign_in(client, db, acme.owner.id)
    with db.transaction() as session:
        session.add(Team(id="ops-00000001", org_id=acme.org.id, name="Ops", created_at=acme.org.created_at))
    review = client.post("/console/members/invite/preview", data={"csrf_token": token, "email": "new@acme.test",
                                                                  "role": "admin", "team_id": "ops-00000001"})
    page = review.get_data(as_text=True)
    assert review.status_code == 200 and "<strong>admin</strong>" in page and "<strong>Ops</strong>" in page
    change = re.search(r'<a class="button secondary" href="([^"]+)">Change</a>', page)
    assert change
    dialog = client.get(change.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert 'value="new@acme.test"' in dialog
    assert '<option value="admin" selected>' in dialog
    assert input_value(dialog, "team_id") == "Ops"  # shown by its name, as the team's page's link says it


def test_personal_key_form_keeps_the_chosen_scopes_on_an_error(client: FlaskClient, db: Database,
                                                               acme: NewOrg) -> None:
    """A key refused (a scope that does not exist) came back with its team and scopes reset to the
    default team and inference."""
    member_id = add(db, acme, "bob@acme.test", "member", acme.default_team_id)
    with db.transaction() as session:
        session.add(Team(id="ops-00000001", org_id=acme.org.id, name="Ops", created_at=acme.org.created_at))
    with db.transaction() as session:
        teams.add_team_member(session, SYSTEM, acme.org.id, "ops-00000001", member_id, "member")
    token = sign_in(client, db, member_id)
    answer = client.post("/console/keys", data={"csrf_token": token, "name": "ci", "team_id": "ops-00000001",
                                                "scopes": ["usage.read", "no.such.scope"]})
    page = answer.get_data(as_text=True)
    form = page[page.index('action="/console/keys"'):page.index("</form>", page.index('action="/console/keys"'))]
    assert answer.status_code in (400, 403), answer.status_code
    assert 'value="usage.read" checked' in form and 'value="inference" checked' not in form
    assert '<option value="ops-00000001" selected>' in form


def test_service_key_form_keeps_the_typed_name_and_scopes_on_an_error(client: FlaskClient, db: Database,
                                                                      acme: NewOrg) -> None:
    """The team is typed by name; a typo came back 404 with the error next to the team, but the name
    field (no `value`) and the scopes (reset to inference) were lost."""
    token = sign_in(client, db, acme.owner.id)
    answer = client.post("/console/keys/service", data={"csrf_token": token, "name": "prod gateway",
                                                        "team_id": "Platfrom", "scopes": ["usage.read"]})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 404 and 'id="service-team_id-error"' in page
    assert input_value(page, "service-team") == "Platfrom"
    assert input_value(page, "service-name") == "prod gateway"
    form = page[page.index('action="/console/keys/service"'):]
    assert 'value="usage.read" checked' in form and 'value="inference" checked' not in form


def test_an_error_on_an_invitation_no_longer_pending_is_shown(client: FlaskClient, db: Database,
                                                              acme: NewOrg) -> None:
    """A second Revoke (two admins, or a double click), or a Resend, of an invitation revoked meanwhile
    is refused 409, but the message went to that invitation's row, which a revoked invitation no
    longer has: the page said nothing. It is now the page's error."""
    with db.transaction() as session:
        invitation, _ = invitations.invite(session, SYSTEM, acme.org.id, email="new@acme.test", role="member")
    token = sign_in(client, db, acme.owner.id)
    assert client.post(f"/console/members/invitations/{invitation.id}/revoke",
                       data={"csrf_token": token}).status_code == 303
    for verb in ("revoke", "resend"):
        again = client.post(f"/console/members/invitations/{invitation.id}/{verb}", data={"csrf_token": token})
        page = again.get_data(as_text=True)
        assert again.status_code == 409, verb
        assert re.search(r'<p class="form-error" role="alert"[^>]*>[^<]*this invitation is revoked', page), verb


def test_the_invite_dialog_at_the_seat_cap_promises_no_seat(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    """At max_seats accepting is refused (SeatCapReached), yet the dialog showed no cap and said
    "Accepting adds a seat: $x now...": the invitation went out and could never be accepted. The
    dialog shows the cap (from identity.seats.preview) and says so; nor does it list every team."""
    for name in ("bob", "carol", "dave"):
        add(db, acme, f"{name}@acme.test", "member")  # 4 used: one purchased seat
    with db.transaction() as session:
        orgs.update_settings(session, SYSTEM, acme.org.id, {"max_seats": 5})
        invitations.invite(session, SYSTEM, acme.org.id, email="erin@acme.test", role="member")
    sign_in(client, db, acme.owner.id)
    dialog = client.get("/console/members/invite").get_data(as_text=True)
    assert re.search(r'id="seat-cap">5 seats, 0 left after pending invitations<', dialog)
    assert "Accepting adds a seat" not in dialog and "cannot be accepted" in dialog
    assert '<select id="team_id"' not in dialog and input_value(dialog, "team_id") is not None
    assert client.get("/console/members/seats.json").get_json()["cap"].startswith("5 seats, 0 left")


def test_confirmation_pages_refuse_whom_the_domain_refuses(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    """GET /console/members/<id>/transfer and /remove rendered "Make X the owner?" / "Remove X?" with
    their danger button to a viewer (and "Remove owner?" to an admin), and the team-removal page to a
    viewer: the POST was then refused. The pages now ask identity.roles first, as the lists do."""
    bob = add(db, acme, "bob@acme.test", "member", acme.default_team_id)
    viewer = add(db, acme, "vic@acme.test", "viewer")
    admin = add(db, acme, "ada@acme.test", "admin")
    sign_in(client, db, viewer)
    for path in (f"/console/members/{bob}/transfer", f"/console/members/{bob}/remove",
                 f"/console/teams/{acme.default_team_id}/members/{bob}/remove"):
        page = client.get(path)
        assert page.status_code == 403 and b'class="danger"' not in page.data, path
    sign_in(client, db, admin)
    page = client.get(f"/console/members/{acme.owner.id}/remove")
    assert page.status_code == 403 and b"Remove member</button>" not in page.data
    assert client.get(f"/console/members/{bob}/remove").status_code == 200
    with db.reading() as session:  # nothing above changed anything
        assert session.scalars(select(ApiKey)).first() is None
