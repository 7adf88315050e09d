"""Signed checkpoints of an org's chain, as CloudTrail's digest files and CT's signed tree heads.

A checkpoint states {org, sequence, head hash, time, reason}, signed with the service's Ed25519
key. An auditor who kept one can later show that the events up to its sequence still hash to its
head: rewriting history would need the service's private key to re-sign every checkpoint handed
out. The service signs only a head it has just verified, and records each checkpoint it makes as
an `audit.checkpoint_created` event.

The reason is signed since 2026-12-05: a `purge` checkpoint vouches for a moved start of the
chain, so a copy of another checkpoint relabelled `purge` must not verify. Checkpoints signed
before then (legacy: their statement holds no reason) still prove their seq and hash, but their
reason proves nothing.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import clock, signing, verify
from audit.actions import AuditAction
from audit.actor import Actor, system_actor
from audit.checkpoint_docs import REASONS as REASONS
from audit.checkpoint_docs import all_of as all_of
from audit.checkpoint_docs import authentic as authentic
from audit.checkpoint_docs import document as document
from audit.checkpoint_docs import is_authentic as is_authentic
from audit.checkpoint_docs import payload as payload
from audit.checkpoint_docs import signed_reason as signed_reason
from audit.events import format_time
from audit.log import Target, record
from audit.models import AuditCheckpoint, AuditEvent, AuditHead


class UnverifiedHead(Exception):
    """The chain does not verify up to its head: the service signs no checkpoint of it."""

    def __init__(self, org_id: str, broken: str) -> None:
        super().__init__(f"org {org_id}: the chain does not verify, so its head is not signed: BROKEN at {broken}")
        self.org_id = org_id
        self.broken = broken


class NoChain(LookupError):
    """The org has no event yet (the operators' chain before its first act): there is no head to sign."""

    def __init__(self, org_id: str) -> None:
        super().__init__(f"org {org_id!r} has no audit chain")
        self.org_id = org_id


def sign_at(session: Session, key: Ed25519PrivateKey, org_id: str, seq: int, head_hash: str,
            reason: str) -> AuditCheckpoint:
    """Sign and store the statement that the org's chain has `head_hash` at `seq`."""
    if reason not in REASONS:
        raise ValueError(f"unknown checkpoint reason {reason!r}")
    now = clock.now()
    kid = signing.key_id(key)
    signature = signing.sign(key, payload(org_id, seq, head_hash, format_time(now), kid, reason))
    checkpoint = AuditCheckpoint(org_id=org_id, seq=seq, hash=head_hash, signed_at=now, key_id=kid,
                                 signature=signature, reason=reason)
    session.add(checkpoint)
    session.flush()
    return checkpoint


def sign_head(session: Session, key: Ed25519PrivateKey, org_id: str, reason: str = "manual", *,
              actor: Actor | None = None) -> AuditCheckpoint:
    """Verify the org's chain up to its current head, sign that head, and record the checkpoint.

    Raise UnverifiedHead, signing nothing, when the chain does not verify: a checkpoint over a
    tampered chain would vouch for the tampering; NoChain when there is no event to sign. The
    check reads the head, then the events up to it, in this transaction, without locking the
    head: writers go on appending meanwhile, and the head read is a committed state. `actor`
    defaults to the service itself.
    """

    head = session.get(AuditHead, org_id)
    if head is None:
        raise NoChain(org_id)
    seq, head_hash = head.seq, head.hash
    report = verify.verify_head(session, org_id, key.public_key())
    if report.broken is not None:
        raise UnverifiedHead(org_id, str(report.broken))
    made = sign_at(session, key, org_id, seq, head_hash, reason)
    record(session, actor or system_actor("checkpoint"), AuditAction.AUDIT_CHECKPOINT_CREATED,
           Target("audit_log", org_id, "audit log"),
           {"checkpoint_id": made.id, "seq": seq, "hash": head_hash, "reason": reason, "key_id": made.key_id,
            "verified_events": report.checked}, org_id=org_id)
    return made


def idle_since_signed(session: Session, org_id: str) -> bool:
    """Tell whether the org's only event since its newest checkpoint is that checkpoint's own record.

    The periodic job skips such an org: signing it again would only sign the previous signing,
    and add one more event an hour to every idle org's chain.
    """
    head = session.get(AuditHead, org_id)
    newest = session.scalar(select(func.max(AuditCheckpoint.seq)).where(AuditCheckpoint.org_id == org_id))
    if head is None or newest is None or head.seq != newest + 1:
        return False
    last = session.scalar(select(AuditEvent.action).where(AuditEvent.org_id == org_id, AuditEvent.seq == head.seq))
    return last == AuditAction.AUDIT_CHECKPOINT_CREATED


def listing(session: Session, org_id: str, after_id: int = 0, limit: int = 100) -> list[AuditCheckpoint]:
    """Return the org's checkpoints in the order they were made, after checkpoint `after_id`."""
    stmt = (select(AuditCheckpoint).where(AuditCheckpoint.org_id == org_id, AuditCheckpoint.id > after_id)
            .order_by(AuditCheckpoint.id).limit(limit))
    return list(session.scalars(stmt))


def newest(session: Session, org_id: str) -> AuditCheckpoint | None:
    """Return the org's most recent checkpoint (the newest head the service verified and signed), or None."""
    stmt = select(AuditCheckpoint).where(AuditCheckpoint.org_id == org_id).order_by(AuditCheckpoint.id.desc()).limit(1)
    return session.scalars(stmt).first()
