"""A team's deletion against the changes that lock the team's groups or its wallet before its row
(identity.group_locks' order: the org, the team's groups, its wallet, the team's row FOR UPDATE).
PostgreSQL, two transactions at once under READ COMMITTED: neither order deadlocks, and what the
first commits the deletion ends."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from audit import Actor
from identity import group_membership, groups, mappings, team_deletion, teams, wallets
from identity.db import Database
from identity.group_locks import lock_group
from identity.models import RoleGrant, Team
from identity.orgs import NewOrg
from tests.factories import in_thread, provision, wait_for_a_lock_wait

pytestmark = pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")


def _research_by_rule(db: Database, system: Actor, acme: NewOrg) -> tuple[str, str]:
    """A team Research and an IdP group Eng mapped to it: (the team's id, the group's id)."""
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Research", creator=False)
        group = groups.create_group(session, system, acme.org.id, display_name="Eng", external_id="00gEng")
        mappings.create_mapping(session, system, acme.org.id, group_external_id="00gEng", team_id=team.id)
        return team.id, group.id


def test_a_teams_deletion_waits_for_a_group_change_that_grants_the_team(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """The IdP's change of Eng holds Eng's lock; Research's deletion starts and waits for Eng's lock
    before it locks Research's row; the change then adds Dev to Eng, inserting Dev's grant in
    Research (its foreign key share-locks Research's row) and commits. Had the deletion locked
    Research's row first, the insert would wait for it and it for Eng: a deadlock. The deletion then
    ends Dev's grant with the rest."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    team_id, group_id = _research_by_rule(db, system, acme)
    errors: list[BaseException] = []

    def delete() -> None:
        with db.transaction() as other:
            team_deletion.delete_team(other, system, acme.org.id, team_id)
    with db.transaction() as session:
        lock_group(session, acme.org.id, group_id)
        thread = in_thread(delete, errors)
        wait_for_a_lock_wait(db, "the team's deletion")  # for Eng's lock
        group_membership.add_members(session, system, acme.org.id, group_id, [dev.id])
        session.flush()
    thread.join(30)
    assert not thread.is_alive() and errors == [], errors
    with db.reading() as session:
        assert session.get(Team, team_id) is None
        assert list(session.scalars(select(RoleGrant.id).where(RoleGrant.team_id == team_id))) == []


def test_a_group_change_waits_for_the_teams_deletion_and_grants_no_team(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Research's deletion holds Eng's lock and Research's row (deleted), not committed; the IdP's add
    of Dev to Eng waits for Eng's lock, then finds no rule into Research: Dev is in Eng, in no
    deleted team."""
    dev = provision(db, system, acme.org.id, "dev@acme.test")
    team_id, group_id = _research_by_rule(db, system, acme)
    errors: list[BaseException] = []

    def add() -> None:
        with db.transaction() as other:
            group_membership.add_members(other, system, acme.org.id, group_id, [dev.id])
    with db.transaction() as session:
        team_deletion.delete_team(session, system, acme.org.id, team_id)
        thread = in_thread(add, errors)
        wait_for_a_lock_wait(db, "the add to the group")  # for Eng's lock
    thread.join(30)
    assert not thread.is_alive() and errors == [], errors
    with db.reading() as session:
        assert group_membership.member_ids(session, group_id) == [dev.id]
        assert list(session.scalars(select(RoleGrant.id).where(RoleGrant.team_id == team_id))) == []


def test_a_teams_deletion_locks_its_wallet_before_its_row(db: Database, system: Actor, acme: NewOrg) -> None:
    """Research's deletion waits for its rule's group Eng (held by an IdP's change); a top-up of
    Research's wallet meanwhile locks the wallet, then Research's row FOR KEY SHARE, and commits. Had
    the deletion locked Research's row before Eng and the wallet, the top-up would wait for the row
    holding the wallet, and the deletion, once Eng is free, for the wallet: a deadlock."""
    team_id, group_id = _research_by_rule(db, system, acme)
    errors: list[BaseException] = []

    def delete() -> None:
        with db.transaction() as other:
            team_deletion.delete_team(other, system, acme.org.id, team_id)

    def top_up() -> None:
        with db.transaction() as other:
            wallets.top_up(other, system, acme.org.id, team_id, 5_000_000, "inv-1")
    with db.transaction() as session:
        lock_group(session, acme.org.id, group_id)
        deletion = in_thread(delete, errors)
        wait_for_a_lock_wait(db, "the team's deletion")  # for Eng's lock
        payment = in_thread(top_up, errors)
        payment.join(5)
    for thread in (payment, deletion):
        thread.join(30)
        assert not thread.is_alive()
    assert errors == [], errors
    with db.reading() as session:
        assert session.get(Team, team_id) is None
