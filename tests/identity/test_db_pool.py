"""Pooled PostgreSQL connections: pinged when they sat idle, not on every checkout."""

from __future__ import annotations

import pytest
from sqlalchemy import text

import identity.db
from identity.db import Database


def _backend_pid(database: Database) -> int:
    with database.reading() as session:
        return int(session.scalar(text("SELECT pg_backend_pid()")))


@pytest.mark.postgres_only
def test_a_connection_killed_while_idle_is_replaced_before_use(db: Database, monkeypatch) -> None:
    first = _backend_pid(db)  # the pool now holds this connection
    other = Database(db.url)
    try:
        with other.transaction() as session:
            assert session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}) is True
    finally:
        other.dispose()
    monkeypatch.setattr(identity.db, "IDLE_PING_SECONDS", 0.0)  # everything counts as idle now
    second = _backend_pid(db)  # no error: the ping found the dead connection and the pool replaced it
    assert second != first


@pytest.mark.postgres_only
def test_a_connection_in_steady_use_is_not_pinged(db: Database, monkeypatch) -> None:
    _backend_pid(db)
    pings: list[object] = []
    original = db.engine.dialect.do_ping
    monkeypatch.setattr(db.engine.dialect, "do_ping", lambda conn: pings.append(conn) or original(conn))
    for _ in range(5):
        _backend_pid(db)
    assert pings == []
    monkeypatch.setattr(identity.db, "IDLE_PING_SECONDS", 0.0)
    _backend_pid(db)
    assert len(pings) == 1
