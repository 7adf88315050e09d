"""A usage debit (`POST /api/v1/usage`, one record): the statements it sends (each one a round trip
on PostgreSQL; issue 18 found the debit at 10% of a trivial Flask route's throughput, with 9 of them)."""

from __future__ import annotations

from flask.testing import FlaskClient

from identity.db import Database
from tests.identity.test_wallet_usage import World, top_up, use, world  # noqa: F401  (world: the fixture)
from tests.statements import audit_at_commit, statements

# The gateway credential; the key joined to its team's wallet, the wallet locked (identity.usage.
# KEYED_LOCK); the request ids already booked; then the wallet written back, the ledger row and the
# usage totals (on PostgreSQL one statement of data-modifying WITHs, identity.usage.WRITE_ONE); the
# audit chain at commit.
READS = ["SELECT gateway_credentials", "SELECT wallets", "SELECT wallet_entries"]
WRITES = {"sqlite": ["UPDATE wallets", "INSERT wallet_entries", "INSERT usage_totals"],
          "postgresql": ["INSERT wallet_entries + INSERT usage_totals + UPDATE wallets"]}


def test_a_debit_statements(client: FlaskClient, db: Database, world: World) -> None:  # noqa: F811
    top_up(client, world, 1_000)
    with statements(db) as sent:
        assert use(client, world, 100, "first").get_json()["status"] == "debited"
    assert sent == READS + WRITES[db.dialect] + audit_at_commit(db)


def test_a_retried_debit_reads_only(client: FlaskClient, db: Database, world: World) -> None:  # noqa: F811
    top_up(client, world, 1_000)
    first = use(client, world, 100, "first").get_json()
    with statements(db) as sent:
        assert use(client, world, 100, "first").get_json() == {**first, "status": "duplicate"}
    assert sent == READS


def test_a_debit_under_a_key_limit_statements(client: FlaskClient, db: Database, world: World) -> None:  # noqa: F811
    """The team has limits: they are read (one statement) and the key's written back by the ORM."""
    top_up(client, world, 1_000)
    assert client.put(f"{world.wallet}/limits/keys/{world.member_key_id}", headers=world.owner,
                      json={"limit_micros": 500}).status_code in (200, 201)
    with statements(db) as sent:
        assert use(client, world, 100, "second").get_json()["status"] == "debited"
    assert sent == [*READS, "SELECT spend_limits", *WRITES[db.dialect], "UPDATE spend_limits",
                    *audit_at_commit(db)]
