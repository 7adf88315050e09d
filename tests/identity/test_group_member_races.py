"""A group's members changed by two transactions at once, on PostgreSQL (SQLite runs one writer at a time).

A user's deletion takes the user out of every group and moves those groups' versions, locking
them in id order after the org's lock (as a SAML sign-in's group claims do); a group change that
read the user as a member meanwhile removes nothing more, and audits no removal of its own; and
deletions racing changes of the same groups all succeed, none deadlocked.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from audit import Actor
from audit.models import AuditEvent
from identity import group_membership, groups, users
from identity.db import Database
from identity.orgs import NewOrg
from tests.factories import provision


@pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")
def test_a_removal_racing_the_users_deletion_removes_and_audits_nothing(db: Database, acme: NewOrg,
                                                                        system: Actor) -> None:
    org_id = acme.org.id
    leaving, staying = (provision(db, system, org_id, f"{name}@acme.test").id for name in ("leaving", "staying"))
    with db.transaction() as session:
        group = groups.create_group(session, system, org_id, display_name="Racers", member_ids=[leaving, staying])
    deleted, commit = threading.Event(), threading.Event()
    removed: list[list[str]] = []

    def delete_user() -> None:
        with db.transaction() as session:
            users.remove_user(session, system, org_id, leaving)
            deleted.set()
            commit.wait(10)

    def remove_from_group() -> None:
        with db.transaction() as session:
            removed.append(group_membership.remove_members(session, system, org_id, group.id, [leaving]))

    deleting = threading.Thread(target=delete_user)
    deleting.start()
    assert deleted.wait(10)
    removing = threading.Thread(target=remove_from_group)
    removing.start()
    time.sleep(0.5)  # the removal has read `leaving` as a member and waits on the deleted row
    commit.set()
    deleting.join(10)
    removing.join(10)
    assert removed == [[]]
    with db.reading() as session:
        events = list(session.scalars(select(AuditEvent).where(
            AuditEvent.target_id == group.id, AuditEvent.action == "group.members_removed")))
        assert events == []
        assert group_membership.member_ids(session, group.id) == [staying]


@pytest.mark.postgres_only("write transactions at once; SQLite runs one at a time")
def test_deletions_racing_changes_of_the_same_groups_all_succeed_and_move_each_version(
        db: Database, acme: NewOrg, system: Actor) -> None:
    org_id = acme.org.id
    leaving = [provision(db, system, org_id, f"leaving{i}@acme.test").id for i in range(8)]
    joining = [provision(db, system, org_id, f"joining{i}@acme.test").id for i in range(8)]
    with db.transaction() as session:
        shared = [groups.create_group(session, system, org_id, display_name=f"Shared {i}", member_ids=leaving).id
                  for i in range(4)]
    with db.reading() as session:
        before = {gid: groups.get_group(session, org_id, gid).version for gid in shared}

    def delete_user(user_id: str) -> None:
        with db.transaction() as session:
            users.remove_user(session, system, org_id, user_id)

    def change_groups(user_id: str) -> None:
        for group_id in sorted(shared, reverse=True):  # one transaction each, as SCIM sends them
            with db.transaction() as session:
                group_membership.add_members(session, system, org_id, group_id, [user_id])

    with ThreadPoolExecutor(8) as pool:
        done = [pool.submit(delete_user, uid) for uid in leaving] + [pool.submit(change_groups, uid) for uid in joining]
        for future in done:
            future.result(timeout=60)  # a deadlock PostgreSQL broke would raise here
    with db.reading() as session:
        for group_id in shared:
            assert sorted(group_membership.member_ids(session, group_id)) == sorted(joining)
            assert groups.get_group(session, org_id, group_id).version >= before[group_id] + len(leaving)
