"""A group's members changed by two transactions at once, on PostgreSQL (SQLite runs one writer at a time).

A user's deletion takes the user out of every group without locking the groups; a group change
that read the user as a member meanwhile removes nothing more, and audits no removal of its own.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from audit import Actor
from audit.models import AuditEvent
from identity import groups, users
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
            removed.append(groups.remove_members(session, system, org_id, group.id, [leaving]))

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
        assert groups.member_ids(session, group.id) == [staying]
