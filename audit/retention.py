"""Retention: deleting an org's events older than its retention period, the chain still verifiable.

A purge removes a prefix of the chain (every event up to the last one older than the cutoff),
moves the chain's base to the last removed event, signs a `purge` checkpoint of that base, and
records its own event, all in one transaction under the chain head's lock. The database's
append-only triggers let the DELETE through only while this transaction holds a purge permit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session

from audit import checkpoints, clock
from audit.actor import Actor
from audit.events import format_time
from audit.log import Target, record
from audit.models import AuditEvent, AuditHead, AuditPurgePermit

DEFAULT_RETENTION_DAYS = 365  # the default of the org setting `audit_retention_days`
ENTERPRISE_RETENTION_DAYS = 7 * 365  # what enterprise plans are set to (the setting allows up to 3650)


@dataclass(frozen=True)
class Purge:
    """What a purge removed, and the new start of the chain."""

    org_id: str
    removed: int
    base_seq: int
    base_hash: str
    cutoff: dt.datetime


def purge_org(session: Session, actor: Actor, key: Ed25519PrivateKey, org_id: str, retention_days: int) -> Purge:
    """Delete the org's events older than `retention_days`; keep a signed checkpoint of the new base."""
    if retention_days < 1:
        raise ValueError(f"retention must be at least one day, not {retention_days}")
    cutoff = clock.now() - dt.timedelta(days=retention_days)
    head = session.scalars(select(AuditHead).where(AuditHead.org_id == org_id).with_for_update()).one()
    e = AuditEvent
    # Time never runs backwards along the chain, so the events older than the cutoff are a prefix.
    upto = session.scalar(select(func.max(e.seq)).where(e.org_id == org_id, e.seq > head.base_seq,
                                                         e.occurred_at < cutoff))
    if upto is None:
        return Purge(org_id, 0, head.base_seq, head.base_hash, cutoff)
    base_hash = session.scalar(select(e.hash).where(e.org_id == org_id, e.seq == upto))
    if base_hash is None:
        raise LookupError(f"event #{upto} vanished during the purge")
    session.add(AuditPurgePermit(org_id=org_id))
    session.flush()
    removed = cast(CursorResult[Any], session.execute(delete(e).where(e.org_id == org_id, e.seq <= upto))).rowcount
    session.execute(delete(AuditPurgePermit).where(AuditPurgePermit.org_id == org_id))
    before = head.base_seq
    head.base_seq, head.base_hash, head.purged_count = upto, base_hash, head.purged_count + removed
    checkpoints.sign_at(session, key, org_id, upto, base_hash, "purge")
    record(session, actor, "audit.purged", Target("audit_log", org_id, "audit log"), {
        "retention_days": retention_days, "cutoff": format_time(cutoff), "events_removed": removed,
        "base_seq": {"before": before, "after": upto}, "base_hash": base_hash,
    }, org_id=org_id)
    return Purge(org_id, removed, upto, base_hash, cutoff)
