"""Test data builders and small readers of what the database holds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from audit import Actor
from audit.models import AuditEvent
from identity import group_membership, groups, mappings, orgs, users
from identity.db import Database
from identity.models import RoleGrant, SeatCharge, Team, User


def provision(db: Database, actor: Actor, org_id: str, user_name: str, **kwargs: Any) -> User:
    """Provision and commit a member."""
    kwargs.setdefault("source", "manual")
    kwargs.setdefault("email", user_name)
    with db.transaction() as session:
        return users.provision_user(session, actor, org_id, user_name=user_name, **kwargs)


def admin_and_member(db: Database, system: Actor, org_id: str) -> tuple[User, User]:
    """Ann, made an admin by hand, and Dev, a member: the two of the confirm_role races."""
    ann = provision(db, system, org_id, "ann@acme.test")
    dev = provision(db, system, org_id, "dev@acme.test")
    with db.transaction() as session:
        users.change_role(session, system, org_id, ann.id, "admin")
    return ann, dev


def actions(db: Database, org_id: str) -> list[str]:
    """Return the org's audit actions in chain order."""
    with db.reading() as session:
        return list(session.scalars(select(AuditEvent.action).where(AuditEvent.org_id == org_id)
                                    .order_by(AuditEvent.seq)))


def counts(db: Database) -> dict[str, int]:
    """Count the rows that any change would add: to compare before and after a refused change."""
    with db.reading() as session:
        return {model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (User, Team, RoleGrant, SeatCharge, AuditEvent)}


def wait_for_a_lock_wait(db: Database, what: str, waiters: int = 1, *, in_statement: str = "") -> None:
    """Return once `waiters` sessions of this test's PostgreSQL database wait for a lock (threads'
    transactions queued behind the test's own), in a statement containing `in_statement` if given;
    fail naming `what` after 10 s."""
    deadline = time.monotonic() + 10
    with db.engine.connect() as conn:
        while time.monotonic() < deadline:
            if conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                 "AND datname = current_database() AND strpos(query, :part) > 0"),
                            {"part": in_statement}).scalar_one() >= waiters:
                return
            conn.rollback()  # PostgreSQL keeps one snapshot of pg_stat_activity per transaction
            time.sleep(0.02)
    raise AssertionError(f"{what} never waited for a lock")


def in_thread(work: Callable[[], object], errors: list[BaseException]) -> threading.Thread:
    """Start `work` in a thread of its own (a second transaction of a race test); what it raises is
    appended to `errors` for the test to assert on."""
    def run() -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def behind(db: Database, hold: Callable[[Session], object], change: Callable[[], None] | Sequence[Callable[[], None]],
           errors: list[BaseException], what: str) -> None:
    """Run `hold` in a transaction, flushed, not committed; start `change` in a thread and wait for it
    to wait for a lock (several changes: each started once the one before waits, so that they queue in
    that order); commit `hold`, then wait for every change to end (its error, if any, in `errors`)."""
    changes = [change] if callable(change) else list(change)
    threads = []
    with db.transaction() as session:
        hold(session)
        session.flush()
        for waiters, each in enumerate(changes, start=1):
            threads.append(in_thread(each, errors))
            wait_for_a_lock_wait(db, what, waiters)
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), f"{what} never finished"


def admins_group(db: Database, system: Actor, org_id: str, *members: str) -> str:
    """An IdP group Admins whose rule gives the org role admin, with `members`: its id."""
    with db.transaction() as session:
        group = groups.create_group(session, system, org_id, display_name="Admins", external_id="00gAdmins")
        mappings.create_mapping(session, system, org_id, group_external_id="00gAdmins", org_role="admin")
        group_membership.add_members(session, system, org_id, group.id, list(members))
        return group.id


def owners_group(db: Database, system: Actor, org_id: str) -> str:
    """An IdP group Owners whose rule gives the org role owner (the org allowing it): its id."""
    with db.transaction() as session:
        orgs.update_settings(session, system, org_id, {"idp_may_grant_owner": True})
        group = groups.create_group(session, system, org_id, display_name="Owners", external_id="00gOwners")
        mappings.create_mapping(session, system, org_id, group_external_id="00gOwners", org_role="owner")
        return group.id
