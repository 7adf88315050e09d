"""Hostile review (session 18) of SAML sign-in racing changes of its member and of the org's SSO
settings (PostgreSQL, real concurrent transactions). The sign-in reads its member and its connection
before any lock wait and uses both after it. Each test asserts the rule and failed on the code it
was written against."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select, text

from audit import Actor
from audit.models import AuditEvent
from identity import groups, users
from identity.db import Database
from identity.group_locks import lock_group
from identity.models import SsoSession, User
from identity.names import name_key
from saml import configuration, links
from saml.connection import parse_idp_metadata
from tests.factories import in_thread, wait_for_a_lock_wait
from tests.saml.conftest import Sso, link_form
from tests.saml.idp import KeyPair, TestIdP, post_form

pytestmark = pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")


def _member_id(db: Database, org_id: str, user_name: str) -> str | None:
    with db.reading() as session:
        return session.scalars(select(User.id).where(User.org_id == org_id, User.user_name_key == name_key(user_name),
                                                     User.deleted_at.is_(None))).first()


def _sessions_of(db: Database, user_id: str) -> int:
    with db.reading() as session:
        return len(session.scalars(select(SsoSession.id).where(SsoSession.user_id == user_id)).all())


def _actions(db: Database, org_id: str) -> list[str]:
    with db.reading() as session:
        return list(session.scalars(select(AuditEvent.action).where(AuditEvent.org_id == org_id)
                                    .order_by(AuditEvent.seq)))


def _until_done_or_waiting(db: Database, thread: Any, what: str) -> None:
    """Return once `thread` has ended or a session of this database waits for a lock."""
    deadline = time.monotonic() + 10
    while thread.is_alive():
        with db.engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                 "AND datname = current_database()")).scalar_one():
                return
        assert time.monotonic() < deadline, f"{what} neither ended nor waited for a lock"
        time.sleep(0.02)


def _race_sign_in(sso: Sso, db: Database, form: dict[str, Any], change: Any,
                  stall: Any = None) -> tuple[Any, list[Any]]:
    """Run `change(session)` in an open transaction; post `form` to the ACS from another client while it
    is open, until the sign-in has answered or waits for a lock; commit the change. With `stall(session)`,
    a transaction opened first and committed after the change holds what the sign-in waits for (a
    group's lock: a SCIM change of that group under way). Return the sign-in's client and answers."""
    racer = sso.client.application.test_client()
    answers: list[Any] = []
    errors: list[BaseException] = []
    with db.transaction() as held:
        if stall is not None:
            stall(held)
        with db.transaction() as session:
            change(session)
            signer = in_thread(lambda: answers.append(racer.post(f"/saml/{sso.org.org.slug}/acs", data=form)),
                               errors)
            if stall is not None:
                wait_for_a_lock_wait(db, "the sign-in")  # for the group the stalling transaction holds
            else:
                _until_done_or_waiting(db, signer, "the sign-in")
    signer.join(30)
    assert not signer.is_alive() and errors == [], errors
    return racer, answers


def test_a_sign_in_racing_the_members_deactivation_leaves_no_session_that_reactivation_brings_back(
        sso: Sso, db: Database, system: Actor) -> None:
    """DESIGN 3.5: deactivation ends the member's sessions. Dana's deactivation has ended her sessions
    and holds her row, not committed yet; her sign-in reads her as active (nothing locks the row it reads)
    and writes a session the deactivation never saw. Both commit: a live session row for a deactivated
    member, and once she is reactivated that session is signed in again without the IdP. (No serial order
    gives that: the sign-in first has its session ended; the deactivation first refuses the sign-in.)"""
    org_id = sso.org.org.id
    assert sso.post(sso.response(name_id="dana@acme.test")).status_code == 303  # JIT
    dana = _member_id(db, org_id, "dana@acme.test")
    assert dana is not None
    form = post_form(sso.response(name_id="dana@acme.test"))
    racer, answers = _race_sign_in(sso, db, form, lambda session: users.deactivate_user(session, system, org_id, dana))
    left = _sessions_of(db, dana)
    with db.transaction() as session:
        users.reactivate_user(session, system, org_id, dana)
    me = racer.get("/me").status_code
    assert left == 0 and me != 200, (
        f"the sign-in answered {answers[0].status_code} and left {left} session(s) for a deactivated member; "
        f"after reactivation its cookie reads /me: {me}; audit: {_actions(db, org_id)[-4:]}")


def test_a_sign_in_racing_the_members_deletion_leaves_no_session_of_the_tombstone(
        sso: Sso, db: Database, system: Actor) -> None:
    """A SCIM DELETE of Dana holds her row, not committed yet; her sign-in reads her live and goes on
    (its session's foreign key may wait for the row). Both commit: a session row of the tombstone that
    the deletion, which removes a member's sessions, never saw. (Ended by resolve_session's check of
    `deleted_at`, so no way in: a row left behind, against DESIGN 3.5's removal.)"""
    org_id = sso.org.org.id
    assert sso.post(sso.response(name_id="dana@acme.test")).status_code == 303  # JIT
    dana = _member_id(db, org_id, "dana@acme.test")
    assert dana is not None
    form = post_form(sso.response(name_id="dana@acme.test"))
    _racer, answers = _race_sign_in(sso, db, form, lambda session: users.remove_user(session, system, org_id, dana))
    left = _sessions_of(db, dana)
    assert left == 0, (
        f"the sign-in of a member being deleted answered {answers[0].status_code} and left {left} session(s) of the "
        f"tombstone, which the deletion removes (REMOVE_ROWS); audit: {_actions(db, org_id)[-3:]}")


def test_a_first_sign_in_racing_jit_being_turned_off_makes_no_member(sso: Sso, db: Database, system: Actor) -> None:
    """An admin turns JIT off (configure_connection: the org's lock, a new version). A first sign-in of
    Eve confirmed the connection's version before that committed (`confirm_connection` reads it without
    a lock), and its JIT provisioning waits for the org's lock. Once JIT is off, the sign-in goes on with
    the `jit` it read: a member made by JIT after JIT was turned off."""
    org_id = sso.org.org.id
    idp = parse_idp_metadata(sso.idp.metadata())
    form = post_form(sso.response(name_id="eve@acme.test"))
    _racer, answers = _race_sign_in(
        sso, db, form, lambda session: configuration.configure_connection(session, system, org_id, idp, jit=False))
    eve = _member_id(db, org_id, "eve@acme.test")
    assert eve is None, (f"JIT made {eve} after JIT was turned off (the sign-in answered {answers[0].status_code}); "
                         f"audit: {_actions(db, org_id)[-5:]}")


def test_a_sign_in_racing_a_certificate_rotation_is_not_accepted_with_the_retired_certificate(
        sso: Sso, db: Database, system: Actor, other_keys: KeyPair) -> None:
    """The IdP's signing key leaked; the admin rotates the certificate (configure_connection with the new
    one only). An assertion signed with the old key was verified with the connection read before the
    rotation committed; `confirm_connection` read the old version without a lock, and the sign-in then
    waits (for a group). Once the rotation commits, the sign-in goes on and commits with the retired
    certificate: 303, a session. (What the sign-in waits for is a SCIM change
    of a group its claims name, under way: any wait after `confirm_connection` does it.)"""
    org_id = sso.org.org.id
    assert sso.post(sso.response(name_id="dana@acme.test")).status_code == 303  # JIT: Dana is a member
    dana = _member_id(db, org_id, "dana@acme.test")
    assert dana is not None
    before = _sessions_of(db, dana)
    with db.transaction() as session:
        eng = groups.create_group(session, system, org_id, display_name="Eng").id
    rotated = parse_idp_metadata(TestIdP(sso.idp.entity_id, other_keys).metadata())
    form = post_form(sso.response(name_id="dana@acme.test", attributes={"groups": ["Eng"]}))  # the old key's
    _racer, answers = _race_sign_in(
        sso, db, form, lambda session: configuration.configure_connection(session, system, org_id, rotated),
        stall=lambda session: lock_group(session, org_id, eng))
    assert answers[0].status_code != 303 and _sessions_of(db, dana) == before, (
        f"an assertion signed with the retired certificate signed in after the rotation committed "
        f"({answers[0].status_code}); audit: {_actions(db, org_id)[-3:]}")


def test_a_sign_in_link_used_while_its_member_is_deactivated_leaves_no_session(
        sso: Sso, db: Database, system: Actor) -> None:
    """The same race through a one-time sign-in link (saml.links.sign_in_with_link): the link's member is
    read without a lock while the deactivation, which has ended her sessions, is not committed yet. Both
    commit: a LOGIN_LINK session of a deactivated member, live again once she is reactivated."""
    org_id = sso.org.org.id
    assert sso.post(sso.response(name_id="dana@acme.test")).status_code == 303  # JIT
    dana = _member_id(db, org_id, "dana@acme.test")
    assert dana is not None
    with db.transaction() as session:
        token = links.issue_sign_in_link(session, system, org_id, "dana@acme.test")
    racer = sso.client.application.test_client()
    form = link_form(racer, token)
    answers: list[Any] = []
    errors: list[BaseException] = []
    with db.transaction() as session:
        users.deactivate_user(session, system, org_id, dana)
        signer = in_thread(lambda: answers.append(racer.post(f"/login/link/{token}", data=form)), errors)
        _until_done_or_waiting(db, signer, "the link's sign-in")
    signer.join(30)
    assert not signer.is_alive() and errors == [], errors
    left = _sessions_of(db, dana)
    with db.transaction() as session:
        users.reactivate_user(session, system, org_id, dana)
    me = racer.get("/me").status_code
    assert left == 0 and me != 200, (
        f"the link's sign-in answered {answers[0].status_code} and left {left} session(s) for a deactivated "
        f"member; after reactivation its cookie reads /me: {me}")


def test_two_first_sign_ins_of_one_person_at_once_tell_the_loser_another_sign_in_was_in_progress(
        sso: Sso, db: Database, system: Actor) -> None:
    """Zed's first sign-in provisions him (JIT) and holds the org's lock; a second first sign-in of his
    (another tab, a double submit) found nobody of his userName and waits for that lock to provision him
    too. saml.views answers that race `concurrent_sign_in` (409, "Another sign-in for this account was in
    progress. Please sign in again."), but its `except IntegrityError` is never reached: identity.users
    turns the clash into a Conflict first, answered as a generic "refused (conflict)" 400."""
    org_id = sso.org.org.id
    racer = sso.client.application.test_client()
    form = post_form(sso.response(name_id="zed@acme.test"))
    answers: list[Any] = []
    errors: list[BaseException] = []
    with db.transaction() as session:  # the first sign-in's JIT provisioning, not committed yet
        users.provision_user(session, system, org_id, user_name="zed@acme.test", email="zed@acme.test",
                             source="saml")
        signer = in_thread(lambda: answers.append(racer.post(f"/saml/{sso.org.org.slug}/acs", data=form)), errors)
        wait_for_a_lock_wait(db, "the second sign-in")  # for the org's lock
    signer.join(30)
    assert not signer.is_alive() and errors == [], errors
    page = answers[0].get_data(as_text=True)
    assert answers[0].status_code == 409 and "Another sign-in for this account was in progress" in page, (
        answers[0].status_code, page[page.find("<p>"):page.find("</p>") + 4])
