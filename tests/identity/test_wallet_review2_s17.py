"""Hostile review (second) of the wallet locks of session 17: the team's row locked after the wallet's.
Each test asserts the rule and failed on the code it was written against."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from audit import Actor
from identity import team_deletion, teams, wallets
from identity.db import Database
from identity.errors import NotFound
from identity.models import RoleGrant, Team
from identity.orgs import NewOrg
from identity.wallet_models import Wallet, WalletEntry
from tests.factories import wait_for_a_lock_wait
from tests.identity.test_wallets import owner


@pytest.mark.postgres_only("two write transactions at once under READ COMMITTED")
def test_a_top_up_during_the_deletion_of_a_team_without_a_wallet_yet_credits_no_deleted_team(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """A team that never had a wallet is being deleted: `close_team_wallet` finds no wallet and takes no
    lock, so nothing stops a top-up that arrives before the team's row is deleted: it makes the wallet,
    locks it and the team's row (not yet deleted), credits 1,000 and commits; the deletion then deletes
    the team, its `team.deleted` event records a balance of 0, and the payment sits in a deleted
    team's wallet (identity/wallets.py says no credit reaches a deleted team's wallet)."""
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Research")
        teams.add_team_member(session, system, acme.org.id, team.id, acme.owner.id, "admin")
    with db.reading() as session:
        assert session.get(Wallet, team.id) is None  # a team's wallet is made on its first lock
    failures: list[BaseException] = []

    def delete() -> None:
        try:
            with db.transaction() as session:
                team_deletion.delete_team(session, system, acme.org.id, team.id)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)

    def top_up() -> None:
        try:
            with db.transaction() as session:
                wallets.top_up(session, owner(acme), acme.org.id, team.id, 1_000, "INV-LATE")
        except BaseException as error:  # noqa: BLE001 - what it raised is the finding
            failures.append(error)

    with db.transaction() as session:
        # Holds the team's grant: the deletion runs past `close_team_wallet` and waits here, before
        # it deletes the team's row.
        session.execute(select(RoleGrant.id).where(RoleGrant.team_id == team.id).with_for_update()).all()
        deleter = threading.Thread(target=delete)
        deleter.start()
        wait_for_a_lock_wait(db, "the deletion")  # for the team's grants, after close_team_wallet
        topper = threading.Thread(target=top_up)
        topper.start()
        wait_for_a_lock_wait(db, "the top-up", waiters=2)  # behind the deletion (unserialised: it fails)
    deleter.join(30)
    topper.join(30)
    assert not deleter.is_alive() and not topper.is_alive()
    with db.reading() as session:
        assert session.get(Team, team.id) is None
        credited = list(session.scalars(select(WalletEntry.amount_micros).where(WalletEntry.team_id == team.id)))
        wallet = session.get(Wallet, team.id)
    assert [type(error).__name__ for error in failures] == ["NotFound"], (failures, credited)
    assert isinstance(failures[0], NotFound)
    assert credited == [] and (wallet is None or wallet.balance_micros == 0)
