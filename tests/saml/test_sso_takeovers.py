"""A hostile review of SAML sign-in, sessions, sign-in links and invitations: each test here failed
on the code it was written against, and shows one way in that should be closed."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner
from flask.testing import FlaskClient

from audit import Actor
from identity import invitations, members, orgs, users
from identity.db import Database
from identity.errors import DomainError
from identity.grants import org_role
from identity.orgs import NewOrg
from identity.web import cookies
from tests.factories import provision
from tests.saml.conftest import Sso, configure, form_token, signed_in_by_link
from tests.saml.idp import KeyPair, TestIdP

PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def _me(sso: Sso) -> str | None:
    answer = sso.client.get("/me")
    return str((answer.get_json() or {})["id"]) if answer.status_code == 200 else None


def _link_ann(sso: Sso, system: Actor) -> Any:
    """Ann, an existing member, signs in once with her persistent NameID: she is linked to it."""
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    assert sso.sp_login(name_id="P1-ann", name_id_format=PERSISTENT,
                        attributes={"email": ["ann@acme.test"]}).status_code == 303
    assert _me(sso) == ann.id
    sso.client.delete_cookie(cookies.COOKIE)
    return ann


def test_a_transient_name_id_with_an_edited_email_does_not_enter_a_linked_account(sso: Sso, system: Actor) -> None:
    """Bob, another IdP user, edits his email attribute to Ann's and gets a transient NameID (an
    AuthnRequest's NameIDPolicy asks for one; most IdPs honour it). The email attribute then chooses
    Ann's account, although she is linked to her persistent NameID at this IdP (DESIGN.md 5: the
    email attribute links at most once and never chooses an account afterwards)."""
    ann = _link_ann(sso, system)
    answer = sso.sp_login(name_id="_transient-of-bob-1234", name_id_format=TRANSIENT,
                          attributes={"email": ["ann@acme.test"]})
    assert _me(sso) != ann.id, "an email attribute chose a linked account"
    assert answer.status_code == 403


def test_another_name_id_format_does_not_enter_a_linked_account(sso: Sso, system: Actor) -> None:
    """The same through an emailAddress NameID (again NameIDPolicy): a linked account 'takes no other
    NameID from that IdP' (saml.models.SamlIdentity), yet this one signs in as Ann."""
    ann = _link_ann(sso, system)
    answer = sso.sp_login(name_id="ann@acme.test", name_id_format=EMAIL)
    assert _me(sso) != ann.id, "a non-persistent NameID chose a linked account"
    assert answer.status_code == 403


def _console_sign_in(client: FlaskClient, who: str) -> Any:
    """Type `who` into the console's sign-in page (`/`) and press Continue, as a person does."""
    client.application.config["SIGN_IN_EMAIL_MIN_SECONDS"] = 0
    page = client.get("/")
    return client.post("/", data={"who": who, "csrf_token": form_token(page) or ""})


def test_another_org_cannot_claim_an_email_domain_for_its_own_idp(db: Database, acme: NewOrg,
                                                                   other_keys: KeyPair, client: FlaskClient,
                                                                   system: Actor) -> None:
    """Acme signs in with links (no SSO). Evil, another tenant of the service, configures SSO with its
    own IdP and provisions one member with an address at acme.test: from then on every Acme
    employee who types their work email on the sign-in page is sent to Evil's IdP (a login page the
    attacker runs: credential phishing started from our own page). Nothing proves that Evil holds
    acme.test (saml.discovery.sso_slug counts any live member's email)."""
    provision(db, system, acme.org.id, "alice@acme.test")
    with db.transaction() as session:
        evil = orgs.create_org(session, system, "Evil", owner_email="boss@evil.test")
    configure(db, evil.org.slug, TestIdP("https://evil-idp.example.test/metadata", other_keys), jit=True)
    provision(db, system, evil.org.id, "plant@acme.test")

    answer = _console_sign_in(client, "alice@acme.test")
    body = answer.get_data(as_text=True)
    assert f"/saml/{evil.org.slug}/login" not in body, "Acme's employee was sent to another org's IdP"


def test_a_removed_admins_pending_invitation_no_longer_makes_an_admin(db: Database, acme: NewOrg,
                                                                      system: Actor) -> None:
    """Eve, an admin, invites an address of her own as admin, then is removed from the org (she left,
    or was caught). The invitation she made outlives her: its link still makes an admin a week later,
    with no owner's say (identity.invitations.accept never asks whether its inviter may still grant
    that role). Her removal was meant to end her power in the org; this is a back door past it."""
    with db.transaction() as session:
        eve = members.add_member(session, system, acme.org.id, email="eve@acme.test", role="admin", team_id=None)
    as_eve = Actor("user", eve.id, "eve@acme.test", org_id=acme.org.id, role="admin")
    with db.transaction() as session:
        _invitation, token = invitations.invite(session, as_eve, acme.org.id, email="eve.backup@elsewhere.test",
                                                role="admin")
    with db.transaction() as session:
        users.delete_user(session, system, acme.org.id, eve.id)

    with db.transaction() as session:
        holder = members.invitation_holder(session, token)
    try:
        with db.transaction() as session:
            joined = members.accept_invitation(session, holder, token)
    except DomainError:
        return  # refused: what should happen
    with db.reading() as session:
        role = org_role(session, joined.id)
    raise AssertionError(f"a removed admin's invitation made {joined.user_name!r} an org {role}")


def test_requiring_sso_ends_the_sign_in_link_sessions_it_now_forbids(sso: Sso, runner: CliRunner,
                                                                     system: Actor) -> None:
    """Mia, a member, signed in with a one-time link (her mailbox, not the IdP, vouched for her). The
    owner then requires SSO (often because mailboxes are not trusted any more). A link is refused to
    her from now on, but the session the link gave her goes on, kept alive by use up to its absolute
    lifetime: the rule 'members sign in only through the IdP' does not hold for her."""
    provision(sso.db, system, sso.org.org.id, "mia@acme.test")
    assert signed_in_by_link(sso, runner, "mia@acme.test") == "login_link"

    with sso.db.transaction() as session:
        orgs.set_require_sso(session, system, sso.org.org.id, True)
    assert sso.client.get("/me").status_code == 401, "a member's link session outlived 'require SSO'"


def test_demoting_an_owner_ends_their_break_glass_session(sso: Sso, runner: CliRunner, system: Actor) -> None:
    """With SSO required, an owner's sign-in link is the audited break-glass way in. Demoted, they
    could not get one any more; the break-glass session they hold must end with the role it needed."""
    with sso.db.transaction() as session:
        orgs.set_require_sso(session, system, sso.org.org.id, True)
        boss = members.add_member(session, system, sso.org.org.id, email="boss@acme.test", role="owner", team_id=None)
    assert signed_in_by_link(sso, runner, "boss@acme.test") == "break_glass"

    with sso.db.transaction() as session:
        users.change_role(session, system, sso.org.org.id, boss.id, "admin")
    assert sso.client.get("/me").status_code == 401, "a demoted owner's break-glass session outlived the demotion"


def test_a_replayed_logout_request_is_refused(sso: Sso, system: Actor) -> None:
    """A LogoutRequest the IdP signed ends the sessions it names once: the same request sent again
    (captured from a URL, a log, a Referer) is refused, in any process (the replay cache's table)."""
    provision(sso.db, system, sso.org.org.id, "amy@acme.test")
    query = sso.idp.logout_request_query(sso.urls.slo, "amy@acme.test", None)
    first = sso.client.get(f"/saml/acme/slo?{query}")
    assert first.status_code == 302, first.data[:200]
    again = sso.client.get(f"/saml/acme/slo?{query}")
    assert again.status_code == 400 and b"refused" in again.data
