"""sessions.confirm_role's last gaps (session 21): a write that waited for a change taking its
caller's role after it held the org's lock and had confirmed the role there. Each race runs on PostgreSQL (READ COMMITTED): the change held uncommitted, the write
started behind it until it waits for a lock, then the change committed. The writes that take their
caller's grant or end their caller's session themselves stay allowed (both backends).
"""

from __future__ import annotations

import pytest

from audit import Actor
from identity import group_membership, groups, mappings, orgs, users
from identity.db import Database
from identity.models import IdpGroup, User
from identity.orgs import NewOrg
from identity.service import run
from identity.vocabulary import Role
from tests.factories import admins_group, behind, provision

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
