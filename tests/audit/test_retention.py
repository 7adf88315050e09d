"""Retention: old events go, a signed purge checkpoint keeps what remains verifiable, and the purge
is itself an audit event."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from click.testing import Result
from sqlalchemy import select

from audit import clock
from audit.actor import Actor
from audit.models import AuditCheckpoint, AuditEvent, AuditHead
from audit.retention import ENTERPRISE_RETENTION_DAYS
from identity import orgs, teams
from identity.db import Database
from tests.factories import actions

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def make_history(db: Database, system: Actor, name: str) -> str:
    """An org made 400 days ago with a few events then, and a few 10 days ago; return its id."""
    with clock.frozen_at(NOW - dt.timedelta(days=400)), db.transaction() as session:
        org = orgs.create_org(session, system, name, owner_email=f"owner@{name.lower()}.test").org
        teams.create_team(session, system, org.id, "Old team")
    with clock.frozen_at(NOW - dt.timedelta(days=10)), db.transaction() as session:
        teams.create_team(session, system, org.id, "New team")
        teams.create_team(session, system, org.id, "Newer team")
    return org.id


def test_purge_removes_old_events_and_the_rest_still_verifies(
        cli: Callable[..., Result], db: Database, system: Actor, tmp_path: Path) -> None:
    org_id = make_history(db, system, "Oldco")
    assert len(actions(db, org_id)) == 7  # org, Default team, owner, seat, old team; two new teams
    with clock.frozen_at(NOW):
        result = cli("purge", "--org", "oldco")
    assert result.exit_code == 0 and "removed 5 events" in result.output, result.output
    assert actions(db, org_id) == ["team.created", "team.created", "audit.purged"]
    with db.reading() as session:
        head = session.get_one(AuditHead, org_id)
        assert (head.base_seq, head.purged_count) == (5, 5)
        purge = session.scalars(select(AuditEvent).where(AuditEvent.org_id == org_id, AuditEvent.seq == 8)).one()
        assert purge.changes["events_removed"] == 5 and purge.changes["retention_days"] == 365
        kept = session.scalars(select(AuditCheckpoint).where(AuditCheckpoint.reason == "purge")).one()
        assert (kept.seq, kept.hash) == (5, head.base_hash)
    verified = cli("verify", "--org", "oldco")
    assert verified.exit_code == 0 and "intact: 3 events #6..#8" in verified.output, verified.output
    path = tmp_path / "after-purge.jsonl"
    assert cli("export", "--org", "oldco", "-o", str(path)).exit_code == 0
    from_file = cli("verify", "--org", "oldco", str(path))
    assert from_file.exit_code == 0 and "#6..#" in from_file.output, from_file.output


def test_a_second_purge_with_nothing_old_removes_nothing(cli: Callable[..., Result], db: Database,
                                                         system: Actor) -> None:
    org_id = make_history(db, system, "Oldco")
    with clock.frozen_at(NOW):
        cli("purge", "--org", "oldco")
        again = cli("purge", "--org", "oldco")
    assert "removed 0 events" in again.output
    assert actions(db, org_id)[-1] == "audit.purged" and actions(db, org_id).count("audit.purged") == 1
    assert cli("verify", "--org", "oldco").exit_code == 0


def test_retention_is_per_org_and_longer_for_enterprise(cli: Callable[..., Result], db: Database,
                                                        system: Actor) -> None:
    standard = make_history(db, system, "Standard")
    enterprise = make_history(db, system, "Enterprise")
    with db.transaction() as session:  # an enterprise plan keeps seven years
        orgs.update_settings(session, system, enterprise, {"audit_retention_days": ENTERPRISE_RETENTION_DAYS})
    with clock.frozen_at(NOW):
        result = cli("purge")
    assert "org standard: removed 5 events" in result.output and "org enterprise: removed 0 events" in result.output
    assert len(actions(db, standard)) == 3
    assert actions(db, enterprise)[-1] == "org.settings_changed"  # and no event of a purge that removed nothing
    for slug in ("standard", "enterprise"):
        assert cli("verify", "--org", slug).exit_code == 0


def test_deleting_events_outside_a_purge_is_refused(db: Database, system: Actor) -> None:
    org_id = make_history(db, system, "Oldco")
    try:
        with db.transaction() as session:
            session.execute(AuditEvent.__table__.delete().where(AuditEvent.org_id == org_id))
    except Exception as refused:  # the trigger's error, in each driver's own class
        assert "append-only" in str(refused)
    else:
        raise AssertionError("the delete went through")
    assert len(actions(db, org_id)) == 7
