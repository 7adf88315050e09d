"""The team wallets' edges (DESIGN.md 3.8), found by a review after the Core-row debit (WalletRow, save_wallets).

Each test failed on the code it was written against and names the rule it holds to: every refusal
of a batch remembered, long top-up references, the auto top-up of a team already below its
threshold, `remaining_micros` under key limits, a debit after an ORM credit in one transaction, and
a first key limit set while a debit waits for the wallet's lock. Both databases unless marked.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from audit import Actor
from identity import usage, wallet_controls, wallets
from identity.billing import check_org
from identity.db import Database
from identity.orgs import NewOrg
from identity.usage import UsageRecord
from identity.wallet_models import SpendLimit, TopUpRequest, WalletEntry
from tests.factories import wait_for_a_lock_wait
from tests.identity.test_wallet_usage import World, rows, top_up, use, verify, world  # noqa: F401 (fixture)
from tests.identity.test_wallets import GATEWAY, key_of, owner, post
from tests.identity.test_wallets import top_up as credit
from tests.identity.test_wallets import wallet as wallet_of


def check(client: FlaskClient, world: World, secret: str) -> dict[str, Any]:  # noqa: F811
    response = client.post("/api/v1/keys/verify", json={"key": secret}, headers=world.gateway)
    assert response.status_code == 200, response.data
    return response.get_json()


def test_a_batch_remembers_every_keys_refusal_for_the_key_check(client: FlaskClient, world: World) -> None:  # noqa: F811
    """Two keys of a team each pass their limit in one batch: both are refused, so the key check must
    refuse both (as it does when the same records come in two calls). Only the last is remembered."""
    top_up(client, world, 10_000)
    for key_id in (world.owner_key_id, world.member_key_id):
        limit = client.put(f"{world.wallet}/limits/keys/{key_id}", headers=world.owner, json={"limit_micros": 10})
        assert limit.status_code == 200, limit.data
    batch = client.post("/api/v1/usage", headers=world.gateway, json={"usage": [
        {"key_id": world.owner_key_id, "model": "m", "cost_micros": 20, "request_id": "a"},
        {"key_id": world.member_key_id, "model": "m", "cost_micros": 20, "request_id": "b"}]})
    assert batch.status_code == 429
    assert [(r["status"], r["scope"]) for r in batch.get_json()["results"]] == [("spending_limit_reached", "key")] * 2
    assert verify(client, world)["reason"] == "spending_limit_reached"
    owner_secret = world.owner["Authorization"].split()[1]
    assert check(client, world, owner_secret).get("reason") == "spending_limit_reached"  # valid: forgotten


def test_a_batch_remembers_the_balance_refusal_beside_a_keys(client: FlaskClient, world: World) -> None:  # noqa: F811
    """A batch whose first record passes the balance and whose second passes a key's limit: the team's
    `balance_exhausted` must be remembered for every key (as two calls would), not overwritten."""
    top_up(client, world, 1_000)
    limit = client.put(f"{world.wallet}/limits/keys/{world.owner_key_id}", headers=world.owner,
                       json={"limit_micros": 10})
    assert limit.status_code == 200, limit.data
    batch = client.post("/api/v1/usage", headers=world.gateway, json={"usage": [
        {"key_id": world.member_key_id, "model": "m", "cost_micros": 5_000, "request_id": "big"},
        {"key_id": world.owner_key_id, "model": "m", "cost_micros": 20, "request_id": "small"}]})
    assert [r["status"] for r in batch.get_json()["results"]] == ["balance_exhausted", "spending_limit_reached"]
    assert verify(client, world).get("reason") == "balance_exhausted"  # the member's key: valid, forgotten
    assert client.get(world.wallet, headers=world.owner).get_json()["refusal"] == "balance_exhausted"


def test_two_top_ups_with_long_distinct_references_both_credit(client: FlaskClient, world: World) -> None:  # noqa: F811
    """The top-up's idempotency key is cut to 200 characters after the team id: two payments whose
    references (each within the 200 allowed) differ only past that cut are taken for one."""
    common = "invoice 2026-12 acme corporation, purchase order " + "0" * 140
    for last in ("1", "2"):
        response = client.post(f"{world.wallet}/top-ups", headers=world.owner,
                               json={"amount_micros": 100, "reference": common + last})
        assert response.status_code == 201, response.data
    assert client.get(world.wallet, headers=world.owner).get_json()["balance_micros"] == 200


@pytest.mark.parametrize("route", ["usage", "top-up"])
def test_a_lone_surrogate_is_a_400_and_writes_nothing(client: FlaskClient, db: Database, route: str,
                                                      world: World) -> None:  # noqa: F811
    """Bad input is 400 naming the problem, nothing written (identity/web/api/usage.py): a string with a
    lone surrogate (valid JSON, not encodable as UTF-8) reaches the driver and is a 500 instead."""
    top_up(client, world, 1_000)
    before = rows(db)
    headers = {**(world.gateway if route == "usage" else world.owner), "Content-Type": "application/json"}
    if route == "usage":
        path = "/api/v1/usage"
        body = json.dumps({"key_id": world.member_key_id, "model": "gpt-\ud800", "cost_micros": 5,
                           "request_id": "s1"})
    else:
        path, body = f"{world.wallet}/top-ups", json.dumps({"amount_micros": 5, "reference": "payment \udc00"})
    response = client.post(path, headers=headers, data=body)
    assert response.status_code == 400, response.data
    assert rows(db) == before


def test_auto_top_up_is_requested_when_the_balance_is_already_below_its_threshold(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """A team whose balance is below its auto top-up threshold (a new team at 0) has every debit refused,
    and a request is raised only after a debit that succeeded: the auto top-up never asks for money."""
    key_id = key_of(db, acme, system)
    with db.transaction() as session:
        wallet_controls.configure_wallet(session, owner(acme), acme.org.id, acme.default_team_id,
                                         auto_topup={"threshold_micros": 500, "amount_micros": 2_000})
    for n in range(3):
        assert post(db, UsageRecord(key_id, "m", 100, f"r{n}"))[0].status == "balance_exhausted"
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(TopUpRequest)) == 1


def test_a_debits_remaining_counts_the_keys_limit(db: Database, system: Actor, acme: NewOrg) -> None:
    """`remaining_micros` is what the key may still spend: a key at its own limit may spend nothing more,
    yet the answer said None (no limit), looking at the team's only."""
    key_id = key_of(db, acme, system)
    credit(db, acme, 10_000)
    with db.transaction() as session:
        wallet_controls.set_subject_limit(session, owner(acme), acme.org.id, acme.default_team_id, "key", key_id, 100)
    [done] = post(db, UsageRecord(key_id, "m", 100, "a"))
    assert done.status == "debited"
    assert done.remaining_micros == 0


def test_a_debit_after_a_credit_in_the_same_transaction_is_not_lost(db: Database, system: Actor,
                                                                   acme: NewOrg) -> None:
    """`record_usage` reads the wallet with a Core statement that does not flush the session, and writes
    it back with a Core UPDATE; a `Wallet` changed through the ORM earlier in the transaction (here a
    top-up) is read stale and then flushed at commit over the debit. Exact before HEAD (ORM lock with
    autoflush and populate_existing); no HTTP route composes the two today."""
    key_id = key_of(db, acme, system)
    credit(db, acme, 1_000)
    with db.transaction() as session:
        wallets.top_up(session, owner(acme), acme.org.id, acme.default_team_id, 500, "second payment")
        [done] = usage.record_usage(session, GATEWAY, [UsageRecord(key_id, "m", 200, "r1")])
    assert done.status == "debited" and done.balance_micros == 1_300
    assert wallet_of(db, acme.default_team_id).balance_micros == 1_300
    with db.reading() as session:
        assert check_org(session, acme.org.id) == []


@pytest.mark.postgres_only("a debit waiting on the wallet's row lock under READ COMMITTED")
def test_a_first_key_limit_set_while_a_debit_waits_is_not_overrun(db: Database, system: Actor,
                                                                   acme: NewOrg) -> None:
    """The lock statement reads "has the team any key or member limit" (EXISTS) in the snapshot taken
    before it waited for the row lock: a debit queued behind the transaction that sets the team's first
    limit sees none, skips the limits and debits 500 through a limit of 100."""
    key_id = key_of(db, acme, system)
    credit(db, acme, 10_000)
    answers: list[usage.Outcome] = []
    with db.transaction() as session:
        wallet_controls.set_subject_limit(session, owner(acme), acme.org.id, acme.default_team_id, "key", key_id, 100)
        session.flush()
        debit = threading.Thread(target=lambda: answers.extend(post(db, UsageRecord(key_id, "m", 500, "r1"))))
        debit.start()
        wait_for_a_lock_wait(db, "the debit")  # queued on the wallet's lock
    debit.join()
    with db.reading() as session:
        spent = -int(session.scalar(select(func.coalesce(func.sum(WalletEntry.amount_micros), 0)).where(
            WalletEntry.key_id == key_id)) or 0)
        limit = session.scalars(select(SpendLimit)).one()
    assert (answers[0].status, answers[0].limit_scope) == ("spending_limit_reached", "key")
    assert spent <= limit.limit_micros

