"""Hostile review (session 18, fourth pass) of fixers C's and D's lock changes: the sign-in's session
INSERT (member's row FOR SHARE, connection's row FOR SHARE), a session write's role confirmed under
the org's lock, a SCIM write's credential confirmed last, and the member rows locked before group
removals (PostgreSQL, real concurrent transactions under READ COMMITTED).

Each test holds one transaction at a chosen point, lets the other queue behind a lock it holds, then
takes the next lock it needs. A deadlock is answered by PostgreSQL with DeadlockDetected in one of
them (a 503 at the API: still a failed request); each test asserts the serial outcome.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

from audit import Actor
from identity import groups, mappings, orgs, seats, users
from identity.db import Database
from identity.lookups import lock_live_user
from identity.models import SsoSession, User
from identity.names import name_key
from identity.orgs import NewOrg
from identity.service import run
from identity.vocabulary import Role
from tests.factories import admin_and_member, in_thread, wait_for_a_lock_wait
from tests.saml.conftest import Sso, idp, idp_keys, sso  # noqa: F401 - the SAML fixtures, for the sign-in races
from tests.saml.idp import post_form

pytestmark = pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")


def _finish(thread: threading.Thread, what: str) -> None:
    thread.join(30)
    assert not thread.is_alive(), f"{what} never finished"


def _member_id(db: Database, org_id: str, user_name: str) -> str:
    with db.reading() as session:
        found = session.scalars(select(User.id).where(User.org_id == org_id, User.user_name_key == name_key(user_name),
                                                      User.deleted_at.is_(None))).first()
    assert found is not None
    return found


def _sessions_of(db: Database, user_id: str) -> int:
    with db.reading() as session:
        return len(session.scalars(select(SsoSession.id).where(SsoSession.user_id == user_id)).all())


def test_a_sign_in_leaving_the_owners_group_and_that_owners_deactivation_do_not_deadlock(
        sso: Sso, db: Database, system: Actor) -> None:  # noqa: F811 - the imported fixture
    """Dana is an owner through the IdP group Owners (the org's first owner remains). An admin
    deactivates her: users.deactivate_user takes the org's lock, then Dana's row (FOR NO KEY UPDATE,
    _under_seat_lock), then the org's owner grants (owners.ensure_not_last_owner). Meanwhile she signs
    in with an assertion whose groups no longer name Owners: apply_user_groups removes her from it,
    which locks the org's owner grants (FOR UPDATE, last_owners_leaving_group) and deletes her owner
    grant, and then the session's INSERT share-locks her row (sessions.INSERT_SESSION). The sign-in
    holds the owner grants and waits for her row; the deactivation holds her row and waits for the
    owner grants: a deadlock. Serially either order completes: the sign-in first is ended by the
    deactivation; the deactivation first refuses the sign-in (403 user_deactivated)."""
    org_id = sso.org.org.id
    with db.transaction() as session:
        orgs.update_settings(session, system, org_id, {"idp_may_grant_owner": True})
        groups.create_group(session, system, org_id, display_name="Owners", external_id="00gOwners")
        mappings.create_mapping(session, system, org_id, group_external_id="00gOwners", org_role="owner")
    assert sso.post(sso.response(name_id="dana@acme.test", attributes={"groups": ["00gOwners"]})).status_code == 303
    dana = _member_id(db, org_id, "dana@acme.test")
    form = post_form(sso.response(name_id="dana@acme.test", attributes={"groups": []}))
    racer = sso.client.application.test_client()
    answers: list[Any] = []
    errors: list[BaseException] = []
    try:
        with db.transaction() as session:  # the deactivation, Dana's row locked, not the owner grants yet
            seats.lock_org(session, org_id)
            lock_live_user(session, dana)
            signer = in_thread(lambda: answers.append(racer.post(f"/saml/{sso.org.org.slug}/acs", data=form)), errors)
            wait_for_a_lock_wait(db, "the sign-in")  # for Dana's row, in the session's INSERT, owner grants held
            users.deactivate_user(session, system, org_id, dana)
    except Exception as error:  # noqa: BLE001 - asserted below
        errors.append(error)
    _finish(signer, "the sign-in")
    assert [type(error).__name__ for error in errors] == [], errors
    assert [answer.status_code for answer in answers] == [403], [answer.get_data(as_text=True)[:300] for answer in answers]
    assert _sessions_of(db, dana) == 0


def test_an_admins_write_that_waited_for_the_admins_promotion_is_not_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Ann, an admin, deactivates Dev from her console session (identity.service.run with her session's
    actor, role admin as verify_session read it). Meanwhile the owner makes Ann an owner
    (users.change_role, holding the org's lock). Her deactivation waits for the org's lock, then
    sessions.confirm_role reads her role again: owner, not the admin it was authorised with, and
    refuses (PermissionDenied, 403 "your role in this org changed"). An owner may do all an admin may:
    the write was allowed before and after the change, and either serial order deactivates Dev. The
    check should refuse only a role that no longer allows the write (the code before did not refuse)."""
    ann, dev = admin_and_member(db, system, acme.org.id)
    as_ann = Actor("user", ann.id, ann.user_name, org_id=acme.org.id, role=Role.ADMIN)
    errors: list[BaseException] = []
    try:
        with db.transaction() as session:  # the promotion, the org's lock held
            seats.lock_org(session, acme.org.id)
            deactivation = in_thread(lambda: run(db, as_ann, users.deactivate_user, acme.org.id, dev.id), errors)
            wait_for_a_lock_wait(db, "Ann's deactivation")  # for the org's lock
            users.change_role(session, system, acme.org.id, ann.id, "owner")
    except Exception as error:  # noqa: BLE001 - asserted below
        errors.append(error)
    _finish(deactivation, "Ann's deactivation")
    assert [type(error).__name__ for error in errors] == [], errors
    with db.reading() as session:
        assert session.get_one(User, dev.id).active is False

