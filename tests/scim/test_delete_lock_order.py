"""A member's deletion and the group changes that race it, in the lock order of identity.group_locks:
the org, then groups in id order, then user rows (an add share-locks the users it adds after its
group; a deletion locks the member's groups, then its row)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from identity import group_claims, group_membership, org_lifecycle, user_profile, users
from identity.db import Database
from identity.models import IdpGroup, IdpGroupMember, Org, RoleGrant, User
from tests.factories import actions, in_thread, wait_for_a_lock_wait
from tests.scim.client import Scim, scim_for

pytestmark = pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme", included_seats=10)




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
        group_membership.add_members(session, system, scim.org_id, group["id"], [user["id"]])
        deleter = in_thread(delete, errors)
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
            group_membership.add_members(session, system, scim.org_id, other["id"], [user["id"]])

    def remove() -> None:
        with db.transaction() as session:
            assert group_membership.remove_members(session, system, scim.org_id, kept["id"], [user["id"]]) == []

    with db.transaction() as session:
        users.remove_user(session, system, scim.org_id, user["id"])
        adder, remover = in_thread(add, errors), in_thread(remove, errors)
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
        group_membership.add_members(session, system, scim.org_id, group["id"], [user["id"]])
        deleter = in_thread(delete_org, errors)
        wait_for_a_lock_wait(db, "the org's deletion")
        assert deleter.is_alive()
    deleter.join(30)
    assert not deleter.is_alive() and errors == []
    with db.transaction() as session:
        assert list(session.scalars(select(IdpGroupMember.group_id).where(IdpGroupMember.user_id == user["id"]))) == []


def test_a_deletion_that_finds_a_group_below_its_own_locks_it_in_id_order(
        scim: Scim, db: Database, system: Actor) -> None:
    """The member is in the higher group; an add to the lower one holds the member's row (shared)
    while the deletion, holding the higher group, waits for the row, and a sign-in joining another
    member to both groups waits for the lower one. Once the add commits, the sign-in holds the lower
    group and waits for the higher; the deletion finds the new membership (REMOVE_ROWS'
    `held_elsewhere`) and must not wait for the lower group while it holds the higher: no deadlock,
    the member leaves both groups, the other member is in both."""
    user = scim.create_user("racing@acme.test")
    other = scim.create_user("signing-in@acme.test")
    low, high = sorted([scim.create_group("One"), scim.create_group("Two")], key=lambda group: group["id"])
    with db.transaction() as session:
        group_membership.add_members(session, system, scim.org_id, high["id"], [user["id"]])
    errors: list[BaseException] = []

    def delete() -> None:
        with db.transaction() as session:
            users.remove_user(session, system, scim.org_id, user["id"])

    def sign_in() -> None:
        with db.transaction() as session:
            group_claims.apply_user_groups(session, system, scim.org_id, other["id"],
                                           [low["displayName"], high["displayName"]])

    with db.transaction() as session:
        group_membership.add_members(session, system, scim.org_id, low["id"], [user["id"]])
        deleter = in_thread(delete, errors)
        wait_for_a_lock_wait(db, "the deletion")  # for the member's row, holding the higher group
        signer = in_thread(sign_in, errors)
        wait_for_a_lock_wait(db, "the deletion and the sign-in", waiters=2)  # the sign-in for the lower group
    deleter.join(30)
    signer.join(30)
    assert not deleter.is_alive() and not signer.is_alive()
    assert errors == []
    with db.transaction() as session:
        assert session.get(User, user["id"]).deleted_at is not None  # type: ignore[union-attr]
        assert list(session.scalars(select(IdpGroupMember.group_id).where(IdpGroupMember.user_id == user["id"]))) == []
        assert sorted(session.scalars(select(IdpGroupMember.group_id).where(
            IdpGroupMember.user_id == other["id"]))) == [low["id"], high["id"]]


@pytest.mark.parametrize("changes", [{"email": "elsewhere@acme.test"}, {"display_name": "Someone Else"}],
                         ids=["email", "rename"])
def test_a_profile_change_that_waited_for_a_deletion_finds_the_member_gone(
        scim: Scim, db: Database, system: Actor, changes: dict[str, str]) -> None:
    """The profile change read the member before the deletion committed; it waits for the member's
    row (or, renaming, the org) and then is NotFound: the tombstone keeps what it had, and no event
    follows the deletion's."""
    user = scim.create_user("leaving@acme.test")
    errors: list[BaseException] = []

    def update() -> None:
        with db.transaction() as session:
            user_profile.update_profile(session, system, scim.org_id, user["id"], changes)

    with db.transaction() as session:
        users.remove_user(session, system, scim.org_id, user["id"])
        session.flush()
        updater = in_thread(update, errors)
        wait_for_a_lock_wait(db, "the profile change")
    updater.join(30)
    assert not updater.is_alive()
    assert [type(error).__name__ for error in errors] == ["NotFound"], errors
    with db.transaction() as session:
        tombstone = session.get(User, user["id"])
        assert tombstone is not None and tombstone.deleted_at is not None
        assert (tombstone.email, tombstone.display_name) == ("leaving@acme.test", None)
    assert actions(db, scim.org_id)[-1] == "user.deleted"


def test_two_profile_changes_at_once_move_the_version_twice(scim: Scim, db: Database, system: Actor) -> None:
    """The second change read the member before the first committed: it waits for the row and then
    writes the version after the first's, so the two states have two ETags."""
    user = scim.create_user("changing@acme.test")
    errors: list[BaseException] = []

    def update() -> None:
        with db.transaction() as session:
            user_profile.update_profile(session, system, scim.org_id, user["id"], {"given_name": "Second"})

    with db.transaction() as session:
        version = session.get(User, user["id"]).version  # type: ignore[union-attr]
        user_profile.update_profile(session, system, scim.org_id, user["id"], {"family_name": "First"})
        session.flush()
        updater = in_thread(update, errors)
        wait_for_a_lock_wait(db, "the second profile change")
    updater.join(30)
    assert not updater.is_alive() and errors == []
    with db.transaction() as session:
        changed = session.get(User, user["id"])
        assert changed is not None
        assert (changed.family_name, changed.given_name, changed.version) == ("First", "Second", version + 2)
