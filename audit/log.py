"""Recording events in the caller's transaction and chaining them per org at commit.

`record` only queues an event on the session. Just before the session commits, the queued
events of each org are given their sequence numbers and hashes under a row lock on that org's
chain head, and are inserted with the change they describe. The head lock is therefore always
the last lock a transaction takes, and held only for the commit: seat locks on the org row come
first, so parallel writers never deadlock and never fork the chain. A rollback drops the queue.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, event, insert, select, update
from sqlalchemy.orm import Session

from audit import clock
from audit.actor import Actor
from audit.models import AuditEvent, AuditHead

GENESIS_HASH = "0" * 64
PENDING = "audit.pending"
# Field names whose values are secrets; a change naming one is a bug in the caller.
SECRET_FIELDS = frozenset({"token", "secret", "password", "token_hash", "key_hash", "secret_hash", "client_secret"})


@dataclass(frozen=True)
class Target:
    """What an event is about."""

    type: str
    id: str
    display: str = ""


def record(
    session: Session,
    actor: Actor,
    action: str,
    target: Target,
    changes: dict[str, Any] | None = None,
    *,
    org_id: str,
    outcome: str = "success",
) -> None:
    """Queue one event; it is written in the same transaction as the change, or not at all."""
    # Through JSON once, so that the hash taken at commit matches what the database returns.
    changes = json.loads(json.dumps(changes or {}, default=str))
    leaked = SECRET_FIELDS.intersection(changes)
    if leaked:
        raise ValueError(f"secret fields in audit changes: {sorted(leaked)}")
    item = {
        "id": str(uuid.uuid4()),
        "org_id": org_id,
        "occurred_at": clock.now(),
        "actor_type": actor.type,
        "actor_id": actor.id,
        "actor_display": actor.display,
        "action": action,
        "target_type": target.type,
        "target_id": target.id,
        "target_display": target.display,
        "changes": changes,
        "outcome": outcome,
        "request_id": actor.request_id,
        "ip": actor.ip,
        "user_agent": actor.user_agent,
    }
    session.info.setdefault(PENDING, []).append(item)


def pending_events(session: Session) -> list[dict[str, Any]]:
    """Return the events queued on this session and not yet committed."""
    return list(session.info.get(PENDING, []))


def canonical(fields: dict[str, Any]) -> bytes:
    """Return the canonical JSON that an event's hash covers (everything but the hash)."""
    data = {key: value for key, value in fields.items() if key != "hash"}
    when = data["occurred_at"]
    data["occurred_at"] = when if isinstance(when, str) else when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(fields: dict[str, Any]) -> str:
    """Return the hex SHA-256 of an event's canonical form (which includes prev_hash)."""
    return hashlib.sha256(canonical(fields)).hexdigest()


def open_chain(session: Session, org_id: str) -> None:
    """Create the chain head of a new org."""
    session.add(AuditHead(org_id=org_id, seq=0, hash=GENESIS_HASH, base_seq=0, base_hash=GENESIS_HASH))
    session.flush()


HEADS = cast(Table, AuditHead.__table__)
EVENTS = cast(Table, AuditEvent.__table__)
# Events per transaction up to which PostgreSQL gets them in one statement with the head's move
# (16 parameters each: far below its 65,535); larger batches take two statements.
ONE_STATEMENT_EVENTS = 256


@dataclass
class _Head:
    seq: int
    hash: str
    last_at: Any


def _lock_head(session: Session, org_id: str) -> _Head:
    """Lock the org's chain head until commit and return where it stands (plain columns, no ORM object)."""
    stmt = select(HEADS.c.seq, HEADS.c.hash, HEADS.c.last_at).where(HEADS.c.org_id == org_id).with_for_update()
    row = session.execute(stmt).one_or_none()
    if row is None:
        open_chain(session, org_id)
        row = session.execute(stmt).one()
    return _Head(row.seq, row.hash, row.last_at)


def _append(session: Session, org_id: str, head: _Head, rows: list[dict[str, Any]]) -> None:
    """Insert the chained events and move the head past them.

    On PostgreSQL both go in one statement (the head's UPDATE as a data-modifying WITH), so that
    a transaction's audit costs two round trips, not three. The head is locked already.
    """
    move = update(HEADS).where(HEADS.c.org_id == org_id).values(seq=head.seq, hash=head.hash, last_at=head.last_at)
    if session.get_bind().dialect.name == "postgresql" and len(rows) <= ONE_STATEMENT_EVENTS:
        session.execute(insert(EVENTS).values(rows).add_cte(move.cte("moved_head")))
        return
    session.execute(move)
    session.execute(insert(EVENTS), rows)


@event.listens_for(Session, "before_commit")
def _chain_pending(session: Session) -> None:
    queued: list[dict[str, Any]] = session.info.pop(PENDING, [])
    if not queued:
        return
    session.flush()  # the changes first, so that a failing change never reaches the chain
    for org_id in sorted({item["org_id"] for item in queued}):  # one lock order for all
        head = _lock_head(session, org_id)
        latest = head.last_at
        if latest is None and head.seq:  # a head written before last_at was kept
            latest = session.scalar(select(AuditEvent.occurred_at).where(AuditEvent.org_id == org_id,
                                                                          AuditEvent.seq == head.seq))
        rows = []
        for item in (i for i in queued if i["org_id"] == org_id):
            # Time never runs backwards along the chain (a writer that recorded earlier may commit
            # later), so that every time range is one contiguous run of sequence numbers.
            latest = item["occurred_at"] if latest is None else max(latest, item["occurred_at"])
            fields = {**item, "occurred_at": latest, "seq": head.seq + 1, "prev_hash": head.hash}
            fields["hash"] = event_hash(fields)
            rows.append(fields)
            head.seq, head.hash = fields["seq"], fields["hash"]
        head.last_at = latest
        # Plain INSERTs, not ORM objects: events are written, never read back here.
        _append(session, org_id, head, rows)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(PENDING, None)
