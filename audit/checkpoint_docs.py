"""Checkpoints as published documents, and whether a signature holds: what verifying reads.

Kept apart from audit.checkpoints (which signs, and verifies a head before signing it) so that
audit.verify can read checkpoints without importing the module that imports it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import signing
from audit.events import format_time, parse_time
from audit.models import AuditCheckpoint

REASONS = ("manual", "scheduled", "export", "purge")


def payload(org_id: str, seq: int, head_hash: str, time: str, key_id: str, reason: str | None = None) -> bytes:
    """Return the bytes a checkpoint's signature covers: canonical JSON of its statement.

    `reason=None` gives the statement of checkpoints signed before the reason was signed.
    """
    statement: dict[str, Any] = {"org_id": org_id, "seq": seq, "hash": head_hash, "time": time, "key_id": key_id}
    if reason is not None:
        statement["reason"] = reason
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()


def document(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """Return a checkpoint as published (docs/audit.md): what an auditor keeps."""
    return {"org_id": checkpoint.org_id, "seq": checkpoint.seq, "hash": checkpoint.hash,
            "time": format_time(checkpoint.signed_at), "key_id": checkpoint.key_id,
            "signature": checkpoint.signature, "reason": checkpoint.reason}


def all_of(session: Session, org_id: str) -> list[dict[str, Any]]:
    """Return every checkpoint of the org as published documents (a few per day: small)."""
    stmt = select(AuditCheckpoint).where(AuditCheckpoint.org_id == org_id).order_by(AuditCheckpoint.seq)
    return [document(c) for c in session.scalars(stmt)]


def signed_reason(checkpoint: dict[str, Any], public: Ed25519PublicKey) -> str | None:
    """Return the checkpoint's reason when `public`'s signature covers it; None when it does not.

    None also for a legacy checkpoint, signed before reasons were: its seq and hash are proven,
    its reason is not.
    """
    reason = checkpoint.get("reason")
    if not isinstance(reason, str) or reason not in REASONS:
        return None
    return reason if _signature_holds(checkpoint, public, reason) else None


def is_authentic(checkpoint: dict[str, Any], public: Ed25519PublicKey) -> bool:
    """Tell whether a published checkpoint carries a valid signature of `public` (its reason signed, or legacy)."""
    return signed_reason(checkpoint, public) is not None or _signature_holds(checkpoint, public, None)


def _signature_holds(checkpoint: dict[str, Any], public: Ed25519PublicKey, reason: str | None) -> bool:
    try:
        time = format_time(parse_time(str(checkpoint["time"])))
        message = payload(str(checkpoint["org_id"]), int(checkpoint["seq"]), str(checkpoint["hash"]), time,
                          str(checkpoint["key_id"]), reason)
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
