"""Migration 0020 on a populated database: the usage totals are filled from the ledger, the indexes
change, and the audit log stays append-only both ways (its triggers are untouched). Both databases."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from identity.db import Database
from identity.migrate import downgrade, upgrade
from tests.identity.test_migrations import _index_names, _insert_org

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MAY, JUNE = dt.datetime(2026, 5, 1), dt.datetime(2026, 6, 1)
# (key, member, period, debit, cost): two keys of a member, a service key (no member), two periods
USAGE = [("k1", "u1", MAY, 100, 100), ("k1", "u1", MAY, 50, 60), ("k2", "u1", MAY, 7, 7),
         ("k3", None, MAY, 3, 3), ("k1", "u1", JUNE, 9, 9)]


def _populate(db: Database) -> None:
    with db.begin() as conn:
        _insert_org(conn, NOW)
        for n, (key, user, period, debit, cost) in enumerate(USAGE):
            conn.execute(text(
                "INSERT INTO wallet_entries (org_id, team_id, kind, amount_micros, cost_micros, discount_percent, "
                "key_id, user_id, model, request_id, period_start, actor_type, actor_id, created_at) VALUES "
                "('o1', 't1', 'usage', :amount, :cost, 0, :key, :user, 'm', :rid, :period, 'system', 'gw', :at)"),
                {"amount": -debit, "cost": cost, "key": key, "user": user, "rid": f"r{n}", "period": period,
                 "at": NOW.replace(tzinfo=None)})
        conn.execute(text(
            "INSERT INTO wallet_entries (org_id, team_id, kind, amount_micros, period_start, actor_type, actor_id, "
            "created_at) VALUES ('o1', 't1', 'top_up', 1000, :period, 'system', 'ops', :at)"),
            {"period": MAY, "at": NOW.replace(tzinfo=None)})
        conn.execute(text(
            "INSERT INTO audit_events (id, org_id, seq, occurred_at, actor_type, actor_id, actor_display, action, "
            "target_type, target_id, target_display, changes, outcome, prev_hash, hash) VALUES ('e1', 'o1', 1, :at, "
            "'system', 'tests', 'tests', 'user.created', 'user', 'u1', 'u1', '{}', 'success', :h, :h)"),
            {"at": NOW.replace(tzinfo=None), "h": "0" * 64})


def _refuses_an_event_update(db: Database) -> None:
    with pytest.raises(DBAPIError), db.begin() as conn:
        conn.execute(text("UPDATE audit_events SET action = 'user.deleted' WHERE id = 'e1'"))


def test_0020_fills_the_usage_totals_and_keeps_the_audit_log_append_only(db_url: str) -> None:
    downgrade(db_url, "0019")
    before = Database(db_url)
    _populate(before)
    before.dispose()
    upgrade(db_url, "0020")
    migrated = Database(db_url)
    with migrated.engine.connect() as conn:
        totals = {tuple(row[:3]) + tuple(int(v) for v in row[3:]) for row in conn.execute(text(
            "SELECT subject_type, subject_id, period_start, spend_micros, cost_micros, requests FROM usage_totals"))}
    assert {(kind, subject, dt.datetime.fromisoformat(str(period)).replace(tzinfo=None), *sums)
            for kind, subject, period, *sums in totals} == {
        ("key", "k1", MAY, 150, 160, 2), ("key", "k2", MAY, 7, 7, 1), ("key", "k3", MAY, 3, 3, 1),
        ("key", "k1", JUNE, 9, 9, 1), ("member", "u1", MAY, 157, 167, 3), ("member", "", MAY, 3, 3, 1),
        ("member", "u1", JUNE, 9, 9, 1)}
    names = _index_names(migrated)
    assert {"ix_role_grants_team_grant", "ix_wallet_entries_user_period", "ix_audit_events_org_action_seq",
            "ix_audit_events_org_actor_seq", "ix_audit_events_org_target_seq"} <= names
    assert not {"ix_role_grants_team", "ix_audit_events_org_action", "ix_audit_events_org_target"} & names
    _refuses_an_event_update(migrated)
    migrated.dispose()

    downgrade(db_url, "0019")
    back = Database(db_url)
    assert "usage_totals" not in inspect(back.engine).get_table_names()
    names = _index_names(back)
    assert {"ix_role_grants_team", "ix_audit_events_org_action", "ix_audit_events_org_target"} <= names
    assert not {"ix_role_grants_team_grant", "ix_audit_events_org_target_seq"} & names
    _refuses_an_event_update(back)
    with back.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM wallet_entries")).scalar_one() == len(USAGE) + 1
    back.dispose()
    upgrade(db_url)
