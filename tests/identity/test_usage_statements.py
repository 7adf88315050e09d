"""A usage debit (`POST /api/v1/usage`, one record): the statements it sends (each one a round trip
on PostgreSQL; issue 18 found the debit at 10% of a trivial Flask route's throughput, with 9 of them)."""

from __future__ import annotations

import threading

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from identity import keys, teams, usage
from identity.db import Database
from identity.errors import NotFound
from identity.orgs import NewOrg
from identity.usage import UsageRecord
from identity.wallet_models import Wallet
from tests.factories import wait_for_a_lock_wait
from tests.identity.test_usage_quick import QUICK, QUICK_READ
from tests.identity.test_wallet_usage import World, top_up, use, world  # noqa: F401  (world: the fixture)
from tests.identity.test_wallets import GATEWAY, key_of, post
from tests.identity.test_wallets import top_up as credit
from tests.statements import audit_at_commit, statements

# The gateway credential; the key joined to its team's wallet, the wallet locked, with the request
# id's booking if any (identity.usage.KEYED_LOCK_ONE); then the wallet written back, the ledger row and the
# usage totals (on PostgreSQL one statement of data-modifying WITHs, identity.usage.WRITE_ONE); the
# audit chain at commit.
READS = ["SELECT gateway_credentials", "SELECT wallets"]
WRITES = {"sqlite": ["UPDATE wallets", "INSERT wallet_entries", "INSERT usage_totals"],
          "postgresql": ["INSERT wallet_entries + INSERT usage_totals + UPDATE wallets"]}


def test_a_debit_statements(client: FlaskClient, db: Database, world: World) -> None:  # noqa: F811
    """The quick debit's (identity.usage_quick)."""
    top_up(client, world, 1_000)
    with statements(db) as sent:
        assert use(client, world, 100, "first").get_json()["status"] == "debited"
    assert sent == QUICK[db.dialect]


def test_a_retried_debit_reads_only(client: FlaskClient, db: Database, world: World) -> None:  # noqa: F811
    """The quick read finds the booking (on PostgreSQL: reserves no row) and hands over, having written nothing."""
    top_up(client, world, 1_000)
    first = use(client, world, 100, "first").get_json()
    with statements(db) as sent:
        assert use(client, world, 100, "first").get_json() == {**first, "status": "duplicate"}
    assert sent == [QUICK_READ[db.dialect]] + READS


def test_the_full_paths_statements(client: FlaskClient, db: Database, world: World) -> None:  # noqa: F811
    """A debit the quick path leaves to the full one (the team has a key limit): its read, then the full path's."""
    top_up(client, world, 1_000)
    assert client.put(f"{world.wallet}/limits/keys/{world.owner_key_id}", headers=world.owner,
                      json={"limit_micros": 500}).status_code in (200, 201)
    with statements(db) as sent:
        assert use(client, world, 100, "first").get_json()["status"] == "debited"
    assert sent == [QUICK_READ[db.dialect]] + READS + ["SELECT spend_limits"] + \
        WRITES[db.dialect] + audit_at_commit(db)


def test_a_debit_under_a_key_limit_statements(client: FlaskClient, db: Database, world: World) -> None:  # noqa: F811
    """The team has limits: they are read (one statement) and the key's written back by the ORM."""
    top_up(client, world, 1_000)
    assert client.put(f"{world.wallet}/limits/keys/{world.member_key_id}", headers=world.owner,
                      json={"limit_micros": 500}).status_code in (200, 201)
    with statements(db) as sent:
        assert use(client, world, 100, "second").get_json()["status"] == "debited"
    assert sent == [QUICK_READ[db.dialect], *READS, "SELECT spend_limits", *WRITES[db.dialect], "UPDATE spend_limits",
                    *audit_at_commit(db)]


@pytest.mark.postgres_only("a debit waiting on the wallet's row lock under READ COMMITTED")
def test_a_retry_queued_behind_its_first_attempt_answers_duplicate(db: Database, system: Actor,
                                                                   acme: NewOrg) -> None:
    """The lock statement reads the request id's booking in the snapshot taken before it waited for
    the wallet: the first attempt, committed meanwhile, is not in it. The wallet's newer version
    says so, and the booking is read again after the lock: `duplicate`, not a unique-index clash."""
    key_id = key_of(db, acme, system)
    credit(db, acme, 10_000)
    answers: list[usage.Outcome] = []
    failures: list[BaseException] = []

    def retry() -> None:
        try:
            answers.extend(post(db, UsageRecord(key_id, "m", 500, "r1")))
        except BaseException as error:  # noqa: BLE001  (an IntegrityError here is the failure)
            failures.append(error)

    with db.transaction() as session:
        [first] = usage.record_usage(session, GATEWAY, [UsageRecord(key_id, "m", 500, "r1")])
        session.flush()
        waiting = threading.Thread(target=retry)
        waiting.start()
        wait_for_a_lock_wait(db, "the retry")  # queued on the wallet's lock
    waiting.join()
    assert failures == []
    assert first.status == "debited"
    assert (answers[0].status, answers[0].debited_micros, answers[0].balance_micros) == ("duplicate", 500, 9_500)


def test_a_team_without_a_wallet_takes_the_two_statements(db: Database, system: Actor, acme: NewOrg) -> None:
    """A key whose team has no wallet yet is not on the keys-and-wallets join: the keys are read alone
    and the wallets locked by `lock_wallets`, which makes the missing one; an unknown key is NotFound."""
    old_key = key_of(db, acme, system)
    credit(db, acme, 1_000)
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Research")
        teams.add_team_member(session, system, acme.org.id, team.id, acme.owner.id, "admin")
        new_key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=team.id,
                                      name="k", scopes=["inference"]).id
    with pytest.raises(NotFound):
        post(db, UsageRecord(old_key, "m", 100, "r0"), UsageRecord(acme.org.id, "m", 100, "r9"))
    answers = post(db, UsageRecord(new_key, "m", 100, "r1"), UsageRecord(old_key, "m", 100, "r2"))
    assert [(a.status, a.team_id) for a in answers] == [("balance_exhausted", team.id),
                                                        ("debited", acme.default_team_id)]
    [alone] = post(db, UsageRecord(new_key, "m", 100, "r3"))
    assert (alone.status, alone.balance_micros) == ("balance_exhausted", 0)
    with db.reading() as session:
        assert sorted(session.scalars(select(Wallet.team_id))) == sorted([team.id, acme.default_team_id])
