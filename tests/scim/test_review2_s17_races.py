"""Hostile review (second) of session 17's lock orders for SCIM changes of a member (PostgreSQL,
real concurrent transactions). Each test asserts the rule and failed on the code it was written against."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from audit.models import AuditEvent
from identity import group_membership, groups, mappings, orgs, owners, user_profile, users
from identity.db import Database
from identity.models import IdpGroup, User
from tests.factories import in_thread, wait_for_a_lock_wait
from tests.scim.client import Scim, scim_for

pytestmark = pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme", included_seats=10)


class Stale(Exception):
    """What a SCIM If-Match that names another version answers (412), raised by the domain's `check`."""



def test_a_deletion_that_lets_go_of_the_members_row_checks_if_match_again_on_the_row_it_locks_again(
        scim: Scim, db: Database, system: Actor) -> None:
    """DELETE with If-Match at the member's version V. The deletion holds the higher group and waits for
    the member's row, which an add to the lower group holds (shared); a profile change waits behind it.
    The add commits; the deletion gets the row, checks If-Match against V (it holds), finds the lower
    group (`held_elsewhere`) and rolls back to its savepoint (`_lock_again`), letting go of the row: the
    profile change takes it, writes V+1 and commits; the deletion locks the row again, reads V+1 and
    deletes the member without checking If-Match again. Both succeed: no serial order gives that (the
    profile change first makes the DELETE a 412; the DELETE first makes the change a 404)."""
    user = scim.create_user("racing@acme.test")
    low, high = sorted([scim.create_group("One"), scim.create_group("Two")], key=lambda group: group["id"])
    with db.transaction() as session:
        group_membership.add_members(session, system, scim.org_id, high["id"], [user["id"]])
    with db.reading() as session:
        version = session.get_one(User, user["id"]).version
    errors: list[BaseException] = []
    deleted: list[bool] = []
    changed: list[bool] = []

    def if_match(member: User) -> None:
        if member.version != version:
            raise Stale(f"the member is at version {member.version}, not {version}")

    def delete() -> None:
        with db.transaction() as session:
            users.remove_user(session, system, scim.org_id, user["id"], check=if_match)
        deleted.append(True)

    def change() -> None:
        with db.transaction() as session:
            user_profile.update_profile(session, system, scim.org_id, user["id"], {"given_name": "Changed"})
        changed.append(True)

    with db.transaction() as session:
        group_membership.add_members(session, system, scim.org_id, low["id"], [user["id"]])
        deleter = in_thread(delete, errors)
        wait_for_a_lock_wait(db, "the deletion")  # for the member's row, holding the higher group
        changer = in_thread(change, errors)
        wait_for_a_lock_wait(db, "the deletion and the profile change", waiters=2)  # both for the row
    deleter.join(30)
    changer.join(30)
    assert not deleter.is_alive() and not changer.is_alive()
    with db.reading() as session:
        member = session.get_one(User, user["id"])
        state = (member.deleted_at is not None, member.given_name)
    assert not (deleted and changed), (
        f"a DELETE with If-Match {version} and a change to {version + 1} both succeeded: {state}, {errors}")


def test_a_group_put_that_reads_its_old_name_before_the_lock_takes_the_orgs_lock_first_when_it_renames(
        scim: Scim, db: Database, system: Actor) -> None:
    """A SCIM PUT (identity.groups.change_group) decides whether it renames, and so whether it takes the
    org's lock before the group's, from the group as read before the group's lock (`_names_change`). The
    group is "Alpha"; a rename to "Beta" (which also adds a rule for the name "Alpha") holds the org and
    the group when a PUT naming the group "Alpha" reads it as "Alpha" (no rename: no org lock) and waits
    for the group; a member's new name (shown in the group: the org's lock, then the group's) waits for
    the org. Once the rename commits, the PUT holds the group and renames it back to "Alpha", whose rule
    it re-applies (`reapply`: the org's lock, while holding the group); the member's change holds the org
    and waits for the group: a deadlock, one of them answered 500. Both must go through."""
    member = scim.create_user("member@acme.test")
    group = scim.create_group("Alpha", [member["id"]])
    errors: list[BaseException] = []

    def put_alpha() -> None:
        with db.transaction() as session:
            groups.change_group(session, system, scim.org_id, group["id"], groups.GroupChange(display_name="Alpha"))

    def rename_member() -> None:
        with db.transaction() as session:
            user_profile.update_profile(session, system, scim.org_id, member["id"], {"display_name": "Someone Else"})

    with db.transaction() as session:
        groups.update_group(session, system, scim.org_id, group["id"], display_name="Beta")
        mappings.create_mapping(session, system, scim.org_id, group_display_name="Alpha", org_role="viewer")
        session.flush()
        putter = in_thread(put_alpha, errors)
        wait_for_a_lock_wait(db, "the PUT")  # for the group
        renamer = in_thread(rename_member, errors)
        wait_for_a_lock_wait(db, "the PUT and the member's new name", waiters=2)  # the latter for the org
    putter.join(30)
    renamer.join(30)
    assert not putter.is_alive() and not renamer.is_alive()
    assert errors == [], [f"{type(error).__name__}: {str(error).splitlines()[0]}" for error in errors]
    with db.reading() as session:
        assert session.get_one(IdpGroup, group["id"]).display_name == "Alpha"
        assert session.get_one(User, member["id"]).display_name == "Someone Else"


def _change_while_another_holds_the_row(db: Database, system: Actor, org_id: str, user_id: str,
                                        first: str, second: str) -> list[BaseException]:
    """A profile change of given_name to `first` holds the member's row (LOCK_LIVE_USER) when another, to
    `second`, which read the member before the first committed, waits for the row; the first commits."""
    errors: list[BaseException] = []

    def change() -> None:
        with db.transaction() as session:
            user_profile.update_profile(session, system, org_id, user_id, {"given_name": second})

    with db.transaction() as session:
        user_profile.update_profile(session, system, org_id, user_id, {"given_name": first})
        session.flush()
        changer = in_thread(change, errors)
        wait_for_a_lock_wait(db, "the second change")  # for the member's row
    changer.join(30)
    assert not changer.is_alive()
    return errors


def test_a_profile_change_that_waited_for_another_audits_the_value_it_replaced(
        scim: Scim, db: Database, system: Actor) -> None:
    """The second change computes its diff from the member as read before the wait (`_profile_change`)
    and only the version is read under the lock (`_lock_live`): its `user.updated` event says given_name
    went from "Ann" to "Cat", when the row it wrote held "Bob" (the first change's). The audit log must
    say what each change replaced."""
    user = scim.create_user("changing@acme.test")
    with db.transaction() as session:
        user_profile.update_profile(session, system, scim.org_id, user["id"], {"given_name": "Ann"})
    assert _change_while_another_holds_the_row(db, system, scim.org_id, user["id"], "Bob", "Cat") == []
    with db.reading() as session:
        changes = [event.changes["given_name"] for event in session.scalars(select(AuditEvent).where(
            AuditEvent.action == "user.updated", AuditEvent.target_id == user["id"]).order_by(AuditEvent.seq))]
        assert session.get_one(User, user["id"]).given_name == "Cat"
    assert changes[-2:] == [{"before": "Ann", "after": "Bob"}, {"before": "Bob", "after": "Cat"}], changes



def test_two_members_only_group_patches_at_once_never_remove_the_last_two_owners(
        scim: Scim, db: Database, system: Actor) -> None:
    """Two owners, each an owner through an IdP group of their own (the org lets the IdP grant owner),
    and no other active owner. A members-only PATCH takes no org lock (groups.lock_for_change with
    may_rename=False, then group_membership.remove_members), yet its last-owner guard
    (owners.last_owners_leaving_group) relies on the org's lock to serialise (identity/owners.py: "Callers
    hold the org lock"). Removing one owner from the first group is under way when a PATCH removes the
    other from the second: each counts the other as an active owner, both go through, and the org is
    left with none (DESIGN 3.2: an org always has at least one active owner)."""
    with db.transaction() as session:
        orgs.update_settings(session, system, scim.org_id, {"idp_may_grant_owner": True})
        for name in ("Owners One", "Owners Two"):
            mappings.create_mapping(session, system, scim.org_id, group_display_name=name, org_role="owner")
    first, second = scim.create_user("first@acme.test"), scim.create_user("second@acme.test")
    one, two = scim.create_group("Owners One", [first["id"]]), scim.create_group("Owners Two", [second["id"]])
    with db.transaction() as session:
        creator = session.scalars(select(User.id).where(User.org_id == scim.org_id,
                                                        User.user_name == "owner@acme.test")).one()
        users.deactivate_user(session, system, scim.org_id, creator)
        assert owners.active_owners(session, scim.org_id) == 2
    errors: list[BaseException] = []
    answers: list[object] = []

    def patch_second() -> None:
        answer = scim.patch(f"/Groups/{two['id']}", [{"op": "remove", "path": f'members[value eq "{second["id"]}"]'}])
        answers.append((answer.status_code, answer.json))

    # The PATCH runs in a thread: it serialises behind the first removal, which commits once it is seen waiting.
    with db.transaction() as session:
        assert group_membership.remove_members(session, system, scim.org_id, one["id"], [first["id"]]) == [first["id"]]
        session.flush()
        patcher = in_thread(patch_second, errors)
        wait_for_a_lock_wait(db, "the second removal")  # serialised behind this one (unserialised: it fails)
    patcher.join(30)
    assert not patcher.is_alive() and errors == [], errors
    with db.reading() as session:
        left = owners.active_owners(session, scim.org_id)
    assert left >= 1, answers


@pytest.mark.parametrize("change", ["deactivate", "demote", "delete"])
def test_a_removal_from_a_group_and_an_owners_own_change_at_once_never_remove_the_last_two_owners(
        scim: Scim, db: Database, system: Actor, change: str) -> None:
    """The rest of the finding above: two owners, one through an IdP group, the other the org's creator
    (a manual owner). The group's owner is being removed from the group (a members-only change, no org
    lock, the owner grants locked) when the creator is deactivated, demoted or deleted (the org's lock,
    the member's row): each counted the other as an active owner, both went through and the org was left
    with none. Now the owner's own change locks the owner grants too before its count, so it queues
    behind the removal and is refused as the last owner."""
    with db.transaction() as session:
        orgs.update_settings(session, system, scim.org_id, {"idp_may_grant_owner": True})
        mappings.create_mapping(session, system, scim.org_id, group_display_name="Owners", org_role="owner")
    first = scim.create_user("first@acme.test")
    one = scim.create_group("Owners", [first["id"]])
    with db.reading() as session:
        creator = session.scalars(select(User.id).where(User.org_id == scim.org_id,
                                                        User.user_name == "owner@acme.test")).one()
        assert owners.active_owners(session, scim.org_id) == 2
    errors: list[BaseException] = []

    def change_creator() -> None:
        with db.transaction() as session:
            if change == "deactivate":
                users.deactivate_user(session, system, scim.org_id, creator)
            elif change == "demote":
                users.change_role(session, system, scim.org_id, creator, "admin")
            else:
                users.delete_user(session, system, scim.org_id, creator)

    with db.transaction() as session:
        assert group_membership.remove_members(session, system, scim.org_id, one["id"], [first["id"]]) == [first["id"]]
        session.flush()
        changer = in_thread(change_creator, errors)
        wait_for_a_lock_wait(db, f"the creator's {change}")  # queued behind the removal (unserialised: it fails)
    changer.join(30)
    assert not changer.is_alive()
    assert [type(error).__name__ for error in errors] == ["LastOwner"], errors
    with db.reading() as session:
        assert owners.active_owners(session, scim.org_id) == 1
