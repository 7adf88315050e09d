"""Audit retention is the owner's to change, never below the operator's floor; the purge keeps the floor too."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from click.testing import Result
from sqlalchemy import select, text

from audit import clock
from audit.actor import Actor
from audit.models import AuditEvent
from identity import orgs
from identity.db import Database
from identity.errors import InvalidValue, PermissionDenied
from identity.orgs import NewOrg
from tests.audit.test_retention import NOW
from tests.factories import actions, provision


def member_actor(db: Database, system: Actor, org: NewOrg, role: str) -> Actor:
    if role == "owner":
        user = org.owner
    else:
        user = provision(db, system, org.org.id, f"{role}@acme.test", role=role)
    return Actor("user", user.id, user.user_name, org_id=org.org.id, role=role)


def retention(db: Database, org_id: str) -> int:
    with db.reading() as session:
        return session.get_one(orgs.Org, org_id).audit_retention_days


@pytest.mark.parametrize("role", ["admin", "member"])
def test_only_an_owner_changes_audit_retention(db: Database, system: Actor, acme: NewOrg, role: str) -> None:
    actor = member_actor(db, system, acme, role)
    with pytest.raises(PermissionDenied), db.transaction() as session:
        orgs.update_settings(session, actor, acme.org.id, {"audit_retention_days": 400})
    assert retention(db, acme.org.id) == 365 and actions(db, acme.org.id)[-1] != "org.settings_changed"


@pytest.mark.parametrize("floor,asked", [(None, 89), (None, 1), ("200", 199)])
def test_retention_below_the_operators_floor_is_refused_naming_it(
        db: Database, system: Actor, acme: NewOrg, monkeypatch: pytest.MonkeyPatch, floor: str | None,
        asked: int) -> None:
    if floor is not None:
        monkeypatch.setenv("AUDIT_RETENTION_FLOOR_DAYS", floor)
    owner = member_actor(db, system, acme, "owner")
    with pytest.raises(InvalidValue, match=f"at least {floor or 90} days") as refused, db.transaction() as session:
        orgs.update_settings(session, owner, acme.org.id, {"audit_retention_days": asked})
    assert refused.value.context["field"] == "audit_retention_days" and "AUDIT_RETENTION_FLOOR_DAYS" in refused.value.message
    assert retention(db, acme.org.id) == 365


@pytest.mark.parametrize("days", [90, 3650])
def test_an_owner_at_or_above_the_floor_changes_it_and_it_is_audited(db: Database, system: Actor, acme: NewOrg,
                                                                     days: int) -> None:
    owner = member_actor(db, system, acme, "owner")
    with db.transaction() as session:
        orgs.update_settings(session, owner, acme.org.id, {"audit_retention_days": days})
    assert retention(db, acme.org.id) == days
    with db.reading() as session:
        last = session.scalars(select(AuditEvent).where(AuditEvent.org_id == acme.org.id)
                               .order_by(AuditEvent.seq.desc()).limit(1)).one()
    assert (last.action, last.actor_id) == ("org.settings_changed", owner.id)
    assert last.changes == {"audit_retention_days": {"before": 365, "after": days}}


def test_the_purge_never_deletes_events_younger_than_the_floor(
        cli: Callable[..., Result], db: Database, system: Actor, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retention stored below the floor (set before the floor, or by SQL) does not shorten the purge."""
    with clock.frozen_at(NOW - dt.timedelta(days=400)), db.transaction() as session:
        org_id = orgs.create_org(session, system, "Oldco", owner_email="owner@oldco.test").org.id  # #1..#4
    with clock.frozen_at(NOW - dt.timedelta(days=60)), db.transaction() as session:
        orgs.update_settings(session, system, org_id, {"included_seats": 5})  # #5, 60 days old
    with db.begin() as conn:
        conn.execute(text("UPDATE orgs SET audit_retention_days = 30 WHERE id = :o"), {"o": org_id})
    with clock.frozen_at(NOW):
        result = cli("purge", "--org", "oldco")
    assert result.exit_code == 0 and "removed 4 events" in result.output and "(90 days)" in result.output, \
        result.output
    # The settings change first renewed the cycles due since the org began (orgs._change_settings),
    # each `seat.renewed` recorded then, 60 days ago: kept with it.
    kept = actions(db, org_id)
    renewals = kept.count("seat.renewed")
    assert renewals >= 11 and [a for a in kept if a != "seat.renewed"] == ["org.settings_changed", "audit.purged"]
    monkeypatch.setenv("AUDIT_RETENTION_FLOOR_DAYS", "50")  # the operator lowers the floor: now it may go
    with clock.frozen_at(NOW):
        assert f"removed {1 + renewals} events" in cli("purge", "--org", "oldco").output
