"""Who may read, export and sign an org's audit log, and the event each of those leaves.

Reading the log is itself audited (`audit.read`, `audit.exported`, `audit.verified`): each
function here authorizes its actor and records what it did, in the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from audit import Actor, checkpoints, events, record
from audit.actions import AuditAction
from audit.log import Target
from audit.models import AuditCheckpoint
from identity.roles import authorize


def _log(org_id: str) -> Target:
    return Target("audit_log", org_id, "audit log")


def read_events(session: Session, actor: Actor, selection: events.Selection, limit: int, *,
                newest_first: bool = False, before_seq: int | None = None) -> events.Page:
    """Return a page of the selected events, recording the reading: in chain order after
    `selection.after_seq`, or newest first below `before_seq`."""
    authorize(actor, "audit.read", org_id=selection.org_id)
    if newest_first:
        page = events.read_page_newest(session, selection, limit, before_seq)
        where = {"newest_first": True, "before_seq": before_seq}
    else:
        page = events.read_page(session, selection, limit)
        where = {"after_seq": selection.after_seq}
    bound = {} if selection.upto_seq is None else {"upto_seq": selection.upto_seq}
    record(session, actor, AuditAction.AUDIT_READ, _log(selection.org_id),
           {"selection": selection.describe(), **where, **bound, "returned": len(page.rows)}, org_id=selection.org_id)
    return page


def any_events(session: Session, actor: Actor, selection: events.Selection, *, below_seq: int | None = None) -> bool:
    """Tell whether the selection holds an event below `below_seq` (given) or after `selection.after_seq`:
    whether a full page has another beyond it. Not recorded: no event is read out, the page was."""
    authorize(actor, "audit.read", org_id=selection.org_id)
    if below_seq is not None:
        return bool(events.read_page_newest(session, selection, 1, below_seq).rows)
    return bool(events.read_page(session, selection, 1).rows)


def count_events(session: Session, actor: Actor, selection: events.Selection, *, at_most: int) -> int:
    """Return how many events the selection holds, counting no further than `at_most` (the newer
    ones a reader's bounded view leaves out). Not recorded, as any_events: a number, no event."""
    authorize(actor, "audit.read", org_id=selection.org_id)
    return events.count(session, selection, at_most=at_most)


def record_export(session: Session, actor: Actor, selection: events.Selection, fmt: str) -> None:
    """Authorize and record an export of the selected events, before they are streamed."""
    authorize(actor, "audit.read", org_id=selection.org_id)
    record(session, actor, AuditAction.AUDIT_EXPORTED, _log(selection.org_id),
           {"format": fmt, "selection": selection.describe()}, org_id=selection.org_id)


def record_verification(session: Session, actor: Actor, org_id: str, result: dict[str, Any]) -> None:
    """Record the result of verifying (and reconciling) the org's chain."""
    authorize(actor, "audit.read", org_id=org_id)
    record(session, actor, AuditAction.AUDIT_VERIFIED, _log(org_id), result, org_id=org_id)


def list_checkpoints(session: Session, actor: Actor, org_id: str, *, after: int, limit: int) -> list[AuditCheckpoint]:
    """Return the org's signed checkpoints, oldest first, after checkpoint id `after`."""
    authorize(actor, "audit.read", org_id=org_id)
    return checkpoints.listing(session, org_id, after, limit)


def newest_checkpoint(session: Session, actor: Actor, org_id: str) -> AuditCheckpoint | None:
    """Return the org's most recent signed checkpoint, or None when none was made yet."""
    authorize(actor, "audit.read", org_id=org_id)
    return checkpoints.newest(session, org_id)


def sign_checkpoint(session: Session, actor: Actor, key: Ed25519PrivateKey, org_id: str) -> AuditCheckpoint:
    """Verify and sign the org's current head now (checkpoints.UnverifiedHead when the chain is broken)."""
    authorize(actor, "audit.read", org_id=org_id)
    return checkpoints.sign_head(session, key, org_id, "manual", actor=actor)
