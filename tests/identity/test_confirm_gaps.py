"""sessions.confirm_role's three last gaps (session 21), and a session's lifetime ending while its write ran (session 22): a write that waited for a change taking its
caller's role, or ending its caller's session, while it held the org's lock and had confirmed the
role there. Each race runs on PostgreSQL (READ COMMITTED): the change held uncommitted, the write
started behind it until it waits for a lock, then the change committed. The writes that take their
caller's grant or end their caller's session themselves stay allowed (both backends).
"""

from __future__ import annotations

import datetime as dt
from contextlib import ExitStack

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from audit import Actor, clock
from identity import group_membership, groups, keys, mappings, orgs, signout, users
from identity.db import Database
from identity.errors import Unauthenticated
from identity.models import ApiKey, IdpGroup, SsoSession, User
from identity.orgs import NewOrg
from identity.service import run
from identity.sessions import Lifetime, create_session, verify_session
from identity.vocabulary import Role, SessionMethod
from saml import configuration as saml_configuration
from saml.connection import IdpSettings
from tests.factories import admin_and_member, admins_group, behind, provision

IDP = IdpSettings("https://idp.example.com/entity", "https://idp.example.com/sso", None, [])
RACE = pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")


@RACE
def test_a_write_that_locks_the_group_whose_grant_a_change_it_waited_for_took_is_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Ann is an admin through the IdP group Admins. From her session she renames Admins
    (groups.update_group: the org's lock, her role confirmed there, then the group's lock). The IdP
    meanwhile takes her out of Admins (holding the group's lock). The rename waits for the group, the
    removal commits, and the rename then holds Admins itself: the admin grant it never took counted
    as taken by the write (its group held), and a member renamed a group."""
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    admins = admins_group(db, system, acme.org.id, ann.id)
    as_ann = Actor("user", ann.id, ann.user_name, org_id=acme.org.id, role=Role.ADMIN)
    errors: list[BaseException] = []
    behind(db, lambda session: group_membership.remove_members(session, system, acme.org.id, admins, [ann.id]),
           lambda: run(db, as_ann, groups.update_group, acme.org.id, admins, display_name="Root"), errors,
           "Ann's rename of Admins")  # for the group's lock
    assert [type(error).__name__ for error in errors] == ["PermissionDenied"], errors
    with db.reading() as session:
        assert session.get_one(IdpGroup, admins).display_name == "Admins"


@RACE
def test_a_write_that_waited_for_an_idp_add_replacing_its_callers_default_with_a_lower_role_is_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """The org gives new members admin by default; Ann, provisioned then, is an admin by that default
    (a SCIM grant of no group). From her session she deactivates Dev (the org's lock, her role
    confirmed there, then Dev's row). The IdP meanwhile adds both to Viewers, whose rule gives viewer:
    settle_defaults takes Ann's default grant away (no org lock; Dev's row share-locked). The
    deactivation waits for Dev's row, and then counted the default grant, one no group gave, as taken
    by the write itself: a viewer deactivated a member."""
    with db.transaction() as session:
        orgs.update_settings(session, system, acme.org.id, {"default_role": "admin"})
    ann = provision(db, system, acme.org.id, "ann@acme.test", source="scim")
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    with db.transaction() as session:
        viewers = groups.create_group(session, system, acme.org.id, display_name="Viewers", external_id="00gV").id
        mappings.create_mapping(session, system, acme.org.id, group_external_id="00gV", org_role="viewer")
    as_ann = Actor("user", ann.id, ann.user_name, org_id=acme.org.id, role=Role.ADMIN)
    errors: list[BaseException] = []
    behind(db, lambda session: group_membership.add_members(session, system, acme.org.id, viewers, [ann.id, dev.id]),
           lambda: run(db, as_ann, users.deactivate_user, acme.org.id, dev.id), errors,
           "Ann's deactivation of Dev")  # for Dev's row
    assert [type(error).__name__ for error in errors] == ["PermissionDenied"], errors
    with db.reading() as session:
        assert session.get_one(User, dev.id).active


def _signed_in(db: Database, user: User, method: SessionMethod = SessionMethod.SAML) -> tuple[str, Actor]:
    """A live browser session of `user`: its token, and the actor of its requests."""
    with db.transaction() as session:
        token = create_session(session, user, method=method, lifetime=Lifetime())
    with db.transaction() as session:
        return token, verify_session(session, token, Lifetime()).actor()


@RACE
def test_a_sessions_write_that_waited_for_its_sessions_end_is_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Ann, an admin by hand signed in with a sign-in link, deactivates Dev from that session. The
    owner meanwhile requires SSO (holding the org's lock), which ends every link session of a
    non-owner, Ann's too. The deactivation waits for the org's lock, finds Ann still an admin and
    live, and wrote for a session that no longer exists: nothing told it."""
    ann, dev = admin_and_member(db, system, acme.org.id)
    with db.transaction() as session:
        saml_configuration.configure_connection(session, system, acme.org.id, IDP)
    _token, as_ann = _signed_in(db, ann, SessionMethod.LOGIN_LINK)
    errors: list[BaseException] = []
    behind(db, lambda session: orgs.update_settings(session, system, acme.org.id, {"require_sso": True}),
           lambda: run(db, as_ann, users.deactivate_user, acme.org.id, dev.id), errors,
           "Ann's deactivation of Dev")  # for the org's lock
    assert [type(error).__name__ for error in errors] == ["Unauthenticated"], errors
    with db.reading() as session:
        assert session.get_one(User, dev.id).active


def test_a_sessions_write_after_its_sign_out_is_refused_and_before_it_passes(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Both backends: the write of a session signed out is refused (401) at the org's lock; the
    same write before the sign-out passes, and the sign-out still succeeds after it."""
    ann, dev = admin_and_member(db, system, acme.org.id)
    token, as_ann = _signed_in(db, ann)
    run(db, as_ann, users.change_role, acme.org.id, dev.id, "viewer")
    with db.transaction() as session:
        assert signout.sign_out(session, system, token) is not None
    with pytest.raises(Unauthenticated):
        run(db, as_ann, users.change_role, acme.org.id, dev.id, "member")
    with db.reading() as session:
        assert session.get(SsoSession, as_ann.session_id) is None


def test_an_owners_break_glass_session_that_demotes_its_owner_is_not_refused_for_its_end(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """The owner, signed in by break-glass link, makes Ann an owner and then herself an admin
    (users.change_role on herself ends her break-glass sessions, this one too): the write ended its
    own session itself, no refusal."""
    ann, _dev = admin_and_member(db, system, acme.org.id)
    owner = acme.owner
    with db.transaction() as session:
        token = create_session(session, owner, method=SessionMethod.BREAK_GLASS, lifetime=Lifetime())
    with db.transaction() as session:
        as_owner = verify_session(session, token, Lifetime()).actor()
    run(db, as_owner, users.change_role, acme.org.id, ann.id, "owner")
    run(db, as_owner, users.change_role, acme.org.id, owner.id, "admin")
    with db.reading() as session:
        assert session.get(SsoSession, as_owner.session_id) is None


def _expire(db: Database, session_id: str | None) -> None:
    """Move the session's absolute end into the past, from a connection of its own (committed)."""
    with db.transaction() as session:
        _expire_in(session, session_id)


def _expire_in(session: Session, session_id: str | None) -> None:
    session.execute(update(SsoSession).where(SsoSession.id == session_id)
                    .values(expires_at=clock.now() - dt.timedelta(seconds=1)))


def test_a_sessions_write_after_its_expiry_was_moved_into_the_past_is_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Both backends: Ann's session, verified at the request's start, has its absolute end moved into
    the past by another connection before her write takes the org's lock (its row still there, not
    purged). The write is refused (401) and writes nothing: a session past its lifetime is no more
    live than one signed out (sessions.lifetime_ended)."""
    ann, dev = admin_and_member(db, system, acme.org.id)
    _token, as_ann = _signed_in(db, ann)
    _expire(db, as_ann.session_id)
    with pytest.raises(Unauthenticated):
        run(db, as_ann, users.deactivate_user, acme.org.id, dev.id)
    with db.reading() as session:
        assert session.get_one(User, dev.id).active


def test_a_sessions_write_during_which_its_absolute_lifetime_ends_is_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Both backends: Ann's write starts with her session live (confirmed under the org's lock);
    while it runs, the clock passes the session's absolute end. The write's end (confirm_role, by the
    clock verify_session reads) refuses it (401) and nothing is written; before, only a session's row
    gone counted."""
    ann, dev = admin_and_member(db, system, acme.org.id)
    _token, as_ann = _signed_in(db, ann)
    with db.reading() as session:
        ends = session.get_one(SsoSession, as_ann.session_id).expires_at
    with ExitStack() as later:
        def deactivate_while_time_passes(session: Session, actor: Actor, org_id: str, user_id: str) -> None:
            users.deactivate_user(session, actor, org_id, user_id)
            later.enter_context(clock.frozen_at(ends))  # the write's end, at the session's end
        with pytest.raises(Unauthenticated):
            run(db, as_ann, deactivate_while_time_passes, acme.org.id, dev.id)
    with db.reading() as session:
        assert session.get_one(User, dev.id).active


@RACE
def test_a_sessions_write_that_waited_for_its_expiry_moved_into_the_past_is_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Ann deactivates Dev from her session: the org's lock, her session confirmed live there, then
    Dev's row. Another connection meanwhile holds Dev's row and moves her session's end into the
    past. The deactivation waits for Dev's row, and at its end read her session's row, still there,
    as live: a write of a session past its lifetime committed."""
    ann, dev = admin_and_member(db, system, acme.org.id)
    _token, as_ann = _signed_in(db, ann)

    def expire_holding_dev(session: Session) -> None:
        session.get_one(User, dev.id, with_for_update=True)
        _expire_in(session, as_ann.session_id)
    errors: list[BaseException] = []
    behind(db, expire_holding_dev, lambda: run(db, as_ann, users.deactivate_user, acme.org.id, dev.id), errors,
           "Ann's deactivation of Dev")  # for Dev's row
    assert [type(error).__name__ for error in errors] == ["Unauthenticated"], errors
    with db.reading() as session:
        assert session.get_one(User, dev.id).active


def test_a_keys_write_during_which_the_key_expires_is_refused(db: Database, system: Actor, acme: NewOrg) -> None:
    """Both backends, the same window for an API key (a guard: it held before session 22): a key with
    an end (a rotation's grace) live at the request's start, its end passed while the write ran, is
    refused at the write's end (confirm_role reads the key's expires_at, by the same clock) and
    nothing is written."""
    ann, dev = admin_and_member(db, system, acme.org.id)
    with db.transaction() as session:
        issued = keys.create_api_key(session, system, acme.org.id, user_id=ann.id, team_id=acme.default_team_id,
                                     name="k", scopes=["admin"])
        ends = clock.now() + dt.timedelta(hours=1)
        session.execute(update(ApiKey).where(ApiKey.id == issued.id).values(expires_at=ends))
    with db.transaction() as session:
        as_key = keys.verify_api_key(session, issued.secret).actor()
    with ExitStack() as later:
        def deactivate_while_time_passes(session: Session, actor: Actor, org_id: str, user_id: str) -> None:
            users.deactivate_user(session, actor, org_id, user_id)
            later.enter_context(clock.frozen_at(ends))
        with pytest.raises(Unauthenticated):
            run(db, as_key, deactivate_while_time_passes, acme.org.id, dev.id)
    with db.reading() as session:
        assert session.get_one(User, dev.id).active
