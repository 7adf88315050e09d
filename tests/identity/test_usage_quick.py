"""The quick debit (identity.usage_quick, answered in front of Flask by identity.web.usage_front): a
one-record usage debit in two statements on PostgreSQL. It must write and answer exactly what the full
path (identity.usage.record_usage) does, leave everything else to it having written nothing, and lock
the wallet before the audit head (every other writer takes the head last)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select, text

from audit import Actor
from audit.models import AuditEvent
from identity import usage, wallets
from identity.db import Database
from identity.orgs import NewOrg
from identity.usage import UsageRecord
from identity.wallet_models import UsageTotal, WalletEntry
from identity.web.cli import main
from tests.factories import wait_for_a_lock_wait
from tests.identity.test_wallet_usage import World, top_up, use, world  # noqa: F401  (world: the fixture)
from tests.identity.test_wallets import GATEWAY, owner
from tests.statements import statements

# The read (the credential, the key, its wallet locked, on PostgreSQL the ledger row reserved and then
# the org's audit head locked; on SQLite the request id's booking), then the write: one statement on
# PostgreSQL (the reserved row set whole), one per row on SQLite.
QUICK_READ = {"postgresql": "SELECT gateway_credentials + INSERT wallet_entries + SELECT locked",
              "sqlite": "SELECT gateway_credentials + SELECT locked"}
QUICK = {"postgresql": [QUICK_READ["postgresql"], "INSERT usage_totals + UPDATE wallets + UPDATE audit_heads"
                                                  " + INSERT audit_events + UPDATE wallet_entries"],
         "sqlite": [QUICK_READ["sqlite"], "INSERT wallet_entries", "INSERT usage_totals", "UPDATE wallets",
                    "UPDATE audit_heads", "INSERT audit_events"]}
RECORD = {"model": "gpt-x", "cost_micros": 250}


def _written(db: Database, request_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ledger row and the usage event of `request_id`, without what differs between any two debits."""
    with db.reading() as session:
        entry = session.scalars(select(WalletEntry).where(WalletEntry.request_id == request_id)).one()
        event = next(e for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "wallet.usage_recorded"))
                     if e.changes["request_ids"] == [request_id])
    row = {c: getattr(entry, c) for c in WalletEntry.__table__.columns.keys() if c not in ("id", "request_id",
                                                                                          "created_at")}
    logged = {c: getattr(event, c) for c in AuditEvent.__table__.columns.keys()
              if c not in ("id", "seq", "occurred_at", "prev_hash", "hash", "request_id", "changes")}
    changes = {k: v for k, v in event.changes.items() if k not in ("request_ids", "teams")}
    return row, {**logged, "changes": changes, "teams": {t: v["count"] for t, v in event.changes["teams"].items()},
                 "request_id_given": bool(event.request_id)}


def test_the_quick_debit_writes_what_the_full_path_writes(client: FlaskClient, db: Database, world: World,  # noqa: F811
                                                          runner: CliRunner) -> None:
    top_up(client, world, 10_000)
    with statements(db) as quick:
        single = client.post("/api/v1/usage", headers={**world.gateway, "User-Agent": "gw/1"},
                             json={"key_id": world.member_key_id, **RECORD, "request_id": "q1"})
    with statements(db) as full:
        batched = client.post("/api/v1/usage", headers={**world.gateway, "User-Agent": "gw/1"}, json={"usage": [
            {"key_id": world.member_key_id, **RECORD, "request_id": "q2"}]})
    assert single.status_code == batched.status_code == 200
    assert quick == QUICK[db.dialect]
    assert len(full) > 2
    assert single.get_json()["balance_micros"] == 9_750 and batched.get_json()["results"][0]["balance_micros"] == 9_500
    assert _written(db, "q1") == _written(db, "q2")
    with db.reading() as session:
        totals = {(t.subject_type, t.spend_micros, t.requests) for t in session.scalars(select(UsageTotal))}
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "wallet.usage_recorded")
                                .order_by(AuditEvent.seq)).first()
    assert totals == {("key", 500, 2), ("member", 500, 2)}
    assert event is not None and event.request_id == single.headers["X-Request-Id"] and event.user_agent == "gw/1"
    assert event.changes["teams"] == {single.get_json()["team_id"]: {"count": 1, "debited_micros": 250,
                                                                     "balance_micros": 9_750}}
    for command in (["audit", "verify", "--org", "acme"], ["billing", "check", "--org", "acme"]):
        result = runner.invoke(main, command)
        assert result.exit_code == 0, result.output


def test_the_quick_answer_is_the_full_paths_answer(client: FlaskClient, db: Database, world: World) -> None:  # noqa: F811
    """Body and headers alike: a debit the full path answers (the team has a member limit) beside a quick one."""
    top_up(client, world, 10_000)
    quick = use(client, world, 100, "a1")
    assert client.put(f"{world.wallet}/limits/members/{world.member_id}", headers=world.owner,
                      json={"limit_micros": 5_000}).status_code in (200, 201)
    full = use(client, world, 100, "a2")
    assert quick.status_code == full.status_code == 200
    assert quick.get_json() == {**full.get_json(), "request_id": "a1", "balance_micros": 9_900,
                                "remaining_micros": 9_900}
    assert full.get_json()["remaining_micros"] == 4_800  # the member's spend this period counts
    assert sorted(quick.headers.keys()) == sorted(full.headers.keys())
    assert quick.headers["Content-Type"] == full.headers["Content-Type"]


@pytest.mark.postgres_only("a debit waiting on the wallet's row lock under READ COMMITTED")
def test_a_request_id_booked_while_the_quick_debit_waited_answers_duplicate(
        client: FlaskClient, db: Database, world: World, acme: NewOrg) -> None:  # noqa: F811
    """The quick read's snapshot, taken before it waited for the wallet, has no booking; the write's
    ON CONFLICT finds it: nothing written, and the full path answers `duplicate` with the first debit."""
    top_up(client, world, 10_000)
    answers: list[Any] = []
    retry = threading.Thread(target=lambda: answers.append(use(client.application.test_client(), world, 300, "r1")))
    with db.transaction() as session:
        [first] = usage.record_usage(session, GATEWAY, [UsageRecord(world.member_key_id, "gpt-x", 300, "r1")])
        retry.start()
        wait_for_a_lock_wait(db, "the retried debit")
    retry.join()
    assert first.status == "debited"
    assert answers[0].status_code == 200, answers[0].data
    assert (answers[0].get_json()["status"], answers[0].get_json()["debited_micros"]) == ("duplicate", 300)
    with db.reading() as session:
        assert len(list(session.scalars(select(WalletEntry).where(WalletEntry.kind == "usage")))) == 1


@pytest.mark.postgres_only("lock order between transactions, under READ COMMITTED")
def test_the_quick_debit_waits_for_the_wallet_before_it_holds_the_audit_head(
        client: FlaskClient, db: Database, world: World, acme: NewOrg) -> None:  # noqa: F811
    """A top-up holds the wallet, and takes the org's audit head at its commit (as every writer does,
    last). A quick debit queued on the wallet must not hold the head meanwhile: that would deadlock (503)."""
    top_up(client, world, 10_000)
    answers: list[Any] = []
    debit = threading.Thread(target=lambda: answers.append(use(client.application.test_client(), world, 300, "d1")))
    with db.transaction() as session:
        wallets.top_up(session, owner(acme), acme.org.id, acme.default_team_id, 1_000, "held")
        debit.start()
        wait_for_a_lock_wait(db, "the quick debit")
    debit.join()
    assert answers[0].status_code == 200, answers[0].data
    assert answers[0].get_json()["balance_micros"] == 10_700


@pytest.mark.postgres_only("a lock held by another transaction")
def test_a_wrong_secret_behind_a_real_prefix_locks_nothing(client: FlaskClient, db: Database, world: World,  # noqa: F811
                                                          acme: NewOrg, system: Actor) -> None:
    """The quick read matches the credential by its prefix and the hash of what was presented: a wrong
    secret finds no row, so it neither waits for nor takes the wallet's lock; the full path answers 401."""
    top_up(client, world, 10_000)
    real = world.gateway["Authorization"]
    forged = {"Authorization": real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")}
    answers: list[Any] = []
    with db.transaction() as session:  # the wallet locked by a debit of this transaction, not committed
        usage.record_usage(session, GATEWAY, [UsageRecord(world.member_key_id, "gpt-x", 1, "held")])
        attempt = threading.Thread(target=lambda: answers.append(client.application.test_client().post(
            "/api/v1/usage", headers=forged,
            json={"key_id": world.member_key_id, **RECORD, "request_id": "forged"})))
        attempt.start()
        attempt.join(timeout=10)
        assert not attempt.is_alive(), "the forged debit waited for the wallet's lock"
    assert answers[0].status_code == 401


@pytest.mark.postgres_only("PostgreSQL's sessions and their transactions")
def test_a_handed_over_debit_leaves_no_transaction_open(client: FlaskClient, db: Database, world: World) -> None:  # noqa: F811
    """A refusal: the quick read reserved the ledger row, then handed over (its transaction left to the
    pool, which rolls it back); the full path refused. No row stays, and no pooled connection is left
    inside a transaction (the next request on it would run in that transaction)."""
    top_up(client, world, 100)
    before = {e.request_id for e in _entries(db)}
    assert use(client, world, 500, "too-much").status_code == 429
    assert {e.request_id for e in _entries(db)} == before
    with db.engine.connect() as conn:
        open_ones = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND state LIKE 'idle in transaction%'")).scalar_one()
    assert open_ones == 0
    assert use(client, world, 50, "fits").get_json()["status"] == "debited"


def _entries(db: Database) -> list[WalletEntry]:
    with db.reading() as session:
        return list(session.scalars(select(WalletEntry)))
