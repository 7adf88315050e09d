"""Hostile review of session 20's confirm_role (identity/sessions.py): what it still refuses wrongly
and what it still lets through.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from identity import keys, users, wallet_controls
from identity.db import Database
from identity.models import ApiKey, User
from identity.orgs import NewOrg
from identity.service import run
from identity.vocabulary import KeyStatus, Role
from identity.wallet_locks import lock_wallet
from identity.wallet_models import SpendLimit
from tests.factories import admin_and_member, admins_group, behind, provision

RACE = pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")



def _state(db: Database, user_id: str) -> tuple[bool, bool]:
    """(active, deleted) of a member."""
    with db.reading() as session:
        user = session.get_one(User, user_id)
        return user.active, user.deleted_at is not None


def test_an_admin_through_a_group_who_deletes_herself_is_not_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Ann is an admin through the IdP group Admins and deletes her own membership from her session
    (members.manage: allowed, she is no owner). The deletion removes her grants and group memberships;
    at the write's end confirm_role finds her group grant gone. On PostgreSQL the deletion locked her
    groups (member_removal.LOCK_MEMBER_WITH_ROLE, recorded in group_locks.locked_groups) so the grant
    still counts; on SQLite `_locked_member` locks no group and records none, so the grant does not
    count, her role falls to the org's default and the deletion is refused 403 after it was allowed."""
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    admins_group(db, system, acme.org.id, ann.id)
    as_ann = Actor("user", ann.id, ann.user_name, org_id=acme.org.id, role=Role.ADMIN)
    run(db, as_ann, users.delete_user, acme.org.id, ann.id)
    assert _state(db, ann.id) == (False, True)


@RACE
def test_a_sessions_write_that_waited_for_its_callers_deactivation_is_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Ann, an admin by hand, deactivates Dev from her session; the owner meanwhile deactivates Ann
    (her sessions ended, holding the org's lock). Ann's write waits for the org's lock, then
    confirm_role reads her grants, which a deactivation leaves as they were: the write goes through,
    made by a deactivated member whose session no longer exists. The same write with her key is
    refused (401: the key blocked, test_review_s20_confirm), a session's is not."""
    ann, dev = admin_and_member(db, system, acme.org.id)
    as_ann = Actor("user", ann.id, ann.user_name, org_id=acme.org.id, role=Role.ADMIN)
    errors: list[BaseException] = []
    behind(db, lambda session: users.deactivate_user(session, system, acme.org.id, ann.id),
           lambda: run(db, as_ann, users.deactivate_user, acme.org.id, dev.id), errors,
           "Ann's deactivation of Dev")  # for the org's lock
    assert [type(error).__name__ for error in errors] in (["Unauthenticated"], ["PermissionDenied"]), errors
    assert _state(db, dev.id) == (True, False)


def _key_actor(db: Database, system: Actor, acme: NewOrg, user_id: str) -> Actor:
    with db.transaction() as session:
        issued = keys.create_api_key(session, system, acme.org.id, user_id=user_id,
                                     team_id=acme.default_team_id, name="k", scopes=["admin"])
    with db.transaction() as session:
        return keys.verify_api_key(session, issued.secret).actor()


def test_an_admin_through_a_group_who_deletes_herself_with_her_key_is_not_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """The same self-deletion with Ann's admin key: her key is revoked by it (named in user.deleted's
    keys_revoked: no refusal), and her group grant is gone: refused 403 on SQLite."""
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    admins_group(db, system, acme.org.id, ann.id)
    as_key = _key_actor(db, system, acme, ann.id)
    assert as_key.role == Role.ADMIN
    run(db, as_key, users.delete_user, acme.org.id, ann.id)
    assert _state(db, ann.id) == (False, True)


@RACE
def test_a_revoked_keys_write_whose_event_targets_the_key_itself_is_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """The owner's key K sets its own spend limit (wallet_controls.set_subject_limit: the team's wallet
    locked, no org lock; its event's target is K). Meanwhile K is revoked (by hand, in a transaction
    that also holds the wallet). The write waits for the wallet, the revocation commits, and at the
    write's end confirm_role finds K revoked, but `_ended_here` takes any event of the write whose
    target_id is K for K's own ending: the revoked key's write commits."""
    owner = acme.owner
    as_key = _key_actor(db, system, acme, owner.id)

    def revoke_holding_the_wallet(session) -> None:  # type: ignore[no-untyped-def]
        keys.revoke_api_key(session, system, acme.org.id, as_key.id)
        lock_wallet(session, acme.org.id, acme.default_team_id)

    errors: list[BaseException] = []
    behind(db, revoke_holding_the_wallet,
           lambda: run(db, as_key, wallet_controls.set_subject_limit, acme.org.id, acme.default_team_id,
                       wallet_controls.KEY, as_key.id, 5_000_000), errors,
           "the key's limit on itself")  # for the wallet
    with db.reading() as session:
        assert session.get_one(ApiKey, as_key.id).status == KeyStatus.REVOKED
        limits = list(session.scalars(select(SpendLimit.subject_id)))
    assert [type(error).__name__ for error in errors] == ["Unauthenticated"], errors
    assert limits == []


def test_an_admin_through_a_group_deletes_her_own_membership_over_the_admin_api(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    """Over HTTP: DELETE /api/v1/orgs/<org>/members/<her id> with Ann's admin key (she is an admin
    through the IdP group Admins) is allowed by identity.roles (members.manage on a non-owner) and
    must answer 204, the member deleted. On SQLite confirm_role answers 403 "the role of this key's
    holder ... changed to member", after the deletion was decided."""
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    admins_group(db, system, acme.org.id, ann.id)
    with db.transaction() as session:
        issued = keys.create_api_key(session, system, acme.org.id, user_id=ann.id,
                                     team_id=acme.default_team_id, name="k", scopes=["admin"])
    answer = client.delete(f"/api/v1/orgs/{acme.org.slug}/members/{ann.id}",
                           headers={"Authorization": f"Bearer {issued.secret}"})
    assert answer.status_code in (200, 204), answer.get_json()
    assert _state(db, ann.id) == (False, True)
