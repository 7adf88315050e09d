"""Second hostile review (session 19) of the quick usage debit after its ledger row became a reservation
taken in the read and its transaction the driver's own (identity.usage_quick, Database.keyed_write):
a failure after the reservation is a 503 in the API's format with nothing kept and the next request on
the pool clean; the reservation is seen by nobody; every decision is the full path's."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from audit import clock
from identity.db import Database
from identity.orgs import NewOrg
from identity.wallet_models import Wallet, WalletEntry
from identity.wallet_periods import period_at
from tests.factories import wait_for_a_lock_wait
from tests.identity.test_transient_conflicts import assert_problem_503, lock_timeout_client, sqlite_write_lock  # noqa: F401
from tests.identity.test_wallet_usage import World, top_up, use, world  # noqa: F401  (world: the fixture)


def _usage_rows(db: Database) -> list[tuple[str | None, int]]:
    with db.reading() as session:
        return [(e.request_id, e.amount_micros) for e in session.scalars(
            select(WalletEntry).where(WalletEntry.kind == "usage").order_by(WalletEntry.id))]


def _open_transactions(db: Database) -> int:
    with db.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()")).scalar_one()


@pytest.mark.postgres_only("PostgreSQL's lock_timeout (55P03) while the reservation is held")
def test_a_quick_debit_that_times_out_on_the_audit_head_after_its_reservation_is_a_503_keeping_nothing(
        db: Database, lock_timeout_client: FlaskClient, world: World, acme: NewOrg) -> None:  # noqa: F811
    top_up(lock_timeout_client, world, 10_000)
    assert use(lock_timeout_client, world, 10, "warm").status_code == 200
    with db.engine.connect() as conn:  # another writer at its commit, holding the org's audit head
        conn.execute(text("SELECT seq FROM audit_heads WHERE org_id = :org FOR UPDATE"), {"org": acme.org.id})
        answer = use(lock_timeout_client, world, 300, "timed-out")
        conn.rollback()
    assert_problem_503(answer)
    assert _usage_rows(db) == [("warm", -10)]
    assert _open_transactions(db) == 0
    again = use(lock_timeout_client, world, 300, "timed-out")
    assert again.status_code == 200 and again.get_json()["status"] == "debited", again.data
    assert again.get_json()["balance_micros"] == 10_000 - 310


@pytest.mark.postgres_only("PostgreSQL's lock_timeout (55P03) in the write, holding reservation and head")
def test_a_quick_write_that_times_out_is_a_503_keeping_nothing_and_the_head_free(
        db: Database, lock_timeout_client: FlaskClient, world: World, acme: NewOrg) -> None:  # noqa: F811
    top_up(lock_timeout_client, world, 10_000)
    with db.engine.connect() as conn:  # a migration's ALTER TABLE on the audit events
        conn.execute(text("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE"))
        answer = use(lock_timeout_client, world, 300, "write-timed-out")
        conn.rollback()
    assert_problem_503(answer)
    assert _usage_rows(db) == []
    assert _open_transactions(db) == 0
    again = use(lock_timeout_client, world, 300, "write-timed-out")
    assert again.status_code == 200 and again.get_json()["status"] == "debited", again.data


@pytest.mark.postgres_only("a server process terminated mid-transaction")
def test_a_quick_debit_whose_connection_is_killed_while_it_holds_the_reservation_leaves_the_pool_clean(
        db: Database, client: FlaskClient, world: World, acme: NewOrg) -> None:  # noqa: F811
    top_up(client, world, 10_000)
    assert use(client, world, 10, "warm").status_code == 200
    answers: list[Any] = []
    debit = threading.Thread(target=lambda: answers.append(use(client.application.test_client(), world, 300, "killed")))
    with db.engine.connect() as conn:
        conn.execute(text("SELECT seq FROM audit_heads WHERE org_id = :org FOR UPDATE"), {"org": acme.org.id})
        debit.start()
        wait_for_a_lock_wait(db, "the quick debit behind the head", in_statement="WITH locked AS MATERIALIZED")
        with db.engine.connect() as killer:
            killer.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                "datname = current_database() AND wait_event_type = 'Lock' "
                                "AND strpos(query, 'WITH locked AS MATERIALIZED') > 0"))
            killer.commit()
        debit.join(10)
        conn.rollback()
    assert answers, "the debit did not finish"
    assert _usage_rows(db) == [("warm", -10)]
    for n in range(5):  # every pooled connection taken again: none dead, none inside a transaction
        again = use(client, world, 1, f"after-{n}")
        assert again.status_code == 200 and again.get_json()["status"] == "debited", again.data


@pytest.mark.sqlite_only("SQLite's one write lock, taken by the quick debit's BEGIN IMMEDIATE")
def test_a_handed_over_quick_debit_on_sqlite_releases_the_write_lock(
        db: Database, client: FlaskClient, world: World) -> None:  # noqa: F811
    """A refusal: the quick read (inside BEGIN IMMEDIATE) hands over; the pool's rollback must end
    that transaction, or no other connection could write."""
    top_up(client, world, 100)
    assert use(client, world, 500, "too-much").status_code == 429
    other = sqlite3.connect(str(make_url(db.url).database), isolation_level=None, timeout=0.3)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert use(client, world, 50, "fits").get_json()["status"] == "debited"



@pytest.mark.parametrize("way", ["quick", "full"])
def test_a_quick_debit_that_waited_across_the_period_boundary_is_booked_in_the_new_period(
        db: Database, client: FlaskClient, world: World, acme: NewOrg, way: str) -> None:  # noqa: F811
    """The gateway posts a debit a second before the billing period ends; another writer holds the
    team's wallet (PostgreSQL) or the database (SQLite) until two seconds later. The full path
    decides at the moment it holds the wallet (identity.wallet_locks.locked_rows reads the clock after
    the lock): the period has turned, the debit is the new period's and the answer resets at the new
    period's end. The quick debit read the clock before its wait (usage_quick.quick_debit's `now`),
    found the wallet still in the old period, and booked the debit into the closed period, answering
    a `resets_at` already past and the old period's spend. (`full`: the same debit as a batch of one,
    which Flask's full path answers: it passes.)"""
    top_up(client, world, 10_000)
    limit = client.patch(world.wallet, headers=world.owner, json={"spend_limit_micros": 1_000})
    assert limit.status_code == 200, limit.data
    assert use(client, world, 900, "old-period").status_code == 200
    _, end = period_at(acme.org.created_at, clock.now())
    new_start, new_end = period_at(acme.org.created_at, end + dt.timedelta(seconds=1))
    answers: list[Any] = []
    record = {"key_id": world.member_key_id, "model": "gpt-x", "cost_micros": 50, "request_id": "across-the-boundary"}
    debit = threading.Thread(target=lambda: answers.append(client.application.test_client().post(
        "/api/v1/usage", headers=world.gateway, json=record if way == "quick" else {"usage": [record]})))
    with clock.frozen_at(end - dt.timedelta(seconds=1)):
        if db.dialect == "postgresql":
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1 FROM wallets WHERE team_id = :team FOR UPDATE"),
                             {"team": acme.default_team_id})
                debit.start()
                wait_for_a_lock_wait(db, "the debit behind the wallet")
                with clock.frozen_at(end + dt.timedelta(seconds=1)):
                    conn.rollback()
                    debit.join(10)
        else:
            held = sqlite_write_lock(db)
            held.__enter__()
            debit.start()
            time.sleep(0.5)  # the debit waits at its BEGIN IMMEDIATE (the busy timeout is 30 s)
            with clock.frozen_at(end + dt.timedelta(seconds=1)):
                held.__exit__(None, None, None)
                debit.join(10)
    assert answers and answers[0].status_code == 200, answers and answers[0].data
    body = answers[0].get_json() if way == "quick" else answers[0].get_json()["results"][0]
    assert body["resets_at"] == new_end.isoformat(), body
    assert body["remaining_micros"] == 950, body  # the new period's spend: this debit alone
    with db.reading() as session:
        entry = session.scalars(select(WalletEntry).where(WalletEntry.request_id == "across-the-boundary")).one()
        wallet = session.get_one(Wallet, acme.default_team_id)
    assert entry.period_start == new_start and wallet.period_start == new_start


@pytest.mark.postgres_only("psycopg prepares a statement at its 5th run; a lock_timeout around that run")
def test_a_lock_timeout_at_any_run_of_the_quick_statements_leaves_the_next_debit_clean(
        db: Database, lock_timeout_client: FlaskClient, world: World, acme: NewOrg) -> None:  # noqa: F811
    top_up(lock_timeout_client, world, 100_000)
    for n in range(12):
        for table in ("audit_heads", "audit_events"):  # in the read (after the reservation), in the write
            with db.engine.connect() as conn:
                conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
                assert_problem_503(use(lock_timeout_client, world, 1, f"t{n}"))
                conn.rollback()
        answer = use(lock_timeout_client, world, 1, f"t{n}")
        assert answer.status_code == 200 and answer.get_json()["status"] == "debited", (n, answer.data)
    assert _open_transactions(db) == 0
