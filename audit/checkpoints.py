"""Signed checkpoints of an org's chain, as CloudTrail's digest files and CT's signed tree heads.

A checkpoint states {org, sequence, head hash, time}, signed with the service's Ed25519 key. An
auditor who kept one can later show that the events up to its sequence still hash to its head:
rewriting history would need the service's private key to re-sign every checkpoint handed out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import clock, signing
from audit.events import format_time, parse_time
from audit.models import AuditCheckpoint, AuditHead

REASONS = ("manual", "scheduled", "export", "purge")


def payload(org_id: str, seq: int, head_hash: str, time: str, key_id: str) -> bytes:
    """Return the bytes a checkpoint's signature covers: canonical JSON of its statement."""
    statement = {"org_id": org_id, "seq": seq, "hash": head_hash, "time": time, "key_id": key_id}
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()


def document(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """Return a checkpoint as published (docs/audit.md): what an auditor keeps."""
    return {"org_id": checkpoint.org_id, "seq": checkpoint.seq, "hash": checkpoint.hash,
            "time": format_time(checkpoint.signed_at), "key_id": checkpoint.key_id,
            "signature": checkpoint.signature, "reason": checkpoint.reason}


def sign_at(session: Session, key: Ed25519PrivateKey, org_id: str, seq: int, head_hash: str,
            reason: str) -> AuditCheckpoint:
    """Sign and store the statement that the org's chain has `head_hash` at `seq`."""
    if reason not in REASONS:
        raise ValueError(f"unknown checkpoint reason {reason!r}")
    now = clock.now()
    kid = signing.key_id(key)
    signature = signing.sign(key, payload(org_id, seq, head_hash, format_time(now), kid))
    checkpoint = AuditCheckpoint(org_id=org_id, seq=seq, hash=head_hash, signed_at=now, key_id=kid,
                                 signature=signature, reason=reason)
    session.add(checkpoint)
    session.flush()
    return checkpoint


def sign_head(session: Session, key: Ed25519PrivateKey, org_id: str, reason: str = "manual") -> AuditCheckpoint:
    """Sign the org's current head (its newest committed event)."""
    head = session.get(AuditHead, org_id)
    if head is None:
        raise LookupError(f"org {org_id!r} has no audit chain")
    return sign_at(session, key, org_id, head.seq, head.hash, reason)


def listing(session: Session, org_id: str, after_id: int = 0, limit: int = 100) -> list[AuditCheckpoint]:
    """Return the org's checkpoints in the order they were made, after checkpoint `after_id`."""
    stmt = (select(AuditCheckpoint).where(AuditCheckpoint.org_id == org_id, AuditCheckpoint.id > after_id)
            .order_by(AuditCheckpoint.id).limit(limit))
    return list(session.scalars(stmt))


def all_of(session: Session, org_id: str) -> list[dict[str, Any]]:
    """Return every checkpoint of the org as published documents (a few per day: small)."""
    stmt = select(AuditCheckpoint).where(AuditCheckpoint.org_id == org_id).order_by(AuditCheckpoint.seq)
    return [document(c) for c in session.scalars(stmt)]


def is_authentic(checkpoint: dict[str, Any], public: Ed25519PublicKey) -> bool:
    """Tell whether a published checkpoint carries a valid signature of `public`."""
    try:
        time = format_time(parse_time(str(checkpoint["time"])))
        message = payload(str(checkpoint["org_id"]), int(checkpoint["seq"]), str(checkpoint["hash"]), time,
                          str(checkpoint["key_id"]))
    except (KeyError, TypeError, ValueError):
        return False
    return checkpoint["key_id"] == signing.key_id(public) and signing.is_valid(public, message,
                                                                                str(checkpoint["signature"]))


def authentic(checkpoints: Iterable[dict[str, Any]],
              public: Ed25519PublicKey) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split checkpoints into (authentic, forged or signed by another key)."""
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for checkpoint in checkpoints:
        (good if is_authentic(checkpoint, public) else bad).append(checkpoint)
    return good, bad
