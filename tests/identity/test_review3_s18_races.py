"""Hostile review (session 18, third pass) of the session's own lock changes: deadlocks the new locks
make with paths that take the same rows in another order (PostgreSQL, real concurrent transactions
under READ COMMITTED).

Each test holds one transaction at a chosen point, lets the other queue behind a lock it holds, then
takes the next lock it needs. A deadlock is answered by PostgreSQL with DeadlockDetected in one of
them (a 503 at the API: still a failed request); each test asserts both complete.
"""

from __future__ import annotations

import threading

import pytest

from audit import Actor
from identity import group_membership, groups, mappings, member_removal, seats, team_deletion, teams, users
from identity.db import Database
from identity.grants import org_role
from identity.lookups import lock_live_user, lock_team
from identity.orgs import NewOrg
from identity.vocabulary import Role
from tests.factories import in_thread, owners_group, provision, wait_for_a_lock_wait

pytestmark = pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")


def _finish(thread: threading.Thread, what: str) -> None:
    thread.join(30)
    assert not thread.is_alive(), f"{what} never finished"


def test_a_demotion_and_an_idp_put_of_the_owners_group_do_not_deadlock(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """The IdP replaces the members of Owners (SCIM PUT: identity.group_membership.replace_members):
    Ann, an owner through it, leaves (the org's owner grants locked, FOR UPDATE, to count the owners
    left) and Bob, an owner by hand, joins (Bob's row share-locked). Meanwhile an admin makes Bob an
    admin: `users.change_role` locks Bob's row (FOR NO KEY UPDATE, `_under_seat_lock`) after the
    org's lock, then the owner grants to count the owners (owners.ensure_not_last_owner). Were the
    PUT to remove first, it would hold the owner grants and wait for Bob's row while the demotion
    holds Bob's row and waits for the owner grants: a deadlock. The PUT share-locks Bob's row before
    its removals (lock_live), so it waits for the demotion holding nothing the demotion needs.
    Serially either order completes (the demotion first, then the PUT gives Bob owner again)."""
    group_id = owners_group(db, system, acme.org.id)
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    with db.transaction() as session:
        group_membership.add_members(session, system, acme.org.id, group_id, [ann.id])
        users.change_role(session, system, acme.org.id, bob.id, "owner")
    errors: list[BaseException] = []

    def put() -> None:
        with db.transaction() as other:
            group_membership.replace_members(other, system, acme.org.id, group_id, [bob.id])
    try:
        with db.transaction() as session:  # the demotion, its locks taken (users._under_seat_lock)
            seats.lock_org(session, acme.org.id)
            lock_live_user(session, bob.id)
            putter = in_thread(put, errors)
            wait_for_a_lock_wait(db, "the PUT")  # for Bob's row (or, removing first, holding the owner grants)
            users.change_role(session, system, acme.org.id, bob.id, "admin")
    except Exception as error:  # noqa: BLE001 - asserted below
        errors.append(error)
    _finish(putter, "the PUT")
    assert [type(error).__name__ for error in errors] == [], errors
    with db.reading() as session:
        assert org_role(session, bob.id) == Role.OWNER  # the group gives it, whatever the manual grant


def test_a_patch_removing_an_owner_and_adding_one_under_deletion_does_not_deadlock(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """A members-only PATCH of Owners (groups.change_group: no org lock) removes Ann, an owner
    through it, and adds Carl, an owner by hand, whom an admin is deleting meanwhile. The deletion
    holds Carl's row and then locks the org's owner grants to count the owners
    (owners.ensure_not_last_owner). Were the PATCH to remove first, it would hold the owner grants
    and wait for Carl's row: a deadlock (group_locks once documented it as an accepted exception).
    The PATCH share-locks Carl's row before its removal, waits for the deletion, then reads Carl
    deleted: InvalidValue (a 400, as for any add of a deleted member), nothing written."""
    group_id = owners_group(db, system, acme.org.id)
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    carl = provision(db, system, acme.org.id, "carl@acme.test")
    dan = provision(db, system, acme.org.id, "dan@acme.test")
    with db.transaction() as session:
        group_membership.add_members(session, system, acme.org.id, group_id, [ann.id])
        users.change_role(session, system, acme.org.id, carl.id, "owner")
        users.change_role(session, system, acme.org.id, dan.id, "owner")
    errors: list[BaseException] = []

    def patch() -> None:
        with db.transaction() as other:
            groups.change_group(other, system, acme.org.id, group_id,
                                groups.GroupChange(removed=(ann.id,), added=(carl.id,)))
    try:
        with db.transaction() as session:  # the deletion, Carl's row locked, not the owner grants yet
            seats.lock_org(session, acme.org.id)
            lock_live_user(session, carl.id)
            patcher = in_thread(patch, errors)
            wait_for_a_lock_wait(db, "the PATCH")  # for Carl's row (or, removing first, holding the owner grants)
            member_removal.delete_user(session, system, acme.org.id, carl.id)
    except Exception as error:  # noqa: BLE001 - asserted below
        errors.append(error)
    _finish(patcher, "the PATCH")
    assert [type(error).__name__ for error in errors] == ["InvalidValue"], errors
    with db.reading() as session:
        assert org_role(session, ann.id) == Role.OWNER  # the PATCH wrote nothing


def test_a_removal_from_a_team_and_a_rule_edit_reapplying_its_group_do_not_deadlock(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Eng's rule gives Research; Dev is in Eng, so in Research. An admin takes Dev out of Research
    (teams.remove_team_member) while another edits Eng's rule (mappings.update_mapping, which
    re-derives Eng: groups.reapply). The removal now locks Research (KEY SHARE) and then Dev's row
    (FOR NO KEY UPDATE, teams._member_of) before it deletes Dev's grants in Research. The rule edit
    deletes Eng's grants (Dev's in Research among them) and re-adds Eng's members, share-locking
    their rows (group_membership._live_users): it waits for Dev's row, which the removal holds, while
    the removal's DELETE waits for the grant the edit deleted. A deadlock; before the change the
    removal held no user row, so it simply waited for the edit. Serially either order completes."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    with db.transaction() as session:
        team_id = teams.create_team(session, system, acme.org.id, "Research", creator=False).id
        group = groups.create_group(session, system, acme.org.id, display_name="Eng", external_id="00gEng")
        rule = mappings.create_mapping(session, system, acme.org.id, group_external_id="00gEng", team_id=team_id)
        group_membership.add_members(session, system, acme.org.id, group.id, [dev.id])
        rule_id = rule.id
    errors: list[BaseException] = []

    def edit_rule() -> None:
        with db.transaction() as other:
            mappings.update_mapping(other, system, acme.org.id, rule_id, {"team_role": "admin"})
    try:
        with db.transaction() as session:  # the removal, its locks taken (teams._member_of), not its DELETE yet
            lock_team(session, acme.org.id, team_id)
            lock_live_user(session, dev.id)
            editor = in_thread(edit_rule, errors)
            wait_for_a_lock_wait(db, "the rule edit")  # re-adding Eng's members: for Dev's row
            teams.remove_team_member(session, system, acme.org.id, team_id, dev.id)
    except Exception as error:  # noqa: BLE001 - asserted below
        errors.append(error)
    _finish(editor, "the rule edit")
    assert [type(error).__name__ for error in errors] in ([], ["NotFound"]), errors


def test_an_idp_add_that_adopts_a_team_by_name_during_its_deletion_is_not_a_500(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Under `mirror` (the default), a group no rule governs becomes the team of its name
    (group_membership.mirror_team: "its own, else the org's team of its name, else a new one"). An
    admin deletes the team Research while the IdP adds Dev to the group Research, which has no team
    yet. The deletion locks the org, the team's groups (Research the group is not among them: not
    yet its mirror), its wallet and its row FOR UPDATE, and deletes it. The add reads the team by
    name without a lock (still there in its snapshot), points the group at it and inserts Dev's
    grant in it; the foreign key's check waits for the deletion, which commits; the insert then
    fails on the foreign key: IntegrityError, a 500 at SCIM. identity.group_locks promises that
    every change of a team either commits first or waits and finds the team gone; serially, the add
    first is ended by the deletion, the deletion first leaves the add to make a new team Research."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    with db.transaction() as session:
        team_id = teams.create_team(session, system, acme.org.id, "Research", creator=False).id
        group_id = groups.create_group(session, system, acme.org.id, display_name="Research",
                                       external_id="00gResearch").id
    errors: list[BaseException] = []

    def add() -> None:
        with db.transaction() as other:
            group_membership.add_members(other, system, acme.org.id, group_id, [dev.id])
    with db.transaction() as session:
        team_deletion.delete_team(session, system, acme.org.id, team_id)
        session.flush()
        adder = in_thread(add, errors)
        wait_for_a_lock_wait(db, "the IdP's add")  # the grant's foreign key check, for the deleted team's row
    _finish(adder, "the IdP's add")
    assert [type(error).__name__ for error in errors] == [], errors
