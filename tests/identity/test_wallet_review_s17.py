"""Hostile review of the team wallets (DESIGN.md 3.8), session 17: races of a debit or a top-up with
the changes it queues behind. Each test asserts the rule and failed on the code it was written against."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from audit import Actor
from identity import keys, org_lifecycle, team_deletion, teams, usage, wallet_controls, wallets
from identity.billing import check_org
from identity.db import Database
from identity.errors import Conflict, NotFound
from identity.orgs import NewOrg
from identity.usage import UsageRecord
from identity.wallet_models import SpendLimit, Wallet, WalletEntry
from tests.factories import wait_for_a_lock_wait
from tests.identity.test_wallets import key_of, owner, post
from tests.identity.test_wallets import top_up as credit


def _key_spend(db: Database, *key_ids: str) -> int:
    with db.reading() as session:
        return -int(session.scalar(select(func.coalesce(func.sum(WalletEntry.amount_micros), 0)).where(
            WalletEntry.key_id.in_(key_ids))) or 0)


def _behind_team_deletion(db: Database, system: Actor, acme: NewOrg, team_id: str, what: str,
                          work: Callable[[], object]) -> list[BaseException]:
    """Run `work` in a thread while the team's deletion holds its locks, until it waits for them; then
    commit the deletion and return what `work` raised."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001
            failures.append(error)

    with db.transaction() as session:
        team_deletion.delete_team(session, system, acme.org.id, team_id)
        session.flush()
        waiting = threading.Thread(target=run)
        waiting.start()
        wait_for_a_lock_wait(db, what)
    waiting.join()
    return failures


@pytest.mark.postgres_only("a debit waiting on the wallet's row lock under READ COMMITTED")
def test_a_debit_queued_behind_a_rotation_is_held_to_the_keys_limit(db: Database, system: Actor,
                                                                     acme: NewOrg) -> None:
    """A key with a limit of 100 has spent 90; its rotation (which moves the limit to the successor under
    the wallet's lock) is in flight when a debit of 50 on the old key arrives. The debit reads the key's
    `rotated_to` in the snapshot taken before it waited for the wallet, so it looks for the limit under
    the old key's id, finds none, and debits 50: the limit shared by the key and its successor is
    passed by 40 (DESIGN 3.8: a debit that would pass a limit is refused)."""
    key_id = key_of(db, acme, system)
    credit(db, acme, 10_000)
    with db.transaction() as session:
        wallet_controls.set_subject_limit(session, owner(acme), acme.org.id, acme.default_team_id, "key", key_id, 100)
    assert post(db, UsageRecord(key_id, "m", 90, "r0"))[0].status == "debited"
    answers: list[usage.Outcome] = []
    with db.transaction() as session:
        successor = keys.rotate_api_key(session, owner(acme), acme.org.id, key_id).id
        session.flush()
        debit = threading.Thread(target=lambda: answers.extend(post(db, UsageRecord(key_id, "m", 50, "r1"))))
        debit.start()
        wait_for_a_lock_wait(db, "the debit")  # queued on the wallet's lock, which the rotation holds
    debit.join()
    with db.reading() as session:
        limit = session.scalars(select(SpendLimit)).one()
    assert limit.subject_id == successor
    assert (answers[0].status, answers[0].limit_scope) == ("spending_limit_reached", "key")
    assert _key_spend(db, key_id, successor) <= limit.limit_micros


@pytest.mark.postgres_only("two transactions at once under READ COMMITTED")
def test_two_top_ups_with_one_reference_at_once_credit_once_and_the_second_is_a_conflict(
        db: Database, acme: NewOrg) -> None:
    """Two owners (or a retried payment webhook) credit the same payment at once: the reference check runs
    before the wallet's lock, so both pass it; the second then clashes on the ledger's unique request id
    and raises IntegrityError (a 500 over HTTP) instead of the documented 409 naming `reference`."""
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with db.transaction() as session:
                wallets.top_up(session, owner(acme), acme.org.id, acme.default_team_id, 500, "INV-1")
        except BaseException as error:  # noqa: BLE001  (what it raised is the finding)
            failures.append(error)

    with db.transaction() as session:
        wallets.top_up(session, owner(acme), acme.org.id, acme.default_team_id, 500, "INV-1")
        session.flush()
        waiting = threading.Thread(target=second)
        waiting.start()
        wait_for_a_lock_wait(db, "the second top-up")
    waiting.join()
    assert len(failures) == 1 and isinstance(failures[0], Conflict), failures
    with db.reading() as session:
        assert check_org(session, acme.org.id) == []


@pytest.mark.postgres_only("a debit waiting on the wallet's row lock under READ COMMITTED")
def test_a_debit_queued_behind_its_teams_deletion_does_not_move_the_deleted_wallet(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """A team is deleted (its keys revoked and unset from it, `team.deleted` records the wallet's
    balance, under the wallet's lock) while a debit of one of its keys waits for that lock. The debit
    reads the key's team in the snapshot taken before the wait and debits the deleted team's wallet:
    the balance `team.deleted` recorded is no longer the wallet's, and the same record a moment later
    is a 404 (its team was deleted). The debit must be refused as the later one is."""
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Research")
        teams.add_team_member(session, system, acme.org.id, team.id, acme.owner.id, "admin")
        key_id = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=team.id,
                                     name="k", scopes=["inference"]).id
    with db.transaction() as session:
        wallets.top_up(session, owner(acme), acme.org.id, team.id, 1_000, "INV-R")
    answers: list[usage.Outcome] = []
    failures = _behind_team_deletion(db, system, acme, team.id, "the debit",
                                     lambda: answers.extend(post(db, UsageRecord(key_id, "m", 400, "late"))))
    with db.reading() as session:
        balance = session.get_one(Wallet, team.id).balance_micros
    assert balance == 1_000, answers
    assert len(failures) == 1 and isinstance(failures[0], NotFound)


def test_an_owner_may_stop_a_team_that_has_not_spent_yet_with_a_limit_equal_to_its_spend(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """identity.wallet_controls: "a caller who meant 'stop now' sets the limit to the spend itself". At the
    start of a period the spend is 0, and a limit of 0 is refused as not positive: an owner cannot stop
    a team (or a key) before it spends, only after. The limit equal to the spend must be accepted and
    refuse the next debit."""
    key_id = key_of(db, acme, system)
    credit(db, acme, 10_000)
    with db.transaction() as session:
        wallet_controls.configure_wallet(session, owner(acme), acme.org.id, acme.default_team_id, spend_limit=0)
    refused = post(db, UsageRecord(key_id, "m", 1, "r0"))[0]
    assert (refused.status, refused.limit_scope) == ("spending_limit_reached", "team")


def test_no_usage_is_debited_to_a_deleted_org(db: Database, system: Actor, acme: NewOrg) -> None:
    """Deleting an org revokes its keys but leaves them on their teams, and a debit never looks at the
    org: the gateway's usage for a key of the deleted org still debits its wallet, writes the ledger and
    audits `wallet.usage_recorded` into the deleted org's chain, for ever. A key of a deleted team is a
    404 (its team was deleted); a key of a deleted org must be refused the same way, nothing written."""
    key_id = key_of(db, acme, system)
    credit(db, acme, 10_000)
    with db.transaction() as session:
        org_lifecycle.delete_org(session, system, acme.org.id, confirm=acme.org.slug)
    before = _key_spend(db, key_id)
    with pytest.raises(NotFound):
        post(db, UsageRecord(key_id, "m", 500, "after-deletion"))
    assert _key_spend(db, key_id) == before


def test_a_request_id_retried_with_another_teams_key_answers_the_team_it_debited(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """A retried request id "answers the first outcome" (identity.usage, DESIGN 3.8). Retried with a key
    of another team (a gateway that re-resolved the caller's key), the answer is `duplicate` with the
    first debit's amount but the retry's team and that team's balance: it says 400 were debited from a
    team whose wallet never moved. The duplicate must name the team the first attempt debited."""
    first_key = key_of(db, acme, system)
    credit(db, acme, 10_000)
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Research")
        teams.add_team_member(session, system, acme.org.id, team.id, acme.owner.id, "admin")
        other_key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=team.id,
                                        name="k", scopes=["inference"]).id
    with db.transaction() as session:
        wallets.top_up(session, owner(acme), acme.org.id, team.id, 5_000, "INV-R")
    [first] = post(db, UsageRecord(first_key, "m", 400, "r1"))
    [again] = post(db, UsageRecord(other_key, "m", 400, "r1"))
    assert again.status == "duplicate"
    assert (again.team_id, again.debited_micros) == (first.team_id, first.debited_micros)


@pytest.mark.postgres_only("a top-up waiting on the wallet's row lock under READ COMMITTED")
def test_a_top_up_queued_behind_its_teams_deletion_is_not_credited_to_the_deleted_team(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """An owner tops up a team while another owner deletes it: the top-up finds the team (get_team, before
    the wallet's lock), waits for the lock the deletion holds (close_team_wallet), and then credits the
    deleted team's wallet: 201 for a payment no key can ever spend (the team's keys are revoked), after
    `team.deleted` recorded the balance. The top-up must be refused as a top-up a moment later is (404)."""
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Research")
    with db.transaction() as session:
        wallets.top_up(session, owner(acme), acme.org.id, team.id, 1_000, "INV-R")

    def pay() -> None:
        with db.transaction() as session:
            wallets.top_up(session, owner(acme), acme.org.id, team.id, 5_000, "INV-LATE")

    failures = _behind_team_deletion(db, system, acme, team.id, "the top-up", pay)
    with db.reading() as session:
        balance = session.get_one(Wallet, team.id).balance_micros
    assert len(failures) == 1 and isinstance(failures[0], NotFound), failures
    assert balance == 1_000
