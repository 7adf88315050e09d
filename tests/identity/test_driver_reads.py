"""The key check's SELECT on the driver's cursor (identity.driver_reads) returns exactly what
SQLAlchemy's own execution returns, on both databases: the same values of the same types."""

from __future__ import annotations

import datetime as dt

from flask.testing import FlaskClient
from sqlalchemy import event

from identity import gateway, tokens
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
