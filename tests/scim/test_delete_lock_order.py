"""A member's deletion and the group changes that race it, in the lock order of identity.group_locks:
the org, then groups in id order, then user rows (an add share-locks the users it adds after its
group; a deletion locks the member's groups, then its row)."""

from __future__ import annotations

import threading

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from identity import groups, org_lifecycle, users
from identity.db import Database
from identity.models import IdpGroup, IdpGroupMember, Org, RoleGrant, User
from tests.factories import wait_for_a_lock_wait
from tests.scim.client import Scim, scim_for

pytestmark = pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme", included_seats=10)



def _in_thread(work: object, errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            work()  # type: ignore[operator]
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_deletion_that_waited_for_a_group_add_removes_the_membership_the_add_made(
        scim: Scim, db: Database, system: Actor) -> None:
    """The add holds the group and the user's row (shared) first: the deletion, which read the user
    in no group, waits for the row, then finds the new membership (REMOVE_ROWS' `held_elsewhere`),
    locks that group and removes it; the group's version moves past the add's."""
    user = scim.create_user("racing@acme.test")
    group = scim.create_group("Engineering")
    errors: list[BaseException] = []

    def delete() -> None:
        with db.transaction() as session:
            users.remove_user(session, system, scim.org_id, user["id"])

    with db.transaction() as session:
        groups.add_members(session, system, scim.org_id, group["id"], [user["id"]])
        deleter = _in_thread(delete, errors)
        wait_for_a_lock_wait(db, "the deletion")  # for the user's row
        assert deleter.is_alive()
        added_version = session.get(IdpGroup, group["id"]).version  # type: ignore[union-attr]
    deleter.join(30)
    assert not deleter.is_alive() and errors == []
    with db.transaction() as session:
        assert session.get(User, user["id"]).deleted_at is not None  # type: ignore[union-attr]
        assert list(session.scalars(select(IdpGroupMember.group_id).where(IdpGroupMember.user_id == user["id"]))) == []
        assert list(session.scalars(select(RoleGrant.id).where(RoleGrant.user_id == user["id"]))) == []
        assert session.get(IdpGroup, group["id"]).version == added_version + 1  # type: ignore[union-attr]


def test_an_add_that_waited_for_a_deletion_is_refused_and_a_removal_goes_through(
        scim: Scim, db: Database, system: Actor) -> None:
    """The deletion holds the member's groups and row: a PATCH adding it to another group waits and
    is refused (the member reads deleted); a PATCH taking it out of its group waits for the group and
    finds nothing to remove. Neither deadlocks."""
    user = scim.create_user("leaving@acme.test")
    kept = scim.create_group("Kept", [user["id"]])
    other = scim.create_group("Other")
    errors: list[BaseException] = []

    def add() -> None:
        with db.transaction() as session:
            groups.add_members(session, system, scim.org_id, other["id"], [user["id"]])

    def remove() -> None:
        with db.transaction() as session:
            assert groups.remove_members(session, system, scim.org_id, kept["id"], [user["id"]]) == []

    with db.transaction() as session:
        users.remove_user(session, system, scim.org_id, user["id"])
        adder, remover = _in_thread(add, errors), _in_thread(remove, errors)
        wait_for_a_lock_wait(db, "the add and the removal", waiters=2)
        assert adder.is_alive() and remover.is_alive()
    adder.join(30)
    remover.join(30)
    assert [type(error).__name__ for error in errors] == ["InvalidValue"], errors
    with db.transaction() as session:
        assert list(session.scalars(select(IdpGroupMember.group_id).where(IdpGroupMember.user_id == user["id"]))) == []


def test_an_org_deletion_waits_for_a_group_add_and_leaves_no_membership(
        scim: Scim, db: Database, system: Actor) -> None:
    """The org's deletion locks every group of the org before any member's row: an add under way
    finishes first, and its membership goes with the member."""
    user = scim.create_user("member@acme.test")
    group = scim.create_group("Engineering")
    errors: list[BaseException] = []

    def delete_org() -> None:
        with db.transaction() as session:
            slug = session.get(Org, scim.org_id).slug  # type: ignore[union-attr]
            org_lifecycle.delete_org(session, system, scim.org_id, confirm=slug)

    with db.transaction() as session:
        groups.add_members(session, system, scim.org_id, group["id"], [user["id"]])
        deleter = _in_thread(delete_org, errors)
        wait_for_a_lock_wait(db, "the org's deletion")
        assert deleter.is_alive()
    deleter.join(30)
    assert not deleter.is_alive() and errors == []
    with db.transaction() as session:
        assert list(session.scalars(select(IdpGroupMember.group_id).where(IdpGroupMember.user_id == user["id"]))) == []
