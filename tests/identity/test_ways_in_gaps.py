"""Ways in that a hostile review found open (console sessions, the IdP's owners, API keys,
invitations): each test here failed before its fix. A sign-in link's session lives only while the
link vouches for its user (identity.sessions.link_still_vouches), however they stop being an
owner; `idp_may_grant_owner` applies to the owners the IdP made before it changed; a key rotates
once under a race; an invitation never makes a second account for a member's own address."""
# ruff: noqa: F811  (the SAML fixtures are imported from tests.saml.conftest and taken as arguments)

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from audit import Actor, clock
from identity import group_membership, groups, invitations, keys, members, orgs, tokens, users
from identity.db import Database
from identity.errors import Conflict, DomainError, LastOwner
from identity.models import ApiKey, GroupMapping, Invitation, Org, User
from identity.orgs import NewOrg
from identity.vocabulary import KeyStatus
from tests.factories import provision
from tests.saml.conftest import Sso, idp, idp_keys, signed_in_by_link, sso  # noqa: F401  (fixtures)

# --- Console sessions -------------------------------------------------------------------------


def test_an_owners_link_session_from_before_require_sso_ends_with_their_demotion(sso: Sso, runner: CliRunner,
                                                                                system: Actor) -> None:
    """Bea, an owner, signs in with a one-time link while the org still allows links. The org then
    requires SSO: every link session *below owner* ends (orgs._change_settings), hers is spared as
    an owner's. She is then demoted to admin. An admin may not sign in without the IdP any more,
    yet the link session goes on: users.change_role ends only sessions of method `break_glass`,
    and hers is `login_link` (it began before SSO was required)."""
    with sso.db.transaction() as session:
        bea = members.add_member(session, system, sso.org.org.id, email="bea@acme.test", role="owner", team_id=None)
    assert signed_in_by_link(sso, runner, "bea@acme.test") == "login_link"
    with sso.db.transaction() as session:
        orgs.set_require_sso(session, system, sso.org.org.id, True)
    assert sso.client.get("/me").status_code == 200  # an owner's: spared, as it should be

    with sso.db.transaction() as session:
        users.change_role(session, system, sso.org.org.id, bea.id, "admin")
    assert sso.client.get("/me").status_code == 401, \
        "a demoted owner's sign-in-link session outlived 'require SSO' and the demotion"


def _owner_group(sso: Sso, system: Actor, user_id: str) -> Any:
    """An IdP group `Owners` that grants `owner` (the org allows it), with `user_id` in it."""
    with sso.db.transaction() as session:
        orgs.update_settings(session, system, sso.org.org.id, {"idp_may_grant_owner": True})
        session.add(GroupMapping(id=str(uuid.uuid4()), org_id=sso.org.org.id, created_at=clock.now(),
                                 group_display_name="Owners", org_role="owner"))
    with sso.db.transaction() as session:
        return groups.create_group(session, system, sso.org.org.id, display_name="Owners", member_ids=[user_id])


def test_an_owner_demoted_by_the_idp_loses_their_break_glass_session(sso: Sso, runner: CliRunner,
                                                                     system: Actor) -> None:
    """Ola is an owner through the IdP group `Owners` (idp_may_grant_owner). With SSO required she
    signs in through the break-glass link. Then the IdP takes her out of `Owners` (she left the
    ops team): she is an admin from now on, who could not get a link any more. The demotion by
    the IdP ends nothing: only users.change_role (a manual demotion) ends break-glass sessions."""
    ola = provision(sso.db, system, sso.org.org.id, "ola@acme.test")
    group = _owner_group(sso, system, ola.id)
    with sso.db.reading() as session:
        assert users.org_role(session, ola.id) == "owner"
    with sso.db.transaction() as session:
        orgs.set_require_sso(session, system, sso.org.org.id, True)
    assert signed_in_by_link(sso, runner, "ola@acme.test") == "break_glass"

    with sso.db.transaction() as session:
        group_membership.remove_members(session, system, sso.org.org.id, group.id, [ola.id])
    with sso.db.reading() as session:
        assert users.org_role(session, ola.id) != "owner"
    assert sso.client.get("/me").status_code == 401, \
        "a break-glass session outlived the owner role the IdP took away"


# --- API keys ---------------------------------------------------------------------------------


@pytest.mark.postgres_only("SQLite's BEGIN IMMEDIATE serialises whole write transactions; the race needs two")
def test_a_key_rotates_once_even_when_two_rotations_race(db: Database, acme: NewOrg, system: Actor,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """README: 'A key rotates once: rotate its successor next.' rotate_api_key checks `rotated_to`
    on a row it read without a lock, so two rotations at once (a deploy script retried, two
    operators, the holder and an admin) both pass the check and both commit: two live successors,
    each a new secret, and the old key's `rotated_to` names only the last, so the other successor is
    off the rotation chain that revocation and audits follow."""
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                  team_id=acme.default_team_id, name="deploy", scopes=["inference"])
    real_generate = tokens.generate

    def generate(kind: str) -> tokens.NewSecret:
        if threading.current_thread().name.startswith("rotate-"):
            time.sleep(1)  # each rotation has read the old key and passed its checks: the other reads meanwhile
        return real_generate(kind)

    monkeypatch.setattr(tokens, "generate", generate)
    outcomes: list[str] = []

    def rotate() -> None:
        try:
            with db.transaction() as session:
                keys.rotate_api_key(session, system, acme.org.id, key.id, grace_seconds=60)
            outcomes.append("rotated")
        except DomainError as error:
            outcomes.append(type(error).__name__)

    threads = [threading.Thread(target=rotate, name=f"rotate-{n}") for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with db.reading() as session:
        successors = session.scalars(select(ApiKey).where(ApiKey.org_id == acme.org.id, ApiKey.id != key.id,
                                                          ApiKey.name == "deploy",
                                                          ApiKey.status == KeyStatus.ACTIVE)).all()
    assert len(successors) == 1, f"one key rotated into {len(successors)} live successors ({outcomes})"
    assert sorted(outcomes) == ["Conflict", "rotated"]


# --- Invitations ------------------------------------------------------------------------------


def test_an_invitation_to_a_members_own_address_is_refused(db: Database, acme: NewOrg, system: Actor) -> None:
    """Jo was provisioned by the IdP as userName `jdoe` with her work email jdoe@acme.test (Okta's
    and Entra's usual shape: a short login and an email). Inviting jdoe@acme.test would make a
    second, manual account for the same person, with a seat of its own, that no IdP
    deprovisioning reaches: refused as 'already a member', whatever case the address is in."""
    provision(db, system, acme.org.id, "jdoe", email="jdoe@acme.test", source="scim")
    for address in ("jdoe@acme.test", "JDoe@Acme.test"):
        with pytest.raises(Conflict, match="already a member"), db.transaction() as session:
            invitations.invite(session, system, acme.org.id, email=address)
    with db.reading() as session:
        assert session.scalars(select(Invitation).where(Invitation.org_id == acme.org.id)).all() == []


def test_an_invitation_accepted_after_the_idp_made_its_address_a_member_is_refused(
        db: Database, acme: NewOrg, system: Actor) -> None:
    """The invitation went out first; the IdP then provisioned the same person (userName `kim`,
    email kim@acme.test): accepting it would make the second account, so it is refused (409) and
    nothing is written."""
    with db.transaction() as session:
        _invitation, token = invitations.invite(session, system, acme.org.id, email="kim@acme.test")
    kim = provision(db, system, acme.org.id, "kim", email="kim@acme.test", source="scim")
    with db.transaction() as session:
        holder = members.invitation_holder(session, token)
    with pytest.raises(Conflict, match="already a member"), db.transaction() as session:
        members.accept_invitation(session, holder, token)
    with db.reading() as session:
        live = session.scalars(select(User.id).where(User.org_id == acme.org.id, User.deleted_at.is_(None),
                                                     User.email == "kim@acme.test")).all()
        assert live == [kim.id]


# --- Roles the IdP gave -----------------------------------------------------------------------


def test_turning_off_idp_may_grant_owner_takes_back_the_owners_the_idp_made(sso: Sso, system: Actor) -> None:
    """An owner lets the IdP grant `owner` (group `Owners`), then turns `idp_may_grant_owner` off
    again (the group turned out broader than meant, or the IdP is not trusted that far any more).
    README: 'An IdP grants owner only when the org sets idp_may_grant_owner; otherwise such a rule
    grants admin.' Yet the members the IdP made owners stay owners (no grant is re-applied when
    the setting changes), with everything an owner holds: billing, IdP trust, and with SSO
    required, the break-glass sign-in link."""
    ola = provision(sso.db, system, sso.org.org.id, "ola@acme.test")
    _owner_group(sso, system, ola.id)
    with sso.db.transaction() as session:
        orgs.update_settings(session, system, sso.org.org.id, {"idp_may_grant_owner": False})
    with sso.db.reading() as session:
        role = users.org_role(session, ola.id)
    assert role != "owner", "the IdP's owner grant outlived 'idp_may_grant_owner: false'"


def test_turning_on_idp_may_grant_owner_makes_owners_of_the_members_an_owner_rule_made_admins(
        sso: Sso, system: Actor) -> None:
    ola = provision(sso.db, system, sso.org.org.id, "ola@acme.test")
    _owner_group(sso, system, ola.id)
    with sso.db.transaction() as session:
        orgs.update_settings(session, system, sso.org.org.id, {"idp_may_grant_owner": False})
    with sso.db.reading() as session:
        assert users.org_role(session, ola.id) == "admin"
    with sso.db.transaction() as session:
        orgs.update_settings(session, system, sso.org.org.id, {"idp_may_grant_owner": True})
    with sso.db.reading() as session:
        assert users.org_role(session, ola.id) == "owner"


def test_turning_off_idp_may_grant_owner_is_refused_when_it_would_leave_no_active_owner(
        sso: Sso, system: Actor) -> None:
    ola = provision(sso.db, system, sso.org.org.id, "ola@acme.test")
    _owner_group(sso, system, ola.id)
    with sso.db.transaction() as session:  # the owner who made the org steps down: Ola, the IdP's, is the only one
        users.change_role(session, system, sso.org.org.id, sso.org.owner.id, "admin")
    with pytest.raises(LastOwner), sso.db.transaction() as session:
        orgs.update_settings(session, system, sso.org.org.id, {"idp_may_grant_owner": False})
    with sso.db.reading() as session:
        assert users.org_role(session, ola.id) == "owner"
        assert session.get_one(Org, sso.org.org.id).idp_may_grant_owner is True
