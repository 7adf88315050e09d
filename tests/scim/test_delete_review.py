"""Hostile review of the rewritten member deletion (identity.users.remove_user / deprovision)."""

from __future__ import annotations

import threading

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from identity import group_locks, group_membership, users
from identity.db import Database
from identity.models import IdpGroupMember, RoleGrant
from tests.factories import wait_for_a_lock_wait
from tests.scim.client import Scim, scim_for


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme", included_seats=10)


def test_scim_delete_if_match(scim: Scim) -> None:
    user = scim.create_user("leaving@acme.test")
    etag = scim.get(f"/Users/{user['id']}").headers["ETag"]
    assert scim.delete(f"/Users/{user['id']}", **{"If-Match": 'W/"999"'}).status_code == 412
    assert scim.get(f"/Users/{user['id']}").status_code == 200
    assert scim.delete(f"/Users/{user['id']}", **{"If-Match": etag}).status_code == 204
    other = scim.create_user("other@acme.test")
    assert scim.delete(f"/Users/{other['id']}", **{"If-Match": "*"}).status_code == 204
    assert scim.delete(f"/Users/{other['id']}", **{"If-Match": "*"}).status_code == 404


@pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")
def test_a_deletion_racing_a_group_patch_leaves_no_membership_of_the_deleted_user(
        scim: Scim, db: Database, system: Actor) -> None:
    """A SCIM DELETE of a user and a PATCH adding that user to a group, at once: whichever commits
    first, the deleted user is in no group and holds no grant afterwards (DESIGN 3.5: a deleted
    member's group memberships are gone; the group's member list must not show them)."""
    user = scim.create_user("racing@acme.test")
    group = scim.create_group("Engineering")
    errors: list[BaseException] = []

    def add() -> None:
        try:
            with db.transaction() as session:
                group_membership.add_members(session, system, scim.org_id, group["id"], [user["id"]])
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    with db.transaction() as session:
        users.remove_user(session, system, scim.org_id, user["id"])
        adder = threading.Thread(target=add)
        adder.start()
        wait_for_a_lock_wait(db, "the add")  # for the deleted member's row
    adder.join(30)
    assert not adder.is_alive()
    with db.transaction() as session:
        members = list(session.scalars(select(IdpGroupMember.user_id).where(IdpGroupMember.user_id == user["id"])))
        grants = list(session.scalars(select(RoleGrant.id).where(RoleGrant.user_id == user["id"])))
    assert (members, grants) == ([], []), errors
    shown = scim.get(f"/Groups/{group['id']}").json
    assert user["id"] not in [m["value"] for m in shown.get("members", [])]


@pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")
def test_a_deletion_racing_a_group_patch_removing_the_same_user_does_not_deadlock(
        scim: Scim, db: Database, system: Actor) -> None:
    """A group PATCH (which locks the group, then takes members out) and the SCIM DELETE of one of
    its members, at once: both succeed (DESIGN 3.3: parallel writers never deadlock; a deadlock is
    a 500 to one IdP worker). The deletion removes the member's group rows before it locks the
    groups it left, the PATCH locks the group before it removes the member's row: each waits for
    the other."""
    user = scim.create_user("leaving@acme.test")
    group = scim.create_group("Engineering", [user["id"]])
    errors: list[BaseException] = []

    def delete() -> None:
        try:
            with db.transaction() as session:
                users.remove_user(session, system, scim.org_id, user["id"])
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    deleter = threading.Thread(target=delete)
    try:
        with db.transaction() as session:
            group_locks.lock_group(session, scim.org_id, group["id"])  # as the PATCH's first step does
            deleter.start()
            wait_for_a_lock_wait(db, "the deletion")  # for the group
            group_membership.remove_members(session, system, scim.org_id, group["id"], [user["id"]])
    except BaseException as error:  # noqa: BLE001 - reported below
        errors.append(error)
    deleter.join(30)
    assert [type(error).__name__ for error in errors] == [], errors
    assert scim.get(f"/Users/{user['id']}").status_code == 404
