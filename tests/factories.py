"""Test data builders and small readers of what the database holds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from audit import Actor
from audit.models import AuditEvent
from identity import users
from identity.db import Database
from identity.models import RoleGrant, SeatCharge, Team, User


def provision(db: Database, actor: Actor, org_id: str, user_name: str, **kwargs: Any) -> User:
    """Provision and commit a member."""
    kwargs.setdefault("source", "manual")
    kwargs.setdefault("email", user_name)
    with db.transaction() as session:
        return users.provision_user(session, actor, org_id, user_name=user_name, **kwargs)


def actions(db: Database, org_id: str) -> list[str]:
    """Return the org's audit actions in chain order."""
    with db.reading() as session:
        return list(session.scalars(select(AuditEvent.action).where(AuditEvent.org_id == org_id)
                                    .order_by(AuditEvent.seq)))


def counts(db: Database) -> dict[str, int]:
    """Count the rows that any change would add: to compare before and after a refused change."""
    with db.reading() as session:
        return {model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (User, Team, RoleGrant, SeatCharge, AuditEvent)}
