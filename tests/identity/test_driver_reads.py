"""The key check's SELECT on the driver's cursor (identity.driver_reads) returns exactly what
SQLAlchemy's own execution returns, on both databases: the same values of the same types."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from flask.testing import FlaskClient
from sqlalchemy import event

from identity import gateway, scim_credentials, tokens
from identity.db import Database
from tests.identity.test_wallet_usage import World, top_up, use, world  # noqa: F401 (the fixture)


def test_the_driver_read_returns_what_sqlalchemy_returns(client: FlaskClient, db: Database,
                                                         world: World) -> None:  # noqa: F811
    top_up(client, world, 1_000)  # a wallet, a limit and a spend: every joined row present, no column NULL by absence
    assert client.patch(world.wallet, headers=world.owner, json={"spend_limit_micros": 600}).status_code == 200
    assert use(client, world, 100, "r1").status_code == 200
    credential = world.gateway["Authorization"].removeprefix("Bearer ")
    params = {"gw_prefix": tokens.split_prefix(credential), "key_prefix": tokens.split_prefix(world.member_key)}
    with db.engine.connect() as conn:
        expected = [tuple(row) for row in conn.execute(gateway._CHECK, params)]
        sent: list[str] = []
        event.listen(db.engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
        got = gateway._CHECK_READ.rows(conn, **params)
        batches = list(gateway._CHECK_READ.batches(conn, 1, **params))  # in the transaction begun above
    assert len(expected) == 2  # the member's org grant and team grant
    assert [tuple(row) for row in got] == expected
    assert batches == [[row] for row in expected]  # one row per batch, plain tuples, processed alike
    assert [[type(value) for value in row] for row in got] == [[type(value) for value in row] for row in expected]
    first = got[0]
    assert first.org_created.tzinfo is dt.UTC and first.status == "active" and first.spend_limit_micros == 600
    assert len(sent) == 2 and all("gateway_credentials" in s for s in sent)  # listeners on the engine see both


@pytest.mark.postgres_only("a connection the server drops; SQLite has no server")
def test_a_connection_the_server_dropped_during_a_driver_read_is_not_handed_out_again(db: Database) -> None:
    one = Database(db.url, pool_size=1, max_overflow=0)  # the next checkout gets the same pooled connection
    try:
        with one.engine.connect() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with db.engine.connect() as other:
                other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid or 0)})")
            with pytest.raises(psycopg.OperationalError):
                scim_credentials._SCIM_TOKEN_BY_PREFIX.rows(conn, prefix="scim_nobody")
            assert conn.invalidated
        with one.engine.connect() as conn:  # at once: no pre-ping would catch a dead one yet
            assert scim_credentials._SCIM_TOKEN_BY_PREFIX.rows(conn, prefix="scim_nobody") == []
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
    finally:
        one.dispose()
