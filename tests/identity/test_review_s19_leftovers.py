"""The concurrency leftovers of session 18 (session 19): each a value read before a lock wait and used
after it, or a lock let go too early (PostgreSQL, real concurrent transactions under READ COMMITTED).

Each test holds one transaction with a lock, starts the other changes behind it, waits until they
wait for it, then lets them finish, and asserts what a serial order would leave.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from audit import Actor
from identity import (
    group_membership,
    groups,
    mappings,
    member_removal,
    orgs,
    owners,
    seats,
    team_deletion,
    teams,
    user_profile,
    users,
)
from identity.db import Database
from identity.grants import org_role
from identity.models import IdpGroup, RoleGrant, Team, User
from identity.orgs import NewOrg
from identity.service import run
from identity.vocabulary import Role
from tests.factories import actions, behind, in_thread, owners_group, provision, wait_for_a_lock_wait

pytestmark = pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")


_OWNER_GRANTS = "ORDER BY role_grants.id FOR UPDATE"  # owners.LOCK_OWNER_GRANTS


@pytest.mark.parametrize("by_the_idp", [False, True], ids=["delete_user", "remove_user"])
def test_an_owners_deletion_that_locks_its_groups_again_counts_the_owners_again(
        db: Database, system: Actor, acme: NewOrg, by_the_idp: bool) -> None:
    """Two owners: the org's first (by hand) and Bob (through the IdP group Owners). An admin deletes
    the first owner (member_removal.delete_user): the org's lock, its groups and row, then the org's
    owner grants (held meanwhile by another change of them: the hold), and counts: Bob remains. While
    it waited, the IdP added the owner to the group Eng (committed): its removal finds that membership
    in a group it does not hold (REMOVE_ROWS: held_elsewhere) and `_lock_again` rolls back to its
    savepoint, letting go of the owner grants too. The IdP's removal of Bob from Owners
    (group_membership.remove_members: no org lock), queued for the owner grants behind the deletion,
    takes them, counts the first owner (not deleted yet) and removes Bob; the deletion then deletes the
    first owner without counting again. No owner is left; serially the second of the two is refused
    (LastOwner) or skipped (audited). The IdP's deletion (member_removal.remove_user, a SCIM DELETE) alike,
    its refusal skipped and audited."""
    owners_id = owners_group(db, system, acme.org.id)
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    with db.transaction() as session:
        group_membership.add_members(session, system, acme.org.id, owners_id, [bob.id])
        eng = groups.create_group(session, system, acme.org.id, display_name="Eng", external_id="00gEng")
    first = acme.owner.id

    def delete() -> None:
        with db.transaction() as session:
            (member_removal.remove_user if by_the_idp else member_removal.delete_user)(
                session, system, acme.org.id, first)

    def remove_bob() -> None:
        with db.transaction() as session:
            group_membership.remove_members(session, system, acme.org.id, owners_id, [bob.id])

    errors: list[BaseException] = []
    with db.transaction() as grants:  # another change of the owner grants, under way
        grants.execute(owners.LOCK_OWNER_GRANTS, {"org_id": acme.org.id})
        with db.transaction() as session:  # the IdP adds the first owner to Eng (its row share-locked)
            group_membership.add_members(session, system, acme.org.id, eng.id, [first])
            session.flush()
            deleter = in_thread(delete, errors)
            wait_for_a_lock_wait(db, "the deletion")  # for the owner's row, its groups (not Eng) locked
        wait_for_a_lock_wait(db, "the deletion", in_statement=_OWNER_GRANTS)  # for the owner grants
        remover = in_thread(remove_bob, errors)
        wait_for_a_lock_wait(db, "the removal from Owners", 2, in_statement=_OWNER_GRANTS)  # behind it
    for thread in (deleter, remover):
        thread.join(30)
        assert not thread.is_alive(), "a change never finished"
    with db.reading() as session:
        left = [user for user in (first, bob.id) if org_role(session, user) == Role.OWNER and
                session.get_one(User, user).deleted_at is None]
    assert left, f"no owner is left ({[type(error).__name__ for error in errors]})"
    # Either serial order: the deletion last (refused, or skipped by the IdP) and the first owner left, or
    # the deletion first once it counted again (Bob's removal then skipped: the last owner) and Bob left.
    # Which one depends on who PostgreSQL hands the owner grants to once the deletion let them go.
    refused = [] if by_the_idp else ["LastOwner"]
    assert ([type(error).__name__ for error in errors], left) in ((refused, [first]), ([], [bob.id]))
    if by_the_idp:
        assert actions(db, acme.org.id)[-1] == "member.last_owner_protected"


def test_an_idp_deactivation_of_an_owner_and_a_patch_of_owners_adding_that_owner_do_not_deadlock(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """The IdP deactivates Carl, an owner by hand (user_profile.sync_user, a SCIM PATCH active=false),
    while a PATCH of Owners adds Carl and removes Ann, an owner through it (groups.change_group: Carl's
    row share-locked before the removal takes the org's owner grants). sync_user took the org's lock,
    then the owner grants to count the owners (owners.would_remove_last_owner) before Carl's row
    (users.deactivate_user, which counts again): it holds the owner grants and waits for Carl's row,
    the PATCH holds Carl's row and waits for the owner grants, a deadlock (503). Serially either order
    completes: Ann out of Owners, Carl deactivated (the org's first owner remains)."""
    owners_id = owners_group(db, system, acme.org.id)
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    carl = provision(db, system, acme.org.id, "carl@acme.test")
    with db.transaction() as session:
        group_membership.add_members(session, system, acme.org.id, owners_id, [ann.id])
        users.change_role(session, system, acme.org.id, carl.id, "owner")

    def deactivate() -> None:
        with db.transaction() as session:
            user_profile.sync_user(session, system, acme.org.id, carl.id, {"active": False})

    errors: list[BaseException] = []
    try:
        with db.transaction() as session:  # the PATCH of Owners, Carl's row share-locked (lock_live)
            group_membership.lock_live(session, acme.org.id, [carl.id])
            deactivation = in_thread(deactivate, errors)
            wait_for_a_lock_wait(db, "the deactivation")  # for Carl's row (or, counting first, holding the owner grants)
            groups.change_group(session, system, acme.org.id, owners_id,
                                groups.GroupChange(removed=(ann.id,), added=(carl.id,)))
    except Exception as error:  # noqa: BLE001 - asserted below
        errors.append(error)
    deactivation.join(30)
    assert not deactivation.is_alive(), "the deactivation never finished"
    assert [type(error).__name__ for error in errors] == [], errors
    with db.reading() as session:
        assert (session.get_one(User, carl.id).active, org_role(session, ann.id)) == (False, Role.MEMBER)


def test_an_admins_add_of_herself_to_a_team_that_waited_for_her_demotion_is_refused(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Ann, an admin, makes herself an admin of Research from her console session (identity.service.run
    with her session's actor, role admin as verify_session read it): teams.add_team_member takes no org
    lock, so sessions.confirm_role never runs. Meanwhile the owner makes Ann a member (users.change_role,
    holding her row). The add share-locks Research, waits for Ann's row, reads it as the demotion left
    it, and writes with the admin role the demotion took away: a member may not add to a team (no
    teams.manage). In the order the two took Ann's row the demotion came first: the add is refused."""
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    with db.transaction() as session:
        users.change_role(session, system, acme.org.id, ann.id, "admin")
        team_id = teams.create_team(session, system, acme.org.id, "Research", creator=False).id
    as_ann = Actor("user", ann.id, ann.user_name, org_id=acme.org.id, role=Role.ADMIN)
    errors: list[BaseException] = []
    behind(db, lambda session: users.change_role(session, system, acme.org.id, ann.id, "member"),
           lambda: run(db, as_ann, teams.add_team_member, acme.org.id, team_id, ann.id, "admin"),
           errors, "Ann's add to Research")  # for Ann's row
    assert [type(error).__name__ for error in errors] == ["PermissionDenied"], errors
    with db.reading() as session:
        assert session.scalars(select(RoleGrant.role).where(RoleGrant.user_id == ann.id,
                                                            RoleGrant.team_id == team_id)).all() == []


def test_an_add_to_a_group_adopting_a_team_under_deletion_that_removes_owner_grants_does_not_deadlock(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Research is the team of the rule of Leads (org role owner, team Research): Lee is an owner
    through Leads. The IdP group Research has no rule (the org mirrors groups: group_membership.
    mirror_team adopts the org's team of its name). The owner deletes Research (team_deletion): the
    org's lock, Leads, the wallet, the team's row FOR UPDATE; meanwhile the IdP adds Dev to the group
    Research, which holds that group and Dev's row (FOR SHARE) and waits for the team's row (lock_team).
    The deletion then deletes Leads' rule and re-derives Leads (its members' rows share-locked, their
    owner grants deleted, `ensure_an_owner_remains`) and the team's grants: none of it waits for what
    the add holds. Suspected deadlock (session 18's note); serially the add, after the deletion, makes
    a new team Research."""
    with db.transaction() as session:
        orgs.update_settings(session, system, acme.org.id, {"idp_may_grant_owner": True})
        team_id = teams.create_team(session, system, acme.org.id, "Research", creator=False).id
        leads = groups.create_group(session, system, acme.org.id, display_name="Leads", external_id="00gLeads")
        mappings.create_mapping(session, system, acme.org.id, group_external_id="00gLeads", team_id=team_id,
                                org_role="owner")
        mirrored = groups.create_group(session, system, acme.org.id, display_name="Research", external_id="00gR")
    lee = provision(db, system, acme.org.id, "lee@acme.test")
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    with db.transaction() as session:
        group_membership.add_members(session, system, acme.org.id, leads.id, [lee.id])
        assert org_role(session, lee.id) == Role.OWNER

    def add() -> None:
        with db.transaction() as session:
            group_membership.add_members(session, system, acme.org.id, mirrored.id, [dev.id])

    errors: list[BaseException] = []
    try:
        with db.transaction() as session:  # the deletion, its locks taken, nothing read or ended yet
            seats.lock_org(session, acme.org.id)
            team_deletion._lock_for_deletion(session, acme.org.id, team_id)
            adder = in_thread(add, errors)
            wait_for_a_lock_wait(db, "the add to the group Research")  # for the team's row
            team_deletion.delete_team(session, system, acme.org.id, team_id)
    except Exception as error:  # noqa: BLE001 - asserted below
        errors.append(error)
    adder.join(30)
    assert not adder.is_alive(), "the add never finished"
    assert [type(error).__name__ for error in errors] == [], errors
    with db.reading() as session:
        group = session.get_one(IdpGroup, mirrored.id)
        assert group.team_id not in (None, team_id)
        assert session.get_one(Team, group.team_id).name == "Research"
        assert org_role(session, lee.id) != Role.OWNER
