"""Retention: deleting an org's events older than its retention period, the chain still verifiable.

A purge removes a prefix of the chain (every event up to the last one older than the cutoff),
moves the chain's base to the last removed event, signs a `purge` checkpoint of that base, and
records its own event, all in one transaction under the chain head's lock. It first verifies the
chain up to its head: purging a tampered chain would sign the tampering into the new base.

How the database lets the DELETE through (migration 0013a), and why that way: on PostgreSQL the
append-only trigger allows a DELETE of an event only while the transaction-local setting
`identity.audit_purge` names the event's org and the event lies at or before the org's chain
base, which the purge moves first. A setting, not a row: the old trigger trusted any row in
`audit_purge_permits`, which every role that may write the tables can insert. A SECURITY DEFINER
function was the other way; it protects only when the service's role does not own the tables,
and in the default deployment the service migrates, and owns, its own schema (an owner can
disable any trigger). So the setting does not stop someone who runs SQL as the service's role;
it makes a deletion a deliberate act confined to a moved base, and a moved base is accepted by
`identity audit verify` only with a signed purge checkpoint and the `audit.purged` event, which
need the signing key. docs/audit.md (threat model) says who holds what. SQLite has no such
setting: its trigger still reads the permit row, and the file's holder can change anything.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import CursorResult, delete, func, select, text
from sqlalchemy.orm import Session

from audit import checkpoints, clock, verify
from audit.actions import AuditAction
from audit.actor import Actor
from audit.events import format_time
from audit.log import Target, record
from audit.models import AuditEvent, AuditHead, AuditPurgePermit

DEFAULT_RETENTION_DAYS = 365  # the default of the org setting `audit_retention_days`
ENTERPRISE_RETENTION_DAYS = 7 * 365  # what enterprise plans are set to (the setting allows up to 3650)
PURGE_SETTING = "identity.audit_purge"  # read by the PostgreSQL trigger of migration 0013a


@dataclass(frozen=True)
class Purge:
    """What a purge removed, and the new start of the chain."""

    org_id: str
    removed: int
    base_seq: int
    base_hash: str
    cutoff: dt.datetime


def purge_org(session: Session, actor: Actor, key: Ed25519PrivateKey, org_id: str, retention_days: int, *,
              floor_days: int) -> Purge:
    """Delete the org's events older than `retention_days`, never than `floor_days`; sign the new base.

    Raise checkpoints.UnverifiedHead, deleting nothing, when the chain does not verify.
    """
    if retention_days < 1 or floor_days < 1:
        raise ValueError(f"retention must be at least one day, not {retention_days} (floor {floor_days})")
    days = max(retention_days, floor_days)
    cutoff = clock.now() - dt.timedelta(days=days)
    head = session.get_one(AuditHead, org_id)
    upto = _last_before(session, org_id, head.base_seq, cutoff)
    if upto is None:
        return Purge(org_id, 0, head.base_seq, head.base_hash, cutoff)
    checked = verify.verify_head(session, org_id, key.public_key())  # before the lock: writers go on
    if checked.broken is not None:
        raise checkpoints.UnverifiedHead(org_id, str(checked.broken))
    head = session.scalars(select(AuditHead).where(AuditHead.org_id == org_id).with_for_update()
                           .execution_options(populate_existing=True)).one()
    if head.base_seq != checked.base_seq:
        raise LookupError(f"org {org_id}: another purge moved the chain's start meanwhile")
    e = AuditEvent
    base_hash = session.scalar(select(e.hash).where(e.org_id == org_id, e.seq == upto))
    if base_hash is None:
        raise LookupError(f"event #{upto} vanished during the purge")
    before = head.base_seq
    # The base moves first: the trigger lets through only events at or before it.
    head.base_seq, head.base_hash = upto, base_hash
    session.flush()
    removed = _delete_through_base(session, org_id, upto)
    head.purged_count += removed
    made = checkpoints.sign_at(session, key, org_id, upto, base_hash, "purge")
    record(session, actor, AuditAction.AUDIT_PURGED, Target("audit_log", org_id, "audit log"), {
        "retention_days": days, "floor_days": floor_days, "cutoff": format_time(cutoff), "events_removed": removed,
        "base_seq": {"before": before, "after": upto}, "base_hash": base_hash, "checkpoint_id": made.id,
    }, org_id=org_id)
    return Purge(org_id, removed, upto, base_hash, cutoff)


def _last_before(session: Session, org_id: str, base_seq: int, cutoff: dt.datetime) -> int | None:
    """Return the seq of the newest event older than `cutoff`: time never runs backwards along the chain."""
    e = AuditEvent
    return session.scalar(select(func.max(e.seq)).where(e.org_id == org_id, e.seq > base_seq,
                                                        e.occurred_at < cutoff))


def _delete_through_base(session: Session, org_id: str, upto: int) -> int:
    """Delete the org's events up to `upto` (its new base) with the database's leave, then take the leave back."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:  # transaction-local (is_local): it ends with this transaction, whatever happens
        session.execute(text("SELECT set_config(:name, :org, true)"), {"name": PURGE_SETTING, "org": org_id})
    else:
        session.add(AuditPurgePermit(org_id=org_id))
        session.flush()
    e = AuditEvent
    result = cast(CursorResult[Any], session.execute(delete(e).where(e.org_id == org_id, e.seq <= upto)))
    if postgres:
        session.execute(text("SELECT set_config(:name, '', true)"), {"name": PURGE_SETTING})
    else:
        session.execute(delete(AuditPurgePermit).where(AuditPurgePermit.org_id == org_id))
    return result.rowcount
